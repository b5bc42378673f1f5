"""The Fashion-MNIST retrieval protocol end to end: prepare, train on train, index train, score test queries.

Database = the 60,000 train images, queries = the 10,000 test images, relevant = same class. Prints the
metrics of the suite's search beside raw-pixel baselines, the time of each step, and then what each part
of the default search adds: the encoder's features alone (cosine), with diffusion, and with the
gradient histograms but no diffusion. Extra arguments go to train.py (for example --epochs 5); with none, the
defaults run (60 epochs: about an hour on 2 cores).
"""

import json
import os
import subprocess
import sys
import time

REPOSITORY_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTPUT_DIR = os.path.join(REPOSITORY_DIR, "output", "retrieval")
QUERIES_DIR = os.path.join(REPOSITORY_DIR, "dataset", "fashion-mnist", "test")
sys.path.insert(0, REPOSITORY_DIR)


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
                      "--queries", QUERIES_DIR])
    with open(os.path.join(OUTPUT_DIR, "metrics.json")) as file:
        results = json.load(file)
    for method in ("autoencoder", "pixels_euclidean", "pixels_cosine"):
        figures = results[method]
        print(f"{method}\tmAP {figures['map']:.4f}\tP@10 {figures['precision_at_10']:.4f}\t"
              f"mAP@100 {figures['map_at_100']:.4f}\tP@100 {figures['precision_at_100']:.4f}\tkNN {figures['knn_accuracy']:.4f}")
    reached = results["autoencoder"]["map"] >= 0.60 and results["autoencoder"]["precision_at_10"] >= 0.86
    print(f"target mAP >= 0.60 and P@10 >= 0.86: {'reached' if reached else 'not reached'}", flush=True)
    print_ablation(model_path, index_path)


def print_ablation(model_path, index_path):
    """Metrics of the default search with its parts taken away, on the same queries and index."""
    import config
    from imsearch import data, encoding, graph, index, metrics, model, ranking

    autoencoder = model.load_autoencoder(model_path)
    feature_index = index.load_index(index_path, autoencoder)
    relative_paths, query_labels = data.list_images(QUERIES_DIR)
    query_features, _ = encoding.encode_paths(model.encoder_of(autoencoder), [os.path.join(QUERIES_DIR, path) for path in relative_paths],
                                              config.DEFAULTS.encode_batch_size, histograms=feature_index["histograms"])
    database_labels = feature_index["labels"]
    # The encoder's features are the first columns of the index (the histograms follow them).
    length = model.encoder_of(autoencoder).output_shape[-1]
    exclude = ranking.rows_of_queries(feature_index, [os.path.join(QUERIES_DIR, path) for path in relative_paths])
    # They are stored at unit length, so Euclidean and cosine rank them alike: only cosine is shown.
    variants = [("encoder, cosine", "cosine", slice(0, length), False),
                ("encoder, cosine, diffusion", "cosine", slice(0, length), True),
                ("encoder + histograms, cosine (the default without diffusion)", "cosine", slice(None), False)]
    for name, metric, columns, diffusion in variants:
        start = time.perf_counter()
        part = feature_index | {"features": feature_index["features"][:, columns]}
        if diffusion:
            index.add_neighbour_graph(part)
        diffusion_graph = graph.diffusion_graph_of(part) if diffusion else None
        figures = metrics.retrieval_metrics(ranking.postprocess_features(query_features[:, columns], metric), query_labels,
                                            ranking.postprocess_features(part["features"], metric), database_labels,
                                            exclude, diffusion_graph=diffusion_graph)
        print(f"{name}\tmAP {figures['map']:.4f}\tP@10 {figures['precision_at_10']:.4f}\t"
              f"kNN {figures['knn_accuracy']:.4f}\tseconds {time.perf_counter() - start:.0f}", flush=True)


if __name__ == "__main__":
    main()
