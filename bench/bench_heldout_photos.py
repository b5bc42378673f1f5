"""A small folder of real photos that no benchmark set uses, searched with edited copies of each: is the original first?

The photos ship with the suite's own dependencies (matplotlib's grace_hopper, scikit-learn's china and
flower, ten of scikit-image's gray photos); the drawings of gnome-backgrounds and sway-backgrounds sit
beside them in the database as distractors, where installed. Each photo gets six edited copies as
queries: resized to 200 px, centre-cropped to 80% of each side, JPEG quality 40, mirrored, rotated 8° and
zoomed 1.2x, contrast x1.2 with brightness +25. The default model is trained on the folder (60 epochs,
about 1.5 min), the folder indexed with default settings, and evaluate.py scores the copies (its
precision_at_1 is recall@1 here, each photo being its own class; top_hit_share the largest share of
queries with one and the same first hit). Prints evaluate.py's table on stdout.

    python bench/bench_heldout_photos.py [--epochs 60]
"""

import argparse
import glob
import os
import shutil
import sys

import cv2
import matplotlib
import skimage
import sklearn

from common import REPOSITORY_DIR, run_script

# The folder is made where prepare_dataset.py makes the other sets, the run where bench_retrieval.py keeps its runs.
DATASET_DIR = os.path.join(REPOSITORY_DIR, "dataset", "heldout-photos")
RUN_DIR = os.path.join(REPOSITORY_DIR, "output", "bench", "heldout-photos")
SKIMAGE_GRAY_PHOTOS = ("camera", "moon", "coins", "brick", "grass", "gravel", "page", "clock_motion", "cell", "microaneurysms")
DISTRACTOR_PATTERNS = ("/usr/share/backgrounds/gnome/*", "/usr/share/backgrounds/sway/*", "/usr/share/backgrounds/*.png",
                       "/usr/share/backgrounds/*.jpg")


def photo_paths():
    """{name: path} of the held-out photos, from the installed packages."""
    paths = {
        "grace_hopper": os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data", "grace_hopper.jpg"),
        "china": os.path.join(os.path.dirname(sklearn.__file__), "datasets", "images", "china.jpg"),
        "flower": os.path.join(os.path.dirname(sklearn.__file__), "datasets", "images", "flower.jpg"),
    }
    skimage_data = os.path.join(os.path.dirname(skimage.__file__), "data")
    return paths | {name: os.path.join(skimage_data, f"{name}.png") for name in SKIMAGE_GRAY_PHOTOS}


def edited_copies(image):
    """{name: image} of the six edits each photo is searched with."""
    height, width = image.shape[:2]
    scale = 200 / max(height, width)
    rotation = cv2.getRotationMatrix2D((width / 2, height / 2), 8, 1.2)
    return {
        "resized": cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA),
        "cropped": image[height // 10 : height - height // 10, width // 10 : width - width // 10],
        "reencoded": image,  # Written at JPEG quality 40 below.
        "mirrored": image[:, ::-1],
        "rotated": cv2.warpAffine(image, rotation, (width, height), borderMode=cv2.BORDER_REFLECT),
        "brighter": cv2.convertScaleAbs(image, alpha=1.2, beta=25),
    }


def write(path, image, quality=92):
    """Write image as a JPEG at path, making its folder."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not cv2.imwrite(path, image, [cv2.IMWRITE_JPEG_QUALITY, quality]):
        raise OSError(f"{path}: could not be written")


def build_folder(dataset_dir):
    """Write train/<photo>/original.jpg, test/<photo>/<edit>.jpg and train/drawing_<name>/original.jpg; return the counts."""
    shutil.rmtree(dataset_dir, ignore_errors=True)
    photos = 0
    for name, path in photo_paths().items():
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            print(f"warning: {path} is missing or unreadable; left out", file=sys.stderr)
            continue
        write(os.path.join(dataset_dir, "train", name, "original.jpg"), image)
        for edit, copy in edited_copies(image).items():
            write(os.path.join(dataset_dir, "test", name, f"{edit}.jpg"), copy, 40 if edit == "reencoded" else 92)
        photos += 1
    drawings = 0
    for path in sorted(path for pattern in DISTRACTOR_PATTERNS for path in glob.glob(pattern)):
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is not None and min(image.shape[:2]) >= 64:
            write(os.path.join(dataset_dir, "train", f"drawing_{os.path.splitext(os.path.basename(path))[0]}", "original.jpg"), image)
            drawings += 1
    return photos, drawings


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=0, help="training epochs; 0: train.py's default")
    arguments = parser.parse_args()
    dataset_dir, run_dir = DATASET_DIR, RUN_DIR
    photos, drawings = build_folder(dataset_dir)
    print(f"{photos} photos with 6 copies each, {drawings} drawings beside them", file=sys.stderr, flush=True)
    train_dir = os.path.join(dataset_dir, "train")
    shutil.rmtree(run_dir, ignore_errors=True)
    run_script(["train.py", "--dataset", train_dir, "--output", run_dir, *(["--epochs", str(arguments.epochs)] if arguments.epochs else [])])
    run_script(["index_dataset.py", "--dataset", train_dir, "--output", run_dir])
    sys.stdout.flush()
    run_script(["evaluate.py", "--dataset", train_dir, "--output", run_dir, "--queries", os.path.join(dataset_dir, "test")], stdout=sys.stdout)


if __name__ == "__main__":
    main()
