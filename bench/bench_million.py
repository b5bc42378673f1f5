"""A million images: build time, peak memory, size on disk, and search with re-ranking, exact and approximate.

Synthetic features stand in for encoded images (encoding a million photos is not what is measured): a
Gaussian mixture mapped to the default gray feature length (192 encoder + 1,620 histogram numbers). The
index is built as index_dataset.py builds one above --approximate-above: projected to the compact form,
an IVF approximate index, the neighbour graph found with it, saved. Then queries drawn from the same
mixture are ranked four ways: exact cosine, approximate (IVF), exact with diffusion over the whole graph,
and approximate with diffusion over each query's candidates; recall@10 is against the exact ranking of the
same kind. Graph recall is against the exact graph.GRAPH_NEIGHBOURS nearest of sampled rows. Prints figures on stdout.

With --real, the same comparison on real features instead: the Fashion-MNIST index bench_retrieval.py
made (output/bench/fashion-mnist, 60,000 images, compact) and 2,000 of its test images as queries, for
the quality of the approximate graph and of diffusion over the candidates (P@10, against the exact path).

    python bench/bench_million.py [--count 1000000] [--queries 256] [--real]
"""

import argparse
import os
import tempfile
import time

import numpy as np

import common
import config
from imsearch import descriptors, graph, index, indexing, ranking, vectors

RAW_LENGTH = 192 + descriptors.HISTOGRAM_LENGTH


def synthetic_features(count, seed, clusters=2000, block=100_000):
    """(count, RAW_LENGTH) float32 features of a clustered collection: many small classes in 32 latent dims."""
    rng = np.random.default_rng(0)  # The mixture is the same for the database and the queries.
    centres = rng.normal(size=(clusters, 32)) * 2.5
    mapping = (rng.normal(size=(32, RAW_LENGTH)) / 6).astype(np.float32)
    draws = np.random.default_rng(seed)
    features = np.empty((count, RAW_LENGTH), dtype=np.float32)
    for start in range(0, count, block):
        size = min(block, count - start)
        latent = (centres[draws.integers(0, clusters, size)] + draws.normal(size=(size, 32))).astype(np.float32)
        features[start : start + size] = np.maximum(latent @ mapping + draws.normal(scale=0.05, size=(size, RAW_LENGTH)).astype(np.float32), 0)
    return features


def timed(label, function):
    """function()'s result, its wall time reported."""
    start = time.perf_counter()
    result = function()
    common.report(f"{label}_s", time.perf_counter() - start, "s")
    return result


def recall(found, expected):
    """Mean share of each expected row list found in the other, ignoring -1 fillers."""
    return float(np.mean([len(set(a[a >= 0]) & set(b[b >= 0])) / max(1, (b >= 0).sum()) for a, b in zip(found, expected)]))


def real_quality(query_count):
    """Graph recall and P@10 of the approximate path against the exact one on the real Fashion-MNIST index."""
    from imsearch import encoding, image_folders, runtime

    output_dir = os.path.join(common.REPOSITORY_DIR, "output", "bench", "fashion-mnist")
    encoder = runtime.open_encoder(os.path.join(output_dir, "autoencoder.keras"))
    feature_index = index.load_index(os.path.join(output_dir, "features.pkl"), encoder)
    test_dir = os.path.join(common.REPOSITORY_DIR, "dataset", "fashion-mnist", "test")
    relative_paths, labels = image_folders.list_images(test_dir)
    chosen = np.sort(np.random.default_rng(0).choice(len(relative_paths), query_count, replace=False))
    paths = image_folders.full_paths(test_dir, [relative_paths[i] for i in chosen])
    queries, mirrored, _ = encoding.encode_queries(encoder, paths, config.DEFAULTS.encode_batch_size,
                                                   feature_index.histograms)
    queries, mirrored = (vectors.postprocess_features(feature_index.as_stored(rows), "cosine") for rows in (queries, mirrored))
    query_labels = np.array([labels[i] for i in chosen])
    database_labels = np.array(feature_index.labels)
    database = vectors.postprocess_features(feature_index.features, "cosine")
    approximate = ranking.build_approximate(database)
    rows, similarities = timed("real_build_graph_approximately", lambda: ranking.approximate_neighbour_graph(approximate, database, graph.GRAPH_NEIGHBOURS))
    common.report("real_graph_recall", recall(rows, feature_index.neighbours), f"of the exact {graph.GRAPH_NEIGHBOURS} nearest (all 60,000 rows)")
    none = np.full(len(queries), -1)
    exact_graph = feature_index.diffusion_graph()
    exact_rows, _ = graph.rank_by_diffusion(queries, database, exact_graph, 10, none, mirrored)
    candidates, _ = ranking.nearer_of_mirrors(*ranking.search_approximate(approximate, np.concatenate([queries, mirrored]),
                                                                          ranking.DIFFUSION_CANDIDATES + 1), ranking.DIFFUSION_CANDIDATES + 1)
    local_rows, _ = graph.rank_by_local_diffusion(queries, mirrored, database, graph.diffusion_graph_of(rows, similarities),
                                                  candidates, 10, none)
    precision = lambda found: float((database_labels[found] == query_labels[:, None]).mean())  # noqa: E731
    common.report("real_exact_diffusion_p_at_10", precision(exact_rows), "exact graph, whole-graph diffusion")
    common.report("real_approximate_diffusion_p_at_10", precision(local_rows), "approximate graph, diffusion over 1,000 candidates")
    common.report("real_approximate_diffusion_recall_at_10", recall(local_rows, exact_rows), "vs the exact path")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=256)
    parser.add_argument("--real", action="store_true", help="measure quality on the real Fashion-MNIST index instead")
    arguments = parser.parse_args()
    if arguments.real:
        return real_quality(2000)
    defaults = config.DEFAULTS
    count = arguments.count

    raw = timed("make_synthetic_features", lambda: synthetic_features(count, seed=1))
    start = time.perf_counter()
    feature_index = index.FeatureIndex(
        dataset_dir="/synthetic", paths=[f"{row:07d}.png" for row in range(count)], labels=None,
        stamps=np.zeros((count, 2), np.int64), features=raw, model_sha256="synthetic", image_size=28, channels=1, histograms=True)
    del raw
    feature_index = timed("build_compact_projection", lambda: indexing.compacted(feature_index, defaults.compact_above, defaults.compact_length))
    approximate = timed("build_approximate_index", lambda: indexing.approximate_index_for(feature_index, "always"))
    feature_index, _ = timed("build_graph_approximately", lambda: indexing.with_neighbour_graph(feature_index, None, approximate))
    with tempfile.TemporaryDirectory(dir=os.path.join(common.REPOSITORY_DIR, "output")) as folder:
        index_path = os.path.join(folder, "features.pkl")
        feature_index = timed("save", lambda: index.save_index(feature_index, index_path, approximate))
        common.report("build_total_s", time.perf_counter() - start, "s (features given)")
        common.report("build_peak_memory", common.peak_rss_mib() / 1024, "GiB (peak RSS, synthetic features included)")
        pickle_bytes, ivf_bytes = os.path.getsize(index_path), os.path.getsize(index.approximate_path_for(index_path))
    common.report("disk_index", pickle_bytes / 2**20, f"MiB ({pickle_bytes / count:.0f} B/image: features, graph, paths)")
    common.report("disk_approximate_index", ivf_bytes / 2**20, "MiB")

    database = vectors.postprocess_features(feature_index.features, "cosine", in_place=True)
    sample = np.random.default_rng(2).choice(count, 1000, replace=False)
    exact_graph = np.argsort(-(database[sample] @ database.T), axis=1)[:, 1 : graph.GRAPH_NEIGHBOURS + 1]
    common.report("graph_recall", recall(feature_index.neighbours[sample], exact_graph), f"of the exact {graph.GRAPH_NEIGHBOURS} nearest (1,000 rows)")

    queries = vectors.postprocess_features(feature_index.as_stored(synthetic_features(arguments.queries, seed=3)), "cosine")
    none = np.full(len(queries), -1)
    top_k = 10
    exact_rows, _ = ranking.rank(queries, database, top_k)
    seconds = common.median_seconds(lambda: ranking.rank(queries, database, top_k), 3)
    common.report("exact_ms", seconds * 1000 / len(queries), "ms/query (cosine, batched)")
    approximate_rows, _ = ranking.search_approximate(approximate, queries, top_k)
    seconds = common.median_seconds(lambda: [ranking.search_approximate(approximate, query[None], top_k) for query in queries], 3)
    common.report("approximate_ms", seconds * 1000 / len(queries), "ms/query (IVF, one query per call)")
    common.report("approximate_recall_at_10", recall(approximate_rows, exact_rows), "vs exact cosine")

    diffusion_graph = timed("load_diffusion_graph", lambda: feature_index.diffusion_graph())
    start = time.perf_counter()
    whole_rows, _ = graph.rank_by_diffusion(queries, database, diffusion_graph, top_k, none, queries)
    common.report("exact_diffusion_ms", (time.perf_counter() - start) * 1000 / len(queries), "ms/query (whole graph, batched)")

    def local():
        # As search.py does it: candidates for each query and its mirror image (here the query itself), merged.
        count = ranking.DIFFUSION_CANDIDATES + 1
        both = np.concatenate([queries, queries])
        candidates, _ = ranking.nearer_of_mirrors(*ranking.search_approximate(approximate, both, count), count)
        return graph.rank_by_local_diffusion(queries, queries, database, diffusion_graph, candidates, top_k, none)

    start = time.perf_counter()
    local_rows, _ = local()
    common.report("approximate_diffusion_ms", (time.perf_counter() - start) * 1000 / len(queries),
                  f"ms/query ({ranking.DIFFUSION_CANDIDATES} IVF candidates each)")
    common.report("approximate_diffusion_recall_at_10", recall(local_rows, whole_rows), "vs exact diffusion over the whole graph")
    common.report("peak_memory", common.peak_rss_mib() / 1024, "GiB (peak RSS of the whole run)")


if __name__ == "__main__":
    main()
