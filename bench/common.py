"""Helpers shared by the benchmarks: real image paths, timing, memory."""

import os
import resource
import statistics
import subprocess
import sys
import time

from imsearch import image_folders

REPOSITORY_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The benchmarks time the scripts themselves (index_dataset.main), which live at the repository root.
sys.path.insert(0, REPOSITORY_DIR)

FASHION_TRAIN_DIR = "dataset/fashion-mnist/train"


def real_image_paths(count, dataset_dir=FASHION_TRAIN_DIR):
    """The first count images of a real folder, spread over its classes; run prepare_dataset.py first."""
    relative_paths, _ = image_folders.list_images(dataset_dir)
    step = max(1, len(relative_paths) // count)
    return [os.path.join(dataset_dir, path) for path in relative_paths[::step][:count]]


def median_seconds(function, repeats):
    """Median wall time of function() over repeats calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_rss_mib():
    """Peak resident memory of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def report(name, value, unit):
    """One figure on stdout, tab-separated."""
    print(f"{name}\t{value:.4g}\t{unit}", flush=True)


def run_script(argv, stdout=None):
    """Run one of the suite's scripts to completion, its output on stdout (stderr by default); return its wall time."""
    start = time.perf_counter()
    subprocess.run([sys.executable, *argv], cwd=REPOSITORY_DIR, check=True, stdout=stdout or sys.stderr)
    return time.perf_counter() - start
