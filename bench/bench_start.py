"""Start-up: how long search.py takes to answer --help, a flag mistake, and one query from start to its first hit.

The query is timed on a run folder (model and index) of the photos-small set, made in a temporary folder
with a 1-epoch model when dataset/photos-small exists (prepare_dataset.py photos-small), and on the
60,000-image Fashion-MNIST run that bench/bench_retrieval.py leaves in output/bench/fashion-mnist when it
is there; the first hit is the moment its line reaches stdout. Import times of the heavy libraries and
numpy's are shown beside them, measured in the same run.

    python bench/bench_start.py [--repeats 5]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import common

PHOTOS_SMALL = os.path.join(common.REPOSITORY_DIR, "dataset", "photos-small")
FASHION_RUN = os.path.join(common.REPOSITORY_DIR, "output", "bench", "fashion-mnist")
FASHION_QUERY_DIR = os.path.join(common.REPOSITORY_DIR, "dataset", "fashion-mnist", "test")


def seconds_to_first_line(argv, repeats):
    """Median seconds from starting a child process to the first line on its stdout (or its end)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        process = subprocess.Popen([sys.executable, *argv], cwd=common.REPOSITORY_DIR, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL)
        process.stdout.readline()
        times.append(time.perf_counter() - start)
        process.stdout.read()
        process.wait()
    return sorted(times)[len(times) // 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5, help="runs per figure; the median is reported")
    arguments = parser.parse_args()
    repeats = arguments.repeats
    common.report("python_start_s", seconds_to_first_line(["-c", "print()"], repeats), "s (bare interpreter)")
    for library in ("numpy", "cv2", "onnxruntime", "tensorflow"):
        common.report(f"import_{library}_s", seconds_to_first_line(["-c", f"import {library}; print()"], repeats), "s")
    common.report("search_help_s", seconds_to_first_line(["search.py", "--help"], repeats), "s (target < 0.5)")
    common.report("search_flag_error_s", seconds_to_first_line(["search.py", "--top-k", "0", "q.jpg"], repeats), "s")
    if os.path.isfile(os.path.join(FASHION_RUN, "features.pkl")) and os.path.isdir(FASHION_QUERY_DIR):
        folder = os.path.join(FASHION_QUERY_DIR, sorted(os.listdir(FASHION_QUERY_DIR))[0])
        query = os.path.join(folder, sorted(os.listdir(folder))[0])
        first_hit = seconds_to_first_line(["search.py", "--output", FASHION_RUN, "--no-images", query], repeats)
        common.report("search_fashion_mnist_first_hit_s", first_hit, "s (60,000 images indexed, default settings, --no-images; target <= 0.8)")
    else:
        print(f"skipping the 60,000-image query: {FASHION_RUN} has no index (python bench/bench_retrieval.py --sets fashion-mnist)",
              file=sys.stderr)
    if not os.path.isdir(PHOTOS_SMALL):
        print(f"skipping the query: {PHOTOS_SMALL} is missing (prepare_dataset.py photos-small)", file=sys.stderr)
        return
    with tempfile.TemporaryDirectory() as run:
        train_dir = os.path.join(PHOTOS_SMALL, "train")
        for script, flags in (("train.py", ["--dataset", train_dir, "--epochs", "1"]),
                              ("index_dataset.py", ["--dataset", train_dir])):
            subprocess.run([sys.executable, script, *flags, "--output", run], cwd=common.REPOSITORY_DIR, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        query = os.path.join(PHOTOS_SMALL, "test", "astronaut", "resized.jpg")
        first_hit = seconds_to_first_line(["search.py", "--output", run, "--no-images", query], repeats)
        common.report("search_one_query_first_hit_s", first_hit, "s (31 photos indexed, default settings, --no-images; target <= 0.5)")
        with_pictures = seconds_to_first_line(["search.py", "--output", run, query], repeats)
        common.report("search_one_query_with_pictures_first_hit_s", with_pictures, "s (the same, montages written)")


if __name__ == "__main__":
    main()
