"""The encoder alone under each training objective: train.py per set and setting, then cosine retrieval of its features.

For each set (scikit-learn's digits, the photos near-duplicate set, and a Fashion-MNIST proxy: the first
--fashion-images of its train split spread over the classes, its test images as queries) and each named
setting (train.py flags), a model is trained with train.py unless output/objectives/<set>/<setting>/ holds
one. The encoder's features alone (no histograms, no re-ranking) rank the train split for each test image
as search.py ranks: cosine, each row by the nearer of the query and its mirror image. Prints one markdown
row per (set, setting) on stdout, with the training time.

    python bench/bench_objectives.py --settings reconstruction views nt-xent --sets digits photos [--epochs 60]
"""

import argparse
import os
import sys
import time

import numpy as np

from common import REPOSITORY_DIR, run_script

DATASET_ROOT = os.path.join(REPOSITORY_DIR, "dataset")
OUTPUT_ROOT = os.path.join(REPOSITORY_DIR, "output", "objectives")
# The settings measured before histogram prediction became the default keep it off, so they still mean what they
# meant. A flag given twice takes its last value, so each setting states only what it changes.
VIEWS = ["--objective", "views", "--histogram-prediction-weight", "0"]
VICREG = [*VIEWS, "--invariance", "vicreg", "--invariance-weight", "0.01"]
NT_XENT = [*VIEWS, "--invariance", "nt-xent"]
SETTINGS = {
    "reconstruction": ["--objective", "reconstruction"],
    "views": [*VIEWS, "--invariance", "none"],
    "nt-xent": NT_XENT,
    "nt-xent-1": [*NT_XENT, "--invariance-weight", "1"],
    "vicreg": VICREG,
    "vicreg-0.1": [*VICREG, "--invariance-weight", "0.1"],
    "vicreg-crop-0.8": [*VICREG, "--view-crop-area", "0.8"],
    "vicreg-deeper": [*VICREG, "--filters", "32", "64", "128"],
    "nt-xent-batch-128": [*NT_XENT, "--batch-size", "128"],
    "vicreg-batch-128": [*VICREG, "--batch-size", "128"],
    "vicreg-batch-128-lr-3e-3": [*VICREG, "--batch-size", "128", "--learning-rate", "3e-3"],
    "vicreg-2-per-stage": [*VICREG, "--convolutions-per-stage", "2"],
    "vicreg-3-per-stage": [*VICREG, "--convolutions-per-stage", "3"],
    "vicreg-0.03": [*VICREG, "--invariance-weight", "0.03"],
    "vicreg-latent-384": [*VICREG, "--latent-dim", "384"],
    "histograms-1": [*VICREG, "--histogram-prediction-weight", "1"],
    "histograms-3": [*VICREG, "--histogram-prediction-weight", "3"],
    "histograms-10": [*VICREG, "--histogram-prediction-weight", "10"],
}
SETS = ("digits", "photos", "fashion-mnist")


def fashion_subset(count):
    """A folder of links to count Fashion-MNIST training images spread over the classes (made once)."""
    from imsearch import image_folders

    source_dir = os.path.join(DATASET_ROOT, "fashion-mnist", "train")
    subset_dir = os.path.join(DATASET_ROOT, f"fashion-mnist-{count}", "train")
    if not os.path.isdir(subset_dir):
        relative_paths, _ = image_folders.list_images(source_dir)
        chosen = np.random.default_rng(0).choice(len(relative_paths), count, replace=False)
        for row in np.sort(chosen):
            target = os.path.join(subset_dir, relative_paths[row])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.symlink(os.path.join(source_dir, relative_paths[row]), target)
    return subset_dir, os.path.join(DATASET_ROOT, "fashion-mnist", "test")


def folders(name, fashion_images):
    """(train, test) folders of a set, prepared where missing."""
    if name == "fashion-mnist":
        if not os.path.isdir(os.path.join(DATASET_ROOT, name)):
            run_script(["prepare_dataset.py", name, "--dataset-root", DATASET_ROOT])
        return fashion_subset(fashion_images)
    if not os.path.isdir(os.path.join(DATASET_ROOT, name)):
        run_script(["prepare_dataset.py", name, "--dataset-root", DATASET_ROOT])
    return os.path.join(DATASET_ROOT, name, "train"), os.path.join(DATASET_ROOT, name, "test")


def encoder_scores(model_path, train_dir, test_dir, max_queries):
    """retrieval_metrics of the encoder's features alone, cosine with the query's mirror image, as search ranks."""
    import config
    from imsearch import encoding, image_folders, metrics, model, vectors

    encoder = model.encoder_of(model.load_autoencoder(model_path))
    database_paths, database_labels = image_folders.list_images(train_dir)
    query_paths, query_labels = image_folders.list_images(test_dir)
    if max_queries and len(query_paths) > max_queries:
        chosen = np.sort(np.random.default_rng(0).choice(len(query_paths), max_queries, replace=False))
        query_paths, query_labels = [query_paths[i] for i in chosen], [query_labels[i] for i in chosen]
    batch_size = config.DEFAULTS.encode_batch_size
    database, _ = encoding.encode_paths(encoder, image_folders.full_paths(train_dir, database_paths), batch_size)
    queries, mirrored, _ = encoding.encode_queries(encoder, image_folders.full_paths(test_dir, query_paths), batch_size)
    unit = lambda rows: vectors.postprocess_features(rows, "cosine")  # noqa: E731
    return metrics.retrieval_metrics(unit(queries), query_labels, unit(database), database_labels, mirrored_features=unit(mirrored))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--fashion-images", type=int, default=10_000, help="Fashion-MNIST training images of the proxy")
    parser.add_argument("--max-queries", type=int, default=2000)
    arguments = parser.parse_args()
    print("| set | setting | epochs | mAP | P@10 | R@1 | training s |")
    print("| --- | --- | --- | --- | --- | --- | --- |", flush=True)
    for name in arguments.sets:
        train_dir, test_dir = folders(name, arguments.fashion_images)
        for setting in arguments.settings:
            output_dir = os.path.join(OUTPUT_ROOT, f"{name}-{arguments.epochs}", setting)
            model_path = os.path.join(output_dir, "autoencoder.keras")
            seconds = float("nan")
            if not os.path.isfile(model_path):
                seconds = run_script(["train.py", "--dataset", train_dir, "--output", output_dir, "--epochs", str(arguments.epochs),
                                      *SETTINGS[setting]])
            start = time.perf_counter()
            scores = encoder_scores(model_path, train_dir, test_dir, arguments.max_queries)
            print(f"{name}: {setting} scored in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
            print(f"| {name} | {setting} | {arguments.epochs} | {scores['map']:.4f} | {scores['precision_at_10']:.4f} | "
                  f"{scores['precision_at_1']:.4f} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
