"""Image folders: listing, reading and resizing with OpenCV, splits, and streamed batches."""

import collections
import concurrent.futures
import os
import re
import stat
import warnings

import cv2
import numpy as np

from imsearch import InputError, console, formats, locations

# What OpenCV reads (TIFF and GIF's first frame included), then HEIF and AVIF (Pillow) and camera RAW (rawpy).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".heic", ".heif", ".avif",
                    *formats.RAW_EXTENSIONS)
# Files and folders operating systems and NAS boxes leave beside photos, passed over without a word: hidden ones
# (.DS_Store, macOS's AppleDouble ._IMG_0001.jpg, .thumbnails) and these.
CLUTTER_NAMES = frozenset({"thumbs.db", "desktop.ini", "@eadir", "@recycle", "#recycle", "$recycle.bin", "__macosx",
                           "system volume information"})
JPEG_SIGNATURE = b"\xff\xd8\xff"
# Start-of-frame markers (baseline, progressive, lossless...); C4, C8 and CC are other segments.
START_OF_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# (factor, colour flag, gray flag) of OpenCV's reduced JPEG decoding, largest reduction first.
JPEG_REDUCTIONS = (
    (8, cv2.IMREAD_REDUCED_COLOR_8, cv2.IMREAD_REDUCED_GRAYSCALE_8),
    (4, cv2.IMREAD_REDUCED_COLOR_4, cv2.IMREAD_REDUCED_GRAYSCALE_4),
    (2, cv2.IMREAD_REDUCED_COLOR_2, cv2.IMREAD_REDUCED_GRAYSCALE_2),
)
# A reduced decode must keep the shorter side at least this many times the model's image size.
REDUCED_SIDE_FACTOR = 2
# Used when a folder's images differ in size or exceed this: at 256 px the network has 101M parameters.
VARIED_IMAGE_SIZE = 64
LARGEST_INFERRED_SIZE = 128
READ_WORKERS = max(2, os.cpu_count() or 1)


# A folder below --dataset holding one of these is a run folder (--output): its montages and plots are the suite's.
RUN_FOLDER_FILES = frozenset({locations.MODEL_FILE, locations.INDEX_FILE})
# The pictures the scripts write into a run folder: search's montages, training's loss plot, evaluate's figures.
RUN_FOLDER_PICTURE = re.compile(r"(query|results)_[0-9]+\.jpg|training_loss\.png|reconstructions\.png|feature_map\.png")


class UnreadableImage(InputError):
    """An image file OpenCV cannot decode."""


def file_identity(path):
    """(device, inode) of the file or folder a path leads to: one for every link to it; OSError when there is none."""
    status = os.stat(path)
    return status.st_dev, status.st_ino


def list_images(dataset_dir, flag="--dataset"):
    """Sorted relative paths of every image under dataset_dir, and their labels (None if unlabelled); flag names it in errors."""
    if not os.path.isdir(dataset_dir):
        raise InputError(f"{dataset_dir}: no such folder; pass {flag} DIR" +
                         (" or run prepare_dataset.py first" if flag == "--dataset" else ""))
    unreadable_folders = []
    run_folders = []
    relative_paths = []
    other_files = collections.Counter()
    # Links to folders are followed, as to files; a folder reached a second way (a loop, or two links to it) is listed once.
    listed_folders, repeated_folders, own_pictures = set(), [], 0
    for root, folder_names, file_names in os.walk(dataset_dir, onerror=unreadable_folders.append, followlinks=True):
        identity = file_identity(root)
        if identity in listed_folders:
            repeated_folders.append(root)
            folder_names[:] = []
            continue
        listed_folders.add(identity)
        if root != dataset_dir and RUN_FOLDER_FILES.intersection(file_names):
            run_folders.append(root)
            folder_names[:] = []
            continue
        if root == dataset_dir and RUN_FOLDER_FILES.intersection(file_names):
            # The images' folder is also the run folder (--output): the pictures the suite wrote there are no images of it.
            own = [name for name in file_names if RUN_FOLDER_PICTURE.fullmatch(name)]
            own_pictures += len(own)
            file_names = sorted(set(file_names) - set(own))
        folder_names[:] = sorted(name for name in folder_names if not is_clutter(name))
        # One relpath per folder, not per file: it dominates listing a large folder otherwise.
        prefix = os.path.relpath(root, dataset_dir).replace(os.sep, "/") + "/"
        prefix = "" if prefix == "./" else prefix
        for name in file_names:
            if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."):
                relative_paths.append(prefix + name)
            elif not is_clutter(name):
                other_files[formats.extension_of(name)] += 1
    if unreadable_folders:
        console.warn(f"skipped {len(unreadable_folders)} unreadable folder(s), first: {unreadable_folders[0].filename}")
    if repeated_folders:
        console.warn(f"skipped {len(repeated_folders)} folder(s) of {dataset_dir} reached a second time through a link, "
                     f"first: {repeated_folders[0]}")
    if own_pictures:
        console.warn(f"skipped {own_pictures} picture(s) this suite wrote into {dataset_dir}, which is also its run folder "
                     "(--output); keep the run folder apart from the images")
    if run_folders:
        console.warn(f"skipped {len(run_folders)} run folder(s) inside {dataset_dir} (they hold a model or an index), first: {run_folders[0]}")
    if other_files:
        counts = ", ".join(f"{count} {extension}" for extension, count in sorted(other_files.items(), key=lambda item: (-item[1], item[0])))
        console.warn(f"skipped {sum(other_files.values())} file(s) of {dataset_dir} that are not images by their names ({counts})")
    if not relative_paths:
        raise InputError(f"{dataset_dir}: no images ({', '.join(IMAGE_EXTENSIONS)}) found; point {flag} at a folder of images")
    relative_paths.sort()
    return relative_paths, labels_of(relative_paths)


def is_clutter(name):
    """Whether a file or folder name is one the system left there (hidden, AppleDouble, NAS thumbnails), not the user."""
    return name.startswith(".") or name.lower() in CLUTTER_NAMES


def full_paths(folder, relative_paths):
    """The paths of relative_paths under folder: one os.path.join for the folder, as one per file is slow at 60,000."""
    prefix = os.path.join(folder, "")
    return [prefix + path for path in relative_paths]


def labels_of(relative_paths):
    """First-level subfolder names as labels, or None when no image sits in a subfolder."""
    labels = [path.split("/", 1)[0] if "/" in path else None for path in relative_paths]
    return labels if any(label is not None for label in labels) else None


def too_large(path):
    """Whether an image file's header gives more pixels than Pillow will decode (its guard against decompression bombs)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path):
                return False
    except Image.DecompressionBombError:
        return True
    except (OSError, ValueError, SyntaxError):
        return False


def why_unreadable(path):
    """Why a path given as an image could not be read, with what to do: for messages."""
    if os.path.isdir(path):
        return "is a folder; pass image files, or their paths on stdin with - (find DIR -name '*.jpg' | search.py -)"
    if not os.path.lexists(path):
        return "does not exist; check the path"
    if not os.path.isfile(path):
        return "not a regular file (a broken link, a device or a pipe); pass image files"
    if too_large(path):
        return "has too many pixels to decode safely; pass a smaller copy (for example 8,000 pixels on its longer side)"
    return ("not a readable image; pass image files (jpg, png, webp, tiff, gif, heic, avif, bmp or a camera RAW such as "
            "dng, cr2, nef, arw)")


def read_image(path, image_size, channels, stamp=None):
    """Read an image as uint8 (image_size, image_size, channels), RGB or gray, aspect kept and centre-cropped.

    stamp: a writable (2,) int64 array that receives the file's (size, mtime in ns), sparing a second stat.
    """
    image = decode_file(path, image_size, channels, stamp)
    if channels == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return at_model_size(image, image_size, channels)


def at_model_size(image, image_size, channels):
    """An RGB or gray uint8 image as (image_size, image_size, channels): aspect kept, centre-cropped, converted as needed."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] in (1, 4):  # Gray with a channel axis; RGBA, whose alpha is dropped.
        image = image[..., 0] if image.shape[2] == 1 else np.ascontiguousarray(image[..., :3])
    if image.ndim == 3 and channels == 1:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    elif image.ndim == 2 and channels == 3:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[:2] != (image_size, image_size):
        image = resize_and_crop(image, image_size)
    return image.reshape(image_size, image_size, channels)


def decode_file(path, image_size, channels, stamp=None):
    """The image in a file, gray or BGR and upright (a large JPEG reduced towards image_size); see read_image."""
    encoded = read_regular_file(path, stamp)
    if encoded is None:
        raise UnreadableImage(f"{path}: not a regular file (missing, a broken link, or a device)")
    return decode_bytes(encoded, path, image_size, channels)[0]


def decode_bytes(encoded, path, image_size, channels):
    """(image, reduction) of a file's bytes: gray or BGR uint8, upright, and the factor a JPEG was reduced by while decoded.

    OpenCV decodes what it can, turned by its EXIF orientation; camera RAW (by the file's name) goes to rawpy,
    HEIF and AVIF to Pillow, and what OpenCV cannot decode is offered to Pillow before it is called unreadable.
    """
    image, reduction = None, 1
    if encoded.size and formats.is_raw(path):
        image = formats.decode_raw(encoded, channels, image_size * REDUCED_SIDE_FACTOR)
    elif encoded.size and formats.is_heif(encoded):
        image = formats.decode_with_pillow(encoded, channels, image_size * REDUCED_SIDE_FACTOR)
    elif encoded.size:
        flag = decode_flag(encoded, image_size, channels)
        image = decode_with_opencv(encoded, flag)
        reduction = next((factor for factor, *flags in JPEG_REDUCTIONS if flag in flags), 1)
        if image is None:
            image, reduction = formats.decode_with_pillow(encoded, channels, image_size * REDUCED_SIDE_FACTOR), 1
    if image is None or image.size == 0:
        raise UnreadableImage(f"{path}: not a readable image")
    return image, reduction


def decode_with_opencv(encoded, flag):
    """OpenCV's decoding of a file's bytes; None where it cannot or will not."""
    try:
        return cv2.imdecode(encoded, flag)
    except cv2.error:  # Raised, not None returned, for images over OpenCV's pixel limit (2**30).
        return None


def read_display_image(path, longer_side):
    """The whole picture for people to look at: RGB uint8 with its longer side at most longer_side, aspect kept."""
    image = decode_file(path, longer_side, 3)
    scale = longer_side / max(image.shape[:2])
    if scale < 1:
        image = cv2.resize(image, (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))),
                           interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def decode_flag(encoded, image_size, channels):
    """OpenCV's imdecode flag for an image: a JPEG large enough is decoded at 1/2, 1/4 or 1/8 of its size.

    JPEG decoders can scale while decoding, skipping most of the work on a camera photo; the largest
    reduction that keeps the shorter side at least REDUCED_SIDE_FACTOR times image_size is taken, so the
    final resize still averages several decoded pixels into each.
    """
    full = cv2.IMREAD_GRAYSCALE if channels == 1 else cv2.IMREAD_COLOR
    if encoded[:3].tobytes() != JPEG_SIGNATURE:
        return full
    shorter_side = jpeg_shorter_side(encoded)
    for factor, colour_flag, gray_flag in JPEG_REDUCTIONS:
        if shorter_side >= factor * image_size * REDUCED_SIDE_FACTOR:
            return gray_flag if channels == 1 else colour_flag
    return full


def jpeg_shorter_side(encoded):
    """The shorter side of a JPEG in pixels, read from its frame header (0 when there is none to read).

    OpenCV has no call for the size alone, and Pillow's header parsing costs as much as decoding a thumbnail:
    this walks the marker segments (each says its length) up to the start-of-frame segment, which holds
    height and width.
    """
    data = encoded.data  # A memoryview: slicing copies nothing.
    position = 2  # After the start-of-image marker.
    while position + 9 <= len(data):
        if data[position] != 0xFF:
            return 0
        marker = data[position + 1]
        if marker == 0xFF:  # A fill byte before a marker.
            position += 1
        elif marker in START_OF_FRAME_MARKERS:
            height, width = int.from_bytes(data[position + 5 : position + 7], "big"), int.from_bytes(data[position + 7 : position + 9], "big")
            return min(height, width)
        elif marker == 0x01 or 0xD0 <= marker <= 0xD7:  # Markers without a segment.
            position += 2
        else:
            position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return 0


def read_regular_file(path, stamp=None):
    """A regular file's bytes as a uint8 array, or None for anything else (missing, a folder, a FIFO, a device).

    One open serves both the check and the read, so a file is resolved once, and O_NONBLOCK keeps a FIFO
    named like an image from blocking the reader forever.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except (OSError, ValueError):  # ValueError: a NUL byte in the name.
        return None
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            return None
        if stamp is not None:
            stamp[0], stamp[1] = status.st_size, status.st_mtime_ns
        # Asking for one byte more than the size: exactly the size back means the file ended there. That is
        # the common case, done in one read sized to the file rather than in fixed-size chunks.
        content = os.read(descriptor, status.st_size + 1)
        if len(content) == status.st_size:
            return np.frombuffer(content, dtype=np.uint8)
        # Otherwise the read came back short or the file has grown: read on to the end.
        chunks = [content]
        while chunk := os.read(descriptor, 1 << 16):
            chunks.append(chunk)
        return np.frombuffer(b"".join(chunks), dtype=np.uint8)
    except OSError:
        return None
    finally:
        os.close(descriptor)


def resize_and_crop(image, image_size):
    """Resize so the shorter side is image_size, keeping the aspect ratio, then crop the centre square."""
    height, width = image.shape[:2]
    scale = image_size / min(height, width)
    new_width, new_height = max(image_size, round(width * scale)), max(image_size, round(height * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_width, new_height), interpolation=interpolation)
    top, left = (new_height - image_size) // 2, (new_width - image_size) // 2
    return resized[top : top + image_size, left : left + image_size]


def warn_if_colour_for_gray_model(paths, channels, what):
    """Warn when colour images (judged on up to 50 of paths) meet a model trained on gray ones, which ignores colour."""
    if channels != 1 or not paths:
        return
    sample = paths[:: max(1, len(paths) // 50)][:50]
    try:
        _, found_channels = infer_image_shape(sample)
    except InputError:  # None readable: the caller reports unreadable images itself.
        return
    if found_channels == 3:
        console.warn(f"{what} are in colour but the model was trained on gray images, so their colours are ignored; "
                     "for colour photos train a model on them (train.py --dataset FOLDER --output RUN_FOLDER)")


def split_indices(count, validation_fraction, seed):
    """Train and validation indices of a seeded permutation, identical in every script."""
    permutation = np.random.default_rng(seed).permutation(count)
    # At least one image on each side once there are two, whatever the fraction.
    validation_count = min(count - 1, max(1, round(count * validation_fraction))) if count > 1 else 0
    return np.sort(permutation[validation_count:]), np.sort(permutation[:validation_count])


def infer_image_shape(paths, sample_count=200):
    """Image size and channels for a folder: from up to sample_count images spread over it."""
    step = max(1, len(paths) // sample_count)
    sizes, colourful = set(), False
    for path in paths[::step]:
        image = read_unchanged(path)
        if image is None:
            continue
        sizes.add(image.shape[:2])
        if image.ndim == 3 and image.shape[2] >= 3:
            colour = image[..., :3]
            colourful = colourful or not (np.array_equal(colour[..., 0], colour[..., 1]) and np.array_equal(colour[..., 1], colour[..., 2]))
    if not sizes:
        raise InputError(f"none of the sampled images in {os.path.dirname(paths[0]) or '.'} is readable")
    channels = 3 if colourful else 1
    if len(sizes) == 1:
        height, width = sizes.pop()
        side = min(height, width)
        if side <= LARGEST_INFERRED_SIZE:
            # The default network halves the side twice; train.py rounds further for more --filters.
            return max(8, -(-side // 4) * 4), channels
    return VARIED_IMAGE_SIZE, channels


def read_unchanged(path):
    """An image as stored (bit depth, channels), or None when it is not a readable image file."""
    encoded = read_regular_file(path)
    if encoded is None or not encoded.size:
        return None
    image = None if formats.is_raw(path) else decode_with_opencv(encoded, cv2.IMREAD_UNCHANGED)
    if image is None:  # RAW, HEIF, AVIF or another format only Pillow reads: as 8-bit colour.
        try:
            image = decode_bytes(encoded, path, 0, 3)[0]
        except UnreadableImage:
            return None
    return image


def read_batch(paths, image_size, channels, executor, stamps=None):
    """Read paths in parallel: a uint8 batch of the readable ones, and a mask of which those are.

    stamps: a writable (len(paths), 2) int64 array that receives each readable file's (size, mtime in ns).
    """
    def read_chunk(start):
        images = []
        for row, path in enumerate(paths[start : start + chunk_size], start):
            try:
                images.append(read_image(path, image_size, channels, None if stamps is None else stamps[row]))
            except UnreadableImage:
                images.append(None)
        return images

    # One contiguous chunk per thread: a future per image costs as much as decoding a small one.
    chunk_size = -(-len(paths) // READ_WORKERS)
    images = [image for chunk in executor.map(read_chunk, range(0, len(paths), chunk_size)) for image in chunk]
    valid = np.array([image is not None for image in images], dtype=bool)
    batch = np.zeros((int(valid.sum()), image_size, image_size, channels), np.uint8)
    for row, image in enumerate(image for image in images if image is not None):
        batch[row] = image
    return batch, valid


def iterate_batches(paths, image_size, channels, batch_size, stamps=None):
    """Yield (start, batch, valid) over paths, reading the next batch while the caller works on this one.

    stamps: as for read_batch, a (len(paths), 2) array filled in as the files are read.
    """
    with concurrent.futures.ThreadPoolExecutor(READ_WORKERS) as executor, concurrent.futures.ThreadPoolExecutor(1) as prefetcher:
        starts = range(0, len(paths), batch_size)
        pending = None
        for start in starts:
            batch_stamps = None if stamps is None else stamps[start : start + batch_size]
            future = prefetcher.submit(read_batch, paths[start : start + batch_size], image_size, channels, executor, batch_stamps)
            if pending is not None:
                yield pending[0], *pending[1].result()
            pending = (start, future)
        if pending is not None:
            yield pending[0], *pending[1].result()


def keep_readable(paths, image_size, channels, batch_size=512):
    """The paths that decode, warning with a count about the rest; an error when none does."""
    readable = []
    with console.progress(len(paths), "reading") as progress:
        for start, _, valid in iterate_batches(paths, image_size, channels, batch_size):
            readable.extend(path for path, ok in zip(paths[start : start + batch_size], valid) if ok)
            progress.update(len(valid))
    skipped = len(paths) - len(readable)
    if skipped:
        readable_set = set(readable)
        first = next(path for path in paths if path not in readable_set)
        console.warn(f"skipped {skipped} unreadable image(s) of {len(paths)}, first: {first}")
    if not readable:
        raise InputError(f"none of the {len(paths)} images is readable (first: {paths[0]}); check the folder")
    return readable


def training_dataset(paths, image_size, channels, batch_size, shuffle_seed=None, augmentation=None, view_crop_area=None,
                     invariance=False, histograms=False):
    """A tf.data pipeline of (input, target) float batches streamed from disk, never the whole folder.

    augmentation: optional dict with flip (bool), noise_std (float) and shift_pixels (int); flips
    change input and target alike, noise and shifts only the input, so the model learns to undo them.
    view_crop_area: for the views objective, ((view 1, view 2), targets) batches instead: two random views of
    each image (views.random_views; the clean image itself when shuffle_seed is None, for validation), the
    clean image as both reconstructions' target, with histograms the clean image's (descriptors.histograms_of) as
    the target of both views' histogram predictions, and with invariance a placeholder target for that term.
    """
    from imsearch.backend import tf  # Here, not at the top: reading images must not wait for TensorFlow.

    def load(batch_paths):
        images = [read_image(os.fsdecode(path), image_size, channels) for path in batch_paths]
        return np.stack(images).astype(np.float32) / 255.0

    # As bytes: a tensor holds any name the filesystem allows, UTF-8 or not; load decodes it back.
    dataset = tf.data.Dataset.from_tensor_slices(np.array([os.fsencode(path) for path in paths]))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(paths), seed=shuffle_seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size).map(
        lambda batch_paths: tf.ensure_shape(
            tf.numpy_function(load, [batch_paths], tf.float32), (None, image_size, image_size, channels)
        ),
        num_parallel_calls=READ_WORKERS,
    )
    if view_crop_area is None:
        dataset = dataset.map(lambda images: augment(images, **(augmentation or {})))
    else:
        dataset = dataset.map(lambda images: view_pair(images, view_crop_area if shuffle_seed is not None else None,
                                                       invariance, histograms, **(augmentation or {})))
    # With autotune on, fit pauses for seconds at epoch boundaries while tf.data tears its threads down.
    options = tf.data.Options()
    options.autotune.enabled = False
    # Workers of a multi-worker run each take every n-th batch: the input is one list of paths, not files.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.prefetch(2).with_options(options)


def augment(images, flip=False, noise_std=0.0, shift_pixels=0):
    """(input, target) from a float batch: optional flips of both, noise and shifts of the input only."""
    if flip:
        images = random_flip(images)
    return edit_input(images, noise_std, shift_pixels), images


def view_pair(images, crop_area, invariance, histograms=False, flip=False, noise_std=0.0, shift_pixels=0):
    """((view 1, view 2), targets) of a float batch for the views objective; crop_area None: both views clean."""
    import tensorflow as tf

    from imsearch import descriptors, views

    if flip:
        images = random_flip(images)
    first, second = (images, images) if crop_area is None else views.random_views(images, crop_area)
    inputs = tuple(edit_input(view, noise_std, shift_pixels) for view in (first, second))
    targets = {"reconstruction_1": images, "reconstruction_2": images}
    if histograms:
        length = descriptors.histograms_length(images.shape[-1])
        clean = tf.ensure_shape(tf.numpy_function(descriptors.histograms_of, [images], tf.float32), (None, length))
        targets["histograms_1"] = targets["histograms_2"] = clean
    if invariance:
        targets["invariance"] = tf.zeros((tf.shape(images)[0], 1))
    return inputs, targets


def random_flip(images):
    """Each image of a batch mirrored left to right, half of the time."""
    import tensorflow as tf

    flipped = tf.random.uniform((tf.shape(images)[0], 1, 1, 1)) < 0.5
    return tf.where(flipped, tf.reverse(images, axis=[2]), images)


def edit_input(inputs, noise_std=0.0, shift_pixels=0):
    """Inputs shifted by up to shift_pixels and with Gaussian noise, for training to undo (both optional)."""
    import tensorflow as tf

    if shift_pixels:
        # Pad by reflection and crop back at a random offset: a shift without empty borders.
        size, padding = inputs.shape[1], shift_pixels
        padded = tf.pad(inputs, [[0, 0], [padding, padding], [padding, padding], [0, 0]], mode="REFLECT")
        offsets = tf.random.uniform((2,), 0, 2 * padding + 1, dtype=tf.int32)
        inputs = padded[:, offsets[0] : offsets[0] + size, offsets[1] : offsets[1] + size, :]
    if noise_std:
        inputs = tf.clip_by_value(inputs + tf.random.normal(tf.shape(inputs), stddev=noise_std), 0.0, 1.0)
    return inputs


def default_sample_dir(dataset_dir):
    """The test folder beside a train folder when there is one, else the folder itself."""
    test_dir = os.path.join(os.path.dirname(os.path.normpath(dataset_dir)), "test")
    return test_dir if os.path.basename(os.path.normpath(dataset_dir)) == "train" and os.path.isdir(test_dir) else dataset_dir


def sample_images(folder, count, seed):
    """count images of folder chosen at random with the seed, in a stable order."""
    relative_paths, _ = list_images(folder, "--sample-dir")
    chosen = np.random.default_rng(seed).choice(len(relative_paths), size=min(count, len(relative_paths)), replace=False)
    return [os.path.join(folder, relative_paths[i]) for i in chosen]
