"""The neighbour graph for diffusion: the suite's symmetric blocked k-NN against faiss's exact inner-product search.

Both find each image's graph.GRAPH_NEIGHBOURS most similar others by cosine on the default features (encoder + gradient
histograms) of real Fashion-MNIST images; prints build seconds for each, their ratio, and how many
neighbour lists agree (ties aside they are the same exact graph).

    python bench/bench_graph.py [--model output/autoencoder.keras] [--count 60000]
"""

import argparse
import time

import numpy as np

import common
import config
from imsearch import encoding, graph, model, vectors


def faiss_graph(features, neighbours):
    """Each row's nearest other rows by inner product with faiss's exact flat index: (N, K) rows and similarities."""
    import faiss

    index = faiss.IndexFlatIP(features.shape[1])
    index.add(features)
    similarities, rows = index.search(features, neighbours + 1)
    # Each row finds itself first (ties aside); drop it, keeping K others.
    own = rows == np.arange(len(rows))[:, None]
    own[own.sum(axis=1) == 0, -1] = True
    keep = ~own
    return rows[keep].reshape(len(rows), neighbours), similarities[keep].reshape(len(rows), neighbours)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=config.DEFAULTS.in_run_folder().model_path, help="a trained model (run demo.sh first)")
    parser.add_argument("--count", type=int, default=60000, help="images in the graph")
    arguments = parser.parse_args()
    encoder = model.encoder_of(model.load_autoencoder(arguments.model))
    features, _ = encoding.encode_paths(encoder, common.real_image_paths(arguments.count), config.DEFAULTS.encode_batch_size,
                                        histograms=True)
    features = vectors.postprocess_features(features, "cosine")
    start = time.perf_counter()
    suite_rows, _ = graph.neighbour_graph(features)
    suite_seconds = time.perf_counter() - start
    start = time.perf_counter()
    faiss_rows, _ = faiss_graph(features, suite_rows.shape[1])
    faiss_seconds = time.perf_counter() - start
    same = np.mean([set(a) == set(b) for a, b in zip(suite_rows.tolist(), faiss_rows.tolist())])
    common.report(f"graph_{len(features)}_suite_s", suite_seconds, f"s ({features.shape[1]} features, {graph.GRAPH_NEIGHBOURS} neighbours)")
    common.report(f"graph_{len(features)}_faiss_flat_ip_s", faiss_seconds, "s")
    common.report("faiss_over_suite", faiss_seconds / suite_seconds, "x (time ratio)")
    common.report("same_neighbour_lists", same, "share of rows")


if __name__ == "__main__":
    main()
