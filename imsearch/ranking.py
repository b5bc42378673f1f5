"""Ranking an index against queries: exact vectorised distances, or the faiss approximate index."""

import os

import numpy as np

from imsearch import encoding

# Queries are ranked in blocks so the distance matrix stays small (block x database floats).
QUERY_BLOCK = 256
# Lists probed per query by the approximate index: recall@10 >= 0.95 at 1M rows in bench/bench_search.py.
APPROXIMATE_PROBES = 64


def postprocess_features(features, metric):
    """The one place features are transformed for ranking: L2-normalised for cosine, as-is for Euclidean."""
    features = np.asarray(features, dtype=np.float32)
    if metric == "cosine":
        norms = np.linalg.norm(features, axis=1, keepdims=True)
        return features / np.maximum(norms, 1e-12)
    return features


def squared_norms(features):
    """Row-wise squared L2 norms, (N, D) -> (N,)."""
    return np.einsum("ij,ij->i", features, features)


def squared_distances(queries, database, database_norms):
    """(Q, N) squared Euclidean distances as |q|^2 - 2 q.x + |x|^2: one matrix product, no loop over items."""
    squared = database_norms[None, :] - 2.0 * queries @ database.T
    squared += squared_norms(queries)[:, None]
    return squared


def rank(query_features, database_features, top_k, exclude=None, database_norms=None):
    """Indices and distances of the top_k nearest database rows per query, ascending, vectorised.

    query_features: (Q, D) and database_features: (N, D), already post-processed.
    exclude: optional (Q,) database row per query to leave out (the query itself), -1 for none.
    database_norms: squared_norms(database_features), when the caller keeps them between calls.
    Returns (Q, k) int64 indices and (Q, k) float32 Euclidean distances, k = min(top_k, rows available).
    """
    exclude = np.full(len(query_features), -1) if exclude is None else np.asarray(exclude)
    top_k = max(0, min(top_k, len(database_features) - int((exclude >= 0).any())))
    database_norms = squared_norms(database_features) if database_norms is None else database_norms
    all_indices = np.zeros((len(query_features), top_k), dtype=np.int64)
    all_distances = np.zeros((len(query_features), top_k), dtype=np.float32)
    for start in range(0, len(query_features) if top_k else 0, QUERY_BLOCK):
        block = query_features[start : start + QUERY_BLOCK]
        squared = squared_distances(block, database_features, database_norms)
        excluded = exclude[start : start + QUERY_BLOCK]
        squared[np.flatnonzero(excluded >= 0), excluded[excluded >= 0]] = np.inf
        nearest = np.argpartition(squared, top_k - 1, axis=1)[:, :top_k]
        nearest_squared = np.take_along_axis(squared, nearest, axis=1)
        order = nearest_squared.argsort(axis=1, kind="stable")
        all_indices[start : start + len(block)] = np.take_along_axis(nearest, order, axis=1)
        all_distances[start : start + len(block)] = np.sqrt(np.maximum(np.take_along_axis(nearest_squared, order, axis=1), 0.0))
    return all_indices, all_distances


def rows_of_queries(feature_index, query_paths):
    """For each query, its own row in the index (found by resolved path), or -1 when it is not indexed."""
    row_of_path = {path: row for row, path in enumerate(feature_index["paths"])}
    dataset_dir = os.path.realpath(feature_index.get("dataset_dir", ""))
    rows = []
    for path in query_paths:
        relative = os.path.relpath(os.path.realpath(path), dataset_dir).replace(os.sep, "/")
        rows.append(row_of_path.get(relative, -1))
    return np.array(rows, dtype=np.int64)


def search(encoder, feature_index, query_paths, top_k, metric, batch_size, approximate=None):
    """Rank the index for each readable query: (readable query paths, (Q, k) rows, (Q, k) distances).

    approximate: a faiss index from load_approximate, used for Euclidean ranking; None ranks exactly.
    """
    features, readable = encoding.encode_paths(encoder, query_paths, batch_size, description="queries")
    readable_paths = [path for path, ok in zip(query_paths, readable) if ok]
    exclude = rows_of_queries(feature_index, readable_paths)
    if approximate is not None and metric == "euclidean":
        rows, distances = search_approximate(approximate, features, top_k + 1)
        return (readable_paths, *drop_excluded(rows, distances, exclude, top_k))
    rows, distances = rank(
        postprocess_features(features, metric), postprocess_features(feature_index["features"], metric), top_k, exclude
    )
    if metric == "cosine":
        # Between unit vectors |a - b|^2 = 2 (1 - cos), so this reports the cosine distance itself.
        distances = distances**2 / 2
    return readable_paths, rows, distances


def drop_excluded(rows, distances, exclude, top_k):
    """Remove each query's own row (and faiss's -1 fillers) from (Q, k + 1) results, keeping top_k."""
    keep = (rows != exclude[:, None]) & (rows >= 0)
    count = min(top_k, int(keep.sum(axis=1).min()))
    order = np.argsort(~keep, axis=1, kind="stable")[:, :count]
    return np.take_along_axis(rows, order, axis=1), np.take_along_axis(distances, order, axis=1)


def build_approximate(features, seed=0):
    """A faiss inverted-file index (IVF-Flat, exact distances within the probed lists) over the features."""
    import faiss

    count, length = features.shape
    # About 4 sqrt(N) lists, each trained on at least 39 points as faiss asks.
    list_count = int(max(1, min(count // 39, 4 * np.sqrt(count))))
    training_rows = np.random.default_rng(seed).choice(count, size=min(count, list_count * 64), replace=False)
    approximate = faiss.IndexIVFFlat(faiss.IndexFlatL2(length), length, list_count)
    approximate.train(np.ascontiguousarray(features[training_rows]))
    approximate.add(np.ascontiguousarray(features))
    approximate.nprobe = min(list_count, APPROXIMATE_PROBES)
    return approximate


def search_approximate(approximate, query_features, top_k):
    """(Q, k) rows and Euclidean distances from the approximate index; rows are -1 where fewer were found."""
    squared, rows = approximate.search(np.ascontiguousarray(query_features, dtype=np.float32), top_k)
    return rows.astype(np.int64), np.sqrt(np.maximum(squared, 0.0))
