"""Search speed: the suite's exact ranking against the original per-item loop, the approximate index at 1M, and
what each further query costs search.py on the 60,000-image Fashion-MNIST run with and without re-ranking.

    python bench/bench_search.py [--model output/autoencoder.keras] [--run output/bench/fashion-mnist]
"""

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

import common
import config
from imsearch import encoding, index, model, ranking, vectors

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


def report_marginal(run_folder, queries, repeats=3):
    """search.py on run_folder with one query and with 1 + `queries`: the seconds each further query adds.

    Also on a copy of the index without the graph's spectrum, diffused by conjugate gradients as before.
    """
    paths = common.real_image_paths(queries + 1, FASHION_TEST_DIR)
    run_folder = os.path.abspath(run_folder)
    steps_folder = tempfile.mkdtemp()
    with_spectrum = index.load_index(os.path.join(run_folder, config.INDEX_FILE))
    index.save_index(dataclasses.replace(with_spectrum, diffusion_basis=None, diffusion_eigenvalues=None),
                     os.path.join(steps_folder, config.INDEX_FILE))
    steps_flags = ["--index", os.path.join(steps_folder, config.INDEX_FILE)]

    def seconds(count, flags):
        text = "\n".join(paths[:count]) + "\n"
        argv = [sys.executable, "search.py", "--output", run_folder, "--no-images", *flags, "-"]
        return common.median_seconds(lambda: subprocess.run(argv, cwd=common.REPOSITORY_DIR, input=text, text=True, check=True,
                                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), repeats)

    for name, flags in (("diffusion", []), ("diffusion_steps", steps_flags), ("cosine", ["--no-diffusion"])):
        one, many = seconds(1, flags), seconds(queries + 1, flags)
        common.report(f"search_60k_{name}_first_query_s", one, "s (search.py start to end, one query)")
        common.report(f"search_60k_{name}_marginal_ms", (many - one) * 1000 / queries,
                      f"ms/query (each of {queries} further queries{'; target <= 2' if not flags else ''})")
    shutil.rmtree(steps_folder)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=config.DEFAULTS.in_run_folder().model_path, help="a trained model (run demo.sh first)")
    parser.add_argument("--large", type=int, default=1_000_000, help="rows of the synthetic large index")
    parser.add_argument("--run", default=os.path.join("output", "bench", "fashion-mnist"),
                        help="a run folder indexing Fashion-MNIST's 60,000 (bench/bench_retrieval.py makes it)")
    parser.add_argument("--queries", type=int, default=500, help="further queries timed for the marginal cost")
    parser.add_argument("--marginal-only", action="store_true", help="only the marginal cost on --run")
    arguments = parser.parse_args()
    top_k, metric = 10, config.DEFAULTS.metric
    if os.path.isfile(os.path.join(arguments.run, config.INDEX_FILE)):
        report_marginal(arguments.run, arguments.queries)
    else:
        print(f"skipping the marginal cost: {arguments.run} has no index", file=sys.stderr)
    if arguments.marginal_only:
        return
    report_exact("search_60k", *real_features(arguments.model, metric), top_k)
    synthetic = synthetic_features(60_000)
    report_exact("search_60k_synthetic", synthetic, synthetic_features(1000, seed=1), top_k)
    report_approximate(arguments.large, top_k)


if __name__ == "__main__":
    main()
