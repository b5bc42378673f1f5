"""Duplicate finding beside imagededup: precision and recall of copy pairs, and time, on real photos with hard negatives.

Two folders, each of real photos with edited copies and the same hard negatives mixed in:
  photos-small   prepare_dataset.py's 31 photos, each with a resized, an 80% crop, a JPEG-40 and a mirrored copy;
  heldout        bench_heldout_photos.py's 13 photos (six copies each: those four, rotated 8° and zoomed, brighter)
                 and the wallpaper drawings beside them.
Hard negatives: a checkerboard in 14 poses before one wall, the four quarters (no overlap) of four photos
not otherwise in the folder, 200 Fashion-MNIST T-shirts, scikit-image's lfw_subset (100 faces and 100
patches of scenes, 25 × 25 px) and a stereo pair (two photos of one scene). Every pair of files that are
not copies of one picture is a negative; two framings of one wallpaper (16:9 beside 4:3, portrait beside
landscape: crops of 25% and more, beyond the 20% that makes a copy) count neither way.

The suite runs as a user would: train.py (--epochs 2: --duplicates compares histograms and pixels, never the
encoder's features), index_dataset.py and search.py --duplicates --html, all at default settings; its time
is indexing plus --duplicates. Sets are read from the HTML page: a set is wrong when two of its members are
not copies of each other. imagededup's PHash, DHash, WHash and AHash run at their default thresholds on
the same folder, their hashing module loaded on its own so that torch is not needed:

    .venv/bin/pip install --no-deps imagededup==0.3.3.post2 PyWavelets==1.9.0
    python bench/bench_duplicates.py [--fashion-mnist]

--fashion-mnist also times --duplicates on the 60,000 Fashion-MNIST images (dataset/fashion-mnist/train,
from prepare_dataset.py) beside finding the candidate pairs alone, which is all --duplicates did before
pairs were verified. Prints a tab-separated table on stdout.
"""

import argparse
import glob
import gzip
import html
import importlib
import itertools
import os
import re
import shutil
import sys
import time
import types

import cv2
import numpy as np
import skimage

from bench_heldout_photos import build_folder as build_heldout_folder, photo_paths as heldout_photo_paths
from common import REPOSITORY_DIR, run_script
import config
from imsearch import photo_sets

BENCH_DIR = os.path.join(REPOSITORY_DIR, "dataset", "duplicates")
RUN_DIR = os.path.join(REPOSITORY_DIR, "output", "bench", "duplicates")
# Quarters of photos that are not otherwise in the folder: one picture cut in four is four different pictures.
TILED = {"photos-small": ("china", "flower", "grace_hopper", "camera"), "heldout": ("storm", "dune", "by-the-water", "colorful-cups")}
IMAGEDEDUP_METHODS = ("PHash", "DHash", "WHash", "AHash")


def write(path, image, quality=92):
    """Write image at path (JPEG quality for .jpg), making its folder."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not cv2.imwrite(path, image, [cv2.IMWRITE_JPEG_QUALITY, quality]):
        raise OSError(f"{path}: could not be written")


def add_hard_negatives(folder, tiled_paths, stereo_sides):
    """Write the hard negatives into folder/negatives/<series>/, each file a picture of its own.

    stereo_sides: which of scikit-image's motorcycle stereo pair to add ("left" is one of photos-small's photos).
    """
    rng = np.random.default_rng(0)
    for number, image in enumerate(photo_sets.board_series(14, rng)):
        write(os.path.join(folder, "negatives", "boards", f"{number:02d}.jpg"), image)
    for name, path in tiled_paths.items():
        image = photo_sets.load_picture(path, 1600)
        height, width = image.shape[:2]
        for row, column in itertools.product(range(2), range(2)):
            tile = image[row * height // 2 : (row + 1) * height // 2, column * width // 2 : (column + 1) * width // 2]
            write(os.path.join(folder, "negatives", f"quarters-{name}", f"{row}{column}.jpg"), tile)
    with gzip.open(os.path.join(config.DEBIAN_FASHION_MNIST_DIR, "t10k-images-idx3-ubyte.gz")) as file:
        items = np.frombuffer(file.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(os.path.join(config.DEBIAN_FASHION_MNIST_DIR, "t10k-labels-idx1-ubyte.gz")) as file:
        labels = np.frombuffer(file.read(), np.uint8, offset=8)
    for number, item in enumerate(items[labels == 0][:200]):  # Class 0: T-shirts and tops, look-alike products.
        write(os.path.join(folder, "negatives", "t-shirts", f"{number:03d}.png"), item)
    skimage_data = os.path.join(os.path.dirname(skimage.__file__), "data")
    for number, face in enumerate(np.load(os.path.join(skimage_data, "lfw_subset.npy"))):
        write(os.path.join(folder, "negatives", "faces", f"{number:03d}.png"), (face * 255).round().astype(np.uint8))
    for side in stereo_sides:
        write(os.path.join(folder, "negatives", "stereo", f"{side}.jpg"), cv2.imread(os.path.join(skimage_data, f"motorcycle_{side}.png")))


def build_folders():
    """{name: folder} of the two benchmark folders, each with its copies under copies/<photo>/ and the hard negatives."""
    folders = {}
    wallpapers = photo_sets.find_photos()
    small = os.path.join(BENCH_DIR, "photos-small")
    shutil.rmtree(small, ignore_errors=True)
    photo_sets.build_small_folder(wallpapers, os.path.join(small, "staging"))
    for path in glob.glob(os.path.join(small, "staging", "*", "*", "*.jpg")):
        split, name, file = path.split(os.sep)[-3:]
        os.renames(path, os.path.join(small, "copies", name, file))
    shutil.rmtree(os.path.join(small, "staging"), ignore_errors=True)
    heldout_names = heldout_photo_paths()
    add_hard_negatives(small, {name: heldout_names[name] for name in TILED["photos-small"]}, ("right",))
    folders["photos-small"] = small
    heldout = os.path.join(BENCH_DIR, "heldout")
    shutil.rmtree(heldout, ignore_errors=True)
    build_heldout_folder(os.path.join(heldout, "staging"))
    for path in glob.glob(os.path.join(heldout, "staging", "*", "*", "*.jpg")):
        split, name, file = path.split(os.sep)[-3:]
        # The drawings stand alone: each is its own picture.
        target = os.path.join("negatives", "drawings", f"{name}.jpg") if name.startswith("drawing_") else os.path.join("copies", name, file)
        os.renames(path, os.path.join(heldout, target))
    shutil.rmtree(os.path.join(heldout, "staging"), ignore_errors=True)
    add_hard_negatives(heldout, {name: wallpapers[name] for name in TILED["heldout"] if name in wallpapers}, ("left", "right"))
    folders["heldout"] = heldout
    return folders


def picture_of(relative_path):
    """(the picture a file shows, its framing): its photo for copies/<photo>/<edit>, the file itself otherwise.

    sway-backgrounds ships one wallpaper at eight sizes in four aspect ratios (Sway_Wallpaper_Blue_1920x1080.png,
    ..._2048x1536_Portrait.png): those of one aspect are resized copies of one picture, which a duplicate finder
    should pair; those of aspects 25% or more apart (16:9 beside 4:3, portrait beside landscape) are crops beyond
    the 20% that makes a copy, and neither copies nor different pictures (see framing_pairs).
    """
    parts = relative_path.split("/")
    if parts[0] == "copies":
        return parts[1], None
    sizes = re.search(r"_(\d+)x(\d+)(_Portrait)?\.\w+$", relative_path)
    if not sizes:
        return relative_path, None
    aspect = max(int(sizes[1]), int(sizes[2])) / min(int(sizes[1]), int(sizes[2]))
    return relative_path[: sizes.start()], f"{aspect:.1f}{' portrait' if sizes[3] else ''}"


def true_pairs(folder):
    """(sorted relative-path pairs that are copies of one picture, pairs of one picture framed otherwise, file count)."""
    files = sorted(os.path.relpath(path, folder) for path in glob.glob(os.path.join(folder, "**", "*.*"), recursive=True))
    by_picture = {}
    for file in files:
        by_picture.setdefault(picture_of(file)[0], []).append(file)
    pairs = [tuple(sorted(pair)) for members in by_picture.values() for pair in itertools.combinations(members, 2)]
    truth = {pair for pair in pairs if picture_of(pair[0]) == picture_of(pair[1])}
    return truth, set(pairs) - truth, len(files)


def scores(found, truth, framing_pairs):
    """(precision, recall, recall of each edit's pairs with its original) of found pairs against the true ones.

    Pairs of one picture framed otherwise (framing_pairs) count neither way: reported or not, no one is wrong.
    """
    found = found - framing_pairs
    hits = found & truth
    precision = len(hits) / len(found) if found else 1.0
    per_edit = {}
    for pair in truth:
        edits = [os.path.splitext(os.path.basename(path))[0] for path in pair]
        if "original" in edits:
            edit = edits[1 - edits.index("original")]
            per_edit.setdefault(edit, []).append(pair in found)
    return precision, len(hits) / len(truth), {edit: float(np.mean(values)) for edit, values in sorted(per_edit.items())}


def suite_duplicates(folder, run_dir):
    """(pairs found, sets as lists of relative paths, seconds of indexing plus --duplicates) of the suite at default settings."""
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(run_dir)
    run_script(["train.py", "--dataset", folder, "--output", run_dir, "--epochs", "2"])
    start = time.perf_counter()
    run_script(["index_dataset.py", "--dataset", folder, "--output", run_dir])
    tsv = os.path.join(run_dir, "duplicates.tsv")
    page = os.path.join(run_dir, "duplicates.html")
    with open(tsv, "w") as output:
        run_script(["search.py", "--output", run_dir, "--duplicates", "--html", page], stdout=output)
    seconds = time.perf_counter() - start
    with open(tsv) as file:
        # The scripts ran in the repository, so their paths are relative to it. Each line is a copy beside its set's
        # keeper, and a set's copies are copies of each other too: every pair of a set is found.
        members = {}
        for line in file:
            if line.strip():
                keep, copy = (os.path.relpath(os.path.join(REPOSITORY_DIR, path), folder) for path in line.split("\t")[:2])
                members.setdefault(keep, [keep]).append(copy)
    found = {tuple(sorted(pair)) for group in members.values() for pair in itertools.combinations(group, 2)}
    with open(page) as file:
        sections = file.read().split("<section")[1:]
    sets = [[os.path.relpath(os.path.join(REPOSITORY_DIR, html.unescape(path)), folder)
             for path in re.findall(r"<br>([^<]+)</figcaption>", section)]
            for section in sections]
    return found, sets, seconds


def load_imagededup_hashing():
    """imagededup's hashing module alone: the __init__ of its methods and utils packages import the CNN model, and with it torch.

    Both packages are registered empty (their folders as their path), so only the modules hashing needs load.
    """
    import imagededup

    for package in ("methods", "utils"):
        bare = types.ModuleType(f"imagededup.{package}")
        bare.__path__ = [os.path.join(os.path.dirname(imagededup.__file__), package)]
        sys.modules[bare.__name__] = bare
    return importlib.import_module("imagededup.methods.hashing")


def imagededup_duplicates(hashing, method, folder):
    """(pairs found, seconds) of one imagededup hashing method at its default threshold."""
    start = time.perf_counter()
    found = getattr(hashing, method)(verbose=False).find_duplicates(image_dir=folder, recursive=True)
    seconds = time.perf_counter() - start
    return {tuple(sorted((file, other))) for file, others in found.items() for other in others}, seconds


def fashion_mnist_timing():
    """Seconds of --duplicates on the 60,000 Fashion-MNIST images, and of finding its candidate pairs alone."""
    from imsearch import duplicates, index

    folder, run_dir = os.path.join(REPOSITORY_DIR, "dataset", "fashion-mnist", "train"), os.path.join(RUN_DIR, "fashion-mnist")
    if not os.path.isfile(os.path.join(run_dir, config.INDEX_FILE)):
        os.makedirs(run_dir, exist_ok=True)
        run_script(["train.py", "--dataset", folder, "--output", run_dir, "--epochs", "1"])
        run_script(["index_dataset.py", "--dataset", folder, "--output", run_dir])
    feature_index = index.load_indexes([os.path.join(run_dir, config.INDEX_FILE)])
    start = time.perf_counter()
    candidates, _ = duplicates.candidate_pairs(feature_index, config.DEFAULTS.duplicate_distance, config.DEFAULTS.encode_batch_size)
    candidate_seconds = time.perf_counter() - start
    with open(os.devnull, "w") as output:
        start = time.perf_counter()
        run_script(["search.py", "--output", run_dir, "--duplicates"], stdout=output)
        full_seconds = time.perf_counter() - start
    return len(candidates), candidate_seconds, full_seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fashion-mnist", action="store_true", help="also time --duplicates on 60,000 Fashion-MNIST images")
    arguments = parser.parse_args()
    hashing = load_imagededup_hashing()
    print("folder\timages\tcopy pairs\tmethod\tpairs found\tprecision\trecall\twrong sets\tseconds\trecall per edit", flush=True)
    for name, folder in build_folders().items():
        truth, framing_pairs, images = true_pairs(folder)
        found, sets, seconds = suite_duplicates(folder, os.path.join(RUN_DIR, name))
        wrong_sets = sum(any(tuple(sorted(pair)) not in truth | framing_pairs for pair in itertools.combinations(members, 2)) for members in sets)
        results = [("suite", found, seconds, f"{wrong_sets} of {len(sets)}")]
        for method in IMAGEDEDUP_METHODS:
            method_found, method_seconds = imagededup_duplicates(hashing, method, folder)
            results.append((f"imagededup {method}", method_found, method_seconds, "-"))
        for method, method_found, method_seconds, wrong in results:
            precision, recall, per_edit = scores(method_found, truth, framing_pairs)
            edits = " ".join(f"{edit} {value:.2f}" for edit, value in per_edit.items())
            print(f"{name}\t{images}\t{len(truth)}\t{method}\t{len(method_found)}\t{precision:.4f}\t{recall:.4f}\t{wrong}\t"
                  f"{method_seconds:.1f}\t{edits}", flush=True)
    if arguments.fashion_mnist:
        count, candidate_seconds, full_seconds = fashion_mnist_timing()
        print(f"fashion-mnist 60,000: {count} candidate pairs found in {candidate_seconds:.1f} s; search.py --duplicates "
              f"{full_seconds:.1f} s in all, {full_seconds / candidate_seconds:.2f}x", flush=True)


if __name__ == "__main__":
    main()
