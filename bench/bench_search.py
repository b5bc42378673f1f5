"""Search speed: the suite's exact ranking against the original per-item loop, and the approximate index at 1M."""

import argparse
import time

import numpy as np

import common
import config
from imsearch import encoding, model, ranking, vectors

FASHION_TEST_DIR = "dataset/fashion-mnist/test"


def per_item_loop(query, database, top_k):
    """The original design: np.linalg.norm for every item in a Python loop, then sorted."""
    distances = [(np.linalg.norm(query - item), row) for row, item in enumerate(database)]
    return sorted(distances)[:top_k]


def synthetic_features(count, length=192, seed=0):
    """Encoder-like features: a 16-dimensional Gaussian mixture mapped to `length` dims, ReLU, noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, 16)) * 3
    latent = centres[rng.integers(0, 50, count)] + rng.normal(size=(count, 16))
    projection = rng.normal(size=(16, length)) / 4
    return np.maximum(latent @ projection + rng.normal(scale=0.05, size=(count, length)), 0).astype(np.float32)


def real_features(model_path, metric):
    """The encoder's features of Fashion-MNIST's 60,000 training images and 1,000 test queries, post-processed."""
    encoder = model.encoder_of(model.load_autoencoder(model_path))
    batch_size = config.DEFAULTS.encode_batch_size
    database, _ = encoding.encode_paths(encoder, common.real_image_paths(60000), batch_size)
    queries, _ = encoding.encode_paths(encoder, common.real_image_paths(1000, FASHION_TEST_DIR), batch_size)
    return vectors.postprocess_features(database, metric), vectors.postprocess_features(queries, metric)


def exact_ms(queries, database, top_k, batched):
    """Median ms per query of the suite's exact ranking, all queries in one call or one per call."""
    norms = vectors.squared_norms(database)
    if batched:
        seconds = common.median_seconds(lambda: ranking.rank(queries, database, top_k, database_norms=norms), 3)
    else:
        seconds = common.median_seconds(
            lambda: [ranking.rank(query[None], database, top_k, database_norms=norms) for query in queries], 3)
    return seconds * 1000 / len(queries)


def report_exact(name, database, queries, top_k):
    """Exact search against the per-item loop on one database: batched, and one query per call."""
    loop_ms = common.median_seconds(lambda: [per_item_loop(query, database, top_k) for query in queries[:5]], 3) * 1000 / 5
    single_ms = exact_ms(queries[:300], database, top_k, False)
    batched_ms = exact_ms(queries, database, top_k, True)
    common.report(f"{name}_per_item_loop_ms", loop_ms, "ms/query")
    common.report(f"{name}_exact_single_ms", single_ms, "ms/query (one product with every row)")
    common.report(f"{name}_exact_batched_ms", batched_ms, "ms/query")
    common.report(f"{name}_speedup_single_over_loop", loop_ms / single_ms, "x (target >= 200)")
    common.report(f"{name}_speedup_batched_over_loop", loop_ms / batched_ms, "x")


def report_approximate(count, top_k):
    """The faiss IVF index against exact search on `count` synthetic rows: build time, ms per query, recall@10."""
    large = synthetic_features(count, seed=2)
    large_queries = synthetic_features(1000, seed=3)
    exact_rows, _ = ranking.rank(large_queries, large, top_k)
    exact_large_ms = exact_ms(large_queries[:200], large, top_k, True)
    start = time.perf_counter()
    approximate = ranking.build_approximate(large)
    build_seconds = time.perf_counter() - start
    ranking.search_approximate(approximate, large_queries[:1], top_k)
    seconds = common.median_seconds(lambda: [ranking.search_approximate(approximate, query[None], top_k) for query in large_queries], 3)
    approximate_rows, _ = ranking.search_approximate(approximate, large_queries, top_k)
    recall = np.mean([len(set(a) & set(e)) / top_k for a, e in zip(approximate_rows, exact_rows)])
    common.report(f"search_{count}_exact_batched_ms", exact_large_ms, "ms/query")
    common.report(f"search_{count}_approximate_build_s", build_seconds, "s")
    common.report(f"search_{count}_approximate_single_ms", seconds * 1000 / len(large_queries), "ms/query (target <= 2)")
    common.report(f"search_{count}_approximate_recall_at_10", recall, "(target >= 0.95)")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=config.DEFAULTS.in_run_folder().model_path, help="a trained model (run demo.sh first)")
    parser.add_argument("--large", type=int, default=1_000_000, help="rows of the synthetic large index")
    arguments = parser.parse_args()
    top_k, metric = 10, config.DEFAULTS.metric
    report_exact("search_60k", *real_features(arguments.model, metric), top_k)
    synthetic = synthetic_features(60_000)
    report_exact("search_60k_synthetic", synthetic, synthetic_features(1000, seed=1), top_k)
    report_approximate(arguments.large, top_k)


if __name__ == "__main__":
    main()
