"""Turn published datasets (Fashion-MNIST, MNIST idx files, CIFAR python batches) into image folders."""

import concurrent.futures
import glob
import gzip
import os
import shutil
import tempfile

import cv2
import numpy as np

from imsearch import InputError, console, image_folders, locations, safeio

DEBIAN_FASHION_MNIST_DIR = locations.DEBIAN_FASHION_MNIST_DIR
FASHION_MNIST_CLASSES = ("T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle_boot")
DIGIT_CLASSES = tuple(str(digit) for digit in range(10))
IDX_CLASS_COUNT = 10
# A dataset is written in a hidden staging folder beside its place, then renamed: all or nothing.
STAGING_PREFIX = ".preparing-"
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path):
    """An idx file (optionally gzipped) as a uint8 numpy array of its declared shape."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as file:
            raw = file.read()
    except (OSError, EOFError) as error:
        raise InputError(f"{path}: cannot read idx file ({error})") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise InputError(f"{path}: not an unsigned-byte idx file")
    dimensions = raw[3]
    if len(raw) < 4 + 4 * dimensions:
        raise InputError(f"{path}: its header declares {dimensions} dimensions but the file ends first; the file is truncated")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dimensions))
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dimensions)
    if body.size != int(np.prod(shape)):
        raise InputError(f"{path}: holds {body.size} bytes, its header declares {shape}; the file is truncated")
    return body.reshape(shape)


def find_idx_file(source_dir, stem):
    """The idx file named stem in source_dir, gzipped or not."""
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        if os.path.isfile(os.path.join(source_dir, name)):
            return os.path.join(source_dir, name)
    raise InputError(f"{source_dir}: {stem}(.gz) not found; pass the folder holding the idx files")


def load_idx_splits(source_dir):
    """{split: (images, labels)} from the four standard idx files in source_dir."""
    splits = {}
    for split, (images_stem, labels_stem) in IDX_FILES.items():
        images = read_idx(find_idx_file(source_dir, images_stem))
        labels_path = find_idx_file(source_dir, labels_stem)
        labels = read_idx(labels_path)
        # Both idx datasets (MNIST digits, Fashion-MNIST) have ten classes, numbered 0 to 9.
        if labels.ndim != 1 or (labels.size and labels.max() >= IDX_CLASS_COUNT):
            raise InputError(f"{labels_path}: not a list of labels 0 to {IDX_CLASS_COUNT - 1}; the file is damaged "
                             "or belongs to another dataset")
        if len(images) != len(labels):
            raise InputError(f"{source_dir}: {split} has {len(images)} images but {len(labels)} labels")
        splits[split] = (images, labels)
    return splits


def load_fashion_mnist(source_dir=DEBIAN_FASHION_MNIST_DIR):
    """Fashion-MNIST splits from the Debian package, or from Keras's download where that is missing."""
    if os.path.isdir(source_dir):
        return load_idx_splits(source_dir)
    try:
        from tensorflow import keras

        (train_images, train_labels), (test_images, test_labels) = keras.datasets.fashion_mnist.load_data()
    except Exception as error:  # Any download failure means the same thing to the user.
        raise InputError(
            f"{source_dir} not found and the download failed ({type(error).__name__}); "
            "install it with: apt-get install dataset-fashion-mnist"
        ) from None
    return {"train": (train_images, train_labels), "test": (test_images, test_labels)}


def load_digits(test_fraction=0.2, seed=0, size=32):
    """scikit-learn's 1,797 handwritten digits (8x8, 17 gray levels) as uint8 images scaled to size, split at random."""
    from sklearn import datasets as sklearn_datasets

    digits = sklearn_datasets.load_digits()
    images = np.stack([cv2.resize((image * (255 / 16)).astype(np.uint8), (size, size), interpolation=cv2.INTER_LINEAR)
                       for image in digits.images])
    order = np.random.default_rng(seed).permutation(len(images))
    test_count = int(round(len(images) * test_fraction))
    test_rows, train_rows = order[:test_count], order[test_count:]
    return {"train": (images[train_rows], digits.target[train_rows]), "test": (images[test_rows], digits.target[test_rows])}


def load_cifar_splits(source_dir, fine=True):
    """{split: (images, labels)} and class names from CIFAR-10 or CIFAR-100 python batches."""
    def entry(name, key):
        """One entry of the CIFAR batch file name; a file without it is not a CIFAR batch."""
        path = os.path.join(source_dir, name)
        if not os.path.isfile(path):
            raise InputError(f"{path}: CIFAR batch not found; pass the folder holding the python batches")
        # CIFAR batches are pickles: the restricted unpickler accepts their arrays and runs nothing.
        contents = safeio.restricted_load(path, encoding="bytes")
        if not isinstance(contents, dict) or key not in contents:
            raise InputError(f"{path}: not a CIFAR python batch (no {key.decode()!r} entry); pass the folder of the "
                             "'CIFAR-10 python version' or 'CIFAR-100 python version' download")
        return contents[key], path

    def images_of(name):
        """The images of a batch: rows of 3072 bytes, the red, green and blue 32x32 planes in turn."""
        rows, path = entry(name, b"data")
        rows = np.asarray(rows, dtype=np.uint8)
        if rows.ndim != 2 or rows.shape[1] != 3 * 32 * 32:
            raise InputError(f"{path}: its data is not rows of 3,072 bytes (32x32 colour); the file is damaged")
        return rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)

    if os.path.isfile(os.path.join(source_dir, "batches.meta")):
        names = entry("batches.meta", b"label_names")[0]
        parts = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
        label_key = b"labels"
    else:
        names = entry("meta", b"fine_label_names" if fine else b"coarse_label_names")[0]
        parts = {"train": ["train"], "test": ["test"]}
        label_key = b"fine_labels" if fine else b"coarse_labels"
    splits = {}
    for split, batch_names in parts.items():
        images = np.concatenate([images_of(name) for name in batch_names])
        labels = np.concatenate([np.asarray(entry(name, label_key)[0]) for name in batch_names])
        if len(images) != len(labels):
            raise InputError(f"{source_dir}: {split} has {len(images)} images but {len(labels)} labels")
        splits[split] = (images, labels)
    return splits, tuple(name.decode() if isinstance(name, bytes) else str(name) for name in names)


def write_image_folders(splits, class_names, target_dir):
    """Write {split: (images, labels)} as target_dir/<split>/<class>/<n>.png, all at once or not at all."""
    def write(staging_dir):
        jobs = []
        for split, (images, labels) in splits.items():
            for class_name in class_names:
                os.makedirs(os.path.join(staging_dir, split, class_name), exist_ok=True)
            digits = len(str(len(images) - 1))
            for number, (image, label) in enumerate(zip(images, labels)):
                jobs.append((os.path.join(staging_dir, split, class_names[int(label)], f"{number:0{digits}d}.png"), image))
        with concurrent.futures.ThreadPoolExecutor(image_folders.READ_WORKERS) as executor:
            for path, ok in executor.map(lambda job: (job[0], write_png(*job)), jobs):
                if not ok:
                    raise InputError(f"{path}: could not be written; check free space")
        return len(jobs)

    return write_folder(target_dir, write)


def write_folder(target_dir, write):
    """Run write(staging_dir) in a staging folder beside target_dir, then rename it: all or nothing. Returns its count."""
    if os.path.exists(target_dir):
        raise InputError(f"{target_dir}: already exists; remove it to prepare again")
    parent = os.path.dirname(os.path.abspath(target_dir))
    leftovers = sorted(glob.glob(os.path.join(glob.escape(parent), STAGING_PREFIX + "*")))
    if leftovers:
        console.warn(f"{len(leftovers)} staging folder(s) of an interrupted preparation in {parent}, first: {leftovers[0]}; "
                     "nothing reads them, remove them to free the space")
    try:
        os.makedirs(parent, exist_ok=True)
        staging_dir = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=parent)
    except OSError as error:
        raise InputError(f"{parent}: cannot create the dataset's folder there ({error.strerror}); "
                         "pass another --dataset-root") from None
    try:
        count = write(staging_dir)
        os.chmod(staging_dir, 0o755)  # mkdtemp makes it private; a dataset folder is for everyone to read.
        os.replace(staging_dir, target_dir)
    finally:
        if os.path.exists(staging_dir):
            shutil.rmtree(staging_dir)
    return count


def write_png(path, image):
    """Write one RGB or gray uint8 image as PNG (RGB is swapped to OpenCV's BGR here); whether it was written."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    return write_encoded(path, ".png", image)


def write_encoded(path, extension, image, parameters=()):
    """Encode a BGR or gray image with OpenCV and write it to path; whether both worked.

    Into a staging folder, written whole by the caller's rename. Python writes the bytes: OpenCV's own writer
    crashes on a path that is not UTF-8.
    """
    ok, encoded = cv2.imencode(extension, np.ascontiguousarray(image), list(parameters))
    try:
        with open(path, "wb") as file:
            file.write(encoded.tobytes())
    except OSError:
        return False
    return ok
