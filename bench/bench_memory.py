"""Peak memory (RSS) of index_dataset.py and search.py at 10,000 and 100,000 real images, and of search.py for
1,000 and 10,000 queries read from stdin, with the time to its first hit line.

Both run with the default features (the encoder's plus gradient histograms) and without the diffusion
graph, a separate O(N^2) stage that would take minutes at 100,000 images. search.py ranks its queries a
batch at a time (--encode-batch-size), so its memory should not grow with the number of queries.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

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


def search_from_stdin(argv, query_paths):
    """Feed query paths to search.py on stdin: (seconds to its first hit line, peak RSS in MiB)."""
    with tempfile.TemporaryFile() as paths_file:
        paths_file.write("".join(path + "\n" for path in query_paths).encode())
        paths_file.seek(0)
        start = time.perf_counter()
        process = subprocess.Popen(argv, cwd=REPOSITORY_DIR, stdin=paths_file, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        process.stdout.readline()
        first_line_seconds = time.perf_counter() - start
        for _ in process.stdout:  # The rest, read as it comes so search.py never waits on a full pipe.
            pass
        _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed")
    return first_line_seconds, usage.ru_maxrss / 1024


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
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000],
                        help="index sizes; the first also serves the 1,000 and 10,000 queries (so at least 10,000)")
    arguments = parser.parse_args()
    figures = {}
    with tempfile.TemporaryDirectory() as work_dir:
        for count in arguments.sizes:
            folder = link_folder(os.path.join(work_dir, str(count)), count)
            index_path = os.path.join(work_dir, f"{count}.pkl")
            figures[("index", count)] = peak_rss_mib([sys.executable, "index_dataset.py", "--dataset", folder, "--no-diffusion",
                                                      "--model", arguments.model, "--index", index_path])
            figures[("search", count)] = peak_rss_mib([sys.executable, "search.py", "--model", arguments.model, "--no-diffusion",
                                                       "--index", index_path, "--no-images", os.path.join(folder, "0000000.png")])
        index_path = os.path.join(work_dir, f"{arguments.sizes[0]}.pkl")
        query_dir = os.path.join(work_dir, str(arguments.sizes[0]))
        queries = sorted(os.path.join(query_dir, name) for name in os.listdir(query_dir))
        for count in (1_000, 10_000):
            first_line, figures[("search_queries", count)] = search_from_stdin(
                [sys.executable, "search.py", "--model", arguments.model, "--no-diffusion", "--index", index_path,
                 "--no-images", "-"], queries[:count])
            common.report(f"search_first_hit_{count}_queries", first_line, "s")
    encoder = model.encoder_of(model.load_autoencoder(arguments.model))
    feature_mib = {count: count * encoding.feature_length(encoder, True) * 4 / 2**20 for count in arguments.sizes}
    common.report("search_rss_10k_over_1k_queries", figures[("search_queries", 10_000)] / figures[("search_queries", 1_000)],
                  "ratio (target <= 1.2)")
    for (script, count), value in sorted(figures.items()):
        common.report(f"{script}_peak_rss_{count}", value, "MiB")
    for script in ("index", "search") if len(arguments.sizes) > 1 else ():
        ratio = (figures[(script, arguments.sizes[-1])] - feature_mib[arguments.sizes[-1]]) / (
            figures[(script, arguments.sizes[0])] - feature_mib[arguments.sizes[0]])
        common.report(f"{script}_rss_100k_over_10k_features_aside", ratio, "ratio (target for index <= 1.3)")


if __name__ == "__main__":
    main()
