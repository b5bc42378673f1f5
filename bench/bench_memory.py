"""Peak memory (RSS) of index_dataset.py and search.py at 10,000 and 100,000 real images.

Both run with the default features (the encoder's plus gradient histograms) and without the diffusion
graph, a separate O(N^2) stage that would take minutes at 100,000 images.
"""

import argparse
import os
import subprocess
import sys
import tempfile

import common
import config
from imsearch import encoding, model

REPOSITORY_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def peak_rss_mib(argv):
    """Run a command as a child process and return its peak resident memory in MiB."""
    process = subprocess.Popen(argv, cwd=REPOSITORY_DIR, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed")
    return usage.ru_maxrss / 1024


def link_folder(folder, count):
    """count links to real Fashion-MNIST images (repeating them past 60,000) in folder."""
    paths = common.real_image_paths(60000)
    os.makedirs(folder)
    for number in range(count):
        os.symlink(os.path.abspath(paths[number % len(paths)]), os.path.join(folder, f"{number:07d}.png"))
    return folder


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=config.DEFAULTS.in_run_folder().model_path, help="a trained model (run demo.sh first)")
    arguments = parser.parse_args()
    figures = {}
    with tempfile.TemporaryDirectory() as work_dir:
        for count in (10_000, 100_000):
            folder = link_folder(os.path.join(work_dir, str(count)), count)
            index_path = os.path.join(work_dir, f"{count}.pkl")
            figures[("index", count)] = peak_rss_mib([sys.executable, "index_dataset.py", "--dataset", folder, "--no-diffusion",
                                                      "--model", arguments.model, "--index", index_path])
            figures[("search", count)] = peak_rss_mib([sys.executable, "search.py", "--model", arguments.model, "--no-diffusion",
                                                       "--index", index_path, "--no-images", os.path.join(folder, "0000000.png")])
    encoder = model.encoder_of(model.load_autoencoder(arguments.model))
    feature_mib = {count: count * encoding.feature_length(encoder, True) * 4 / 2**20 for count in (10_000, 100_000)}
    for (script, count), value in sorted(figures.items()):
        common.report(f"{script}_peak_rss_{count}", value, "MiB")
    for script in ("index", "search"):
        ratio = (figures[(script, 100_000)] - feature_mib[100_000]) / (figures[(script, 10_000)] - feature_mib[10_000])
        common.report(f"{script}_rss_100k_over_10k_features_aside", ratio, "ratio (target for index <= 1.3)")


if __name__ == "__main__":
    main()
