"""The Fashion-MNIST retrieval protocol end to end: prepare, train on train, index train, score test queries.

Database = the 60,000 train images, queries = the 10,000 test images, relevant = same class. Prints the
metrics of the suite's features beside raw-pixel baselines, and the time of each step. Extra arguments
go to train.py (for example --epochs 5); with none, the defaults run (60 epochs: about an hour on 2 cores).
"""

import json
import os
import subprocess
import sys
import time

REPOSITORY_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTPUT_DIR = os.path.join(REPOSITORY_DIR, "output", "retrieval")


def step(name, argv):
    """Run one script to completion, its logs on stderr; return its wall time."""
    start = time.perf_counter()
    subprocess.run([sys.executable, *argv], cwd=REPOSITORY_DIR, check=True, stdout=sys.stderr)
    seconds = time.perf_counter() - start
    print(f"{name}_seconds\t{seconds:.1f}", flush=True)
    return seconds


def main():
    model_path = os.path.join(OUTPUT_DIR, "autoencoder.keras")
    index_path = os.path.join(OUTPUT_DIR, "features.pkl")
    step("prepare", ["prepare_dataset.py", "fashion-mnist"])
    step("train", ["train.py", "--output", OUTPUT_DIR, *sys.argv[1:]])
    step("index", ["index_dataset.py", "--model", model_path, "--index", index_path])
    step("evaluate", ["evaluate.py", "--model", model_path, "--index", index_path, "--output", OUTPUT_DIR,
                      "--queries", "dataset/fashion-mnist/test"])
    with open(os.path.join(OUTPUT_DIR, "metrics.json")) as file:
        results = json.load(file)
    for method in ("autoencoder", "pixels_euclidean", "pixels_cosine"):
        figures = results[method]
        print(f"{method}\tmAP {figures['map']:.4f}\tP@10 {figures['precision_at_10']:.4f}\t"
              f"mAP@100 {figures['map_at_100']:.4f}\tP@100 {figures['precision_at_100']:.4f}\tkNN {figures['knn_accuracy']:.4f}")
    reached = results["autoencoder"]["map"] >= 0.60 and results["autoencoder"]["precision_at_10"] >= 0.86
    print(f"target mAP >= 0.60 and P@10 >= 0.86: {'reached' if reached else 'not reached'}")


if __name__ == "__main__":
    main()
