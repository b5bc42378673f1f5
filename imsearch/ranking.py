"""Ranking an index against queries: exact vectorised distances, the faiss approximate index, or diffusion."""

import contextlib
import itertools
import os

import numpy as np

from imsearch import console, encoding, graph, image_folders, vectors

# Queries are ranked in blocks so the distance matrix stays small (block x database floats).
QUERY_BLOCK = 256
# Lists probed per query by the approximate index: recall@10 >= 0.95 at 1M rows in bench/bench_search.py.
APPROXIMATE_PROBES = 64
# Lists probed for each row when the neighbour graph is found with the approximate index: fewer than a query
# gets, since a row's nearest rows lie in the lists nearest to it (graph recall in docs/performance.md).
GRAPH_PROBES = 16
# Rows the approximate index hands to diffusion per query: the diffusion runs on the graph among them only.
DIFFUSION_CANDIDATES = 1000
# Rows of the whole index looked up at a time when the graph is found with the approximate index.
GRAPH_SEARCH_BLOCK = 16384


def rank(query_features, database_features, top_k, exclude=None, database_norms=None):
    """Indices and distances of the top_k nearest database rows per query, ascending, vectorised.

    query_features: (Q, D) and database_features: (N, D), already post-processed.
    exclude: optional (Q,) database row per query to leave out (the query itself), -1 for none.
    database_norms: vectors.squared_norms(database_features), when the caller keeps them between calls.
    Returns (Q, k) int64 indices and (Q, k) float32 Euclidean distances, k = min(top_k, N); a query whose
    own row is left out and that has fewer than k others gets row -1 at infinite distance in the last place.
    """
    exclude = np.full(len(query_features), -1) if exclude is None else np.asarray(exclude)
    top_k = max(0, min(top_k, len(database_features)))
    database_norms = vectors.squared_norms(database_features) if database_norms is None else database_norms
    all_indices = np.zeros((len(query_features), top_k), dtype=np.int64)
    all_distances = np.zeros((len(query_features), top_k), dtype=np.float32)
    for start in range(0, len(query_features) if top_k else 0, QUERY_BLOCK):
        block = query_features[start : start + QUERY_BLOCK]
        squared = vectors.squared_distances(block, database_features, database_norms)
        vectors.mask_excluded(squared, exclude[start : start + QUERY_BLOCK], np.inf)
        nearest = np.argpartition(squared, top_k - 1, axis=1)[:, :top_k]
        nearest_squared = np.take_along_axis(squared, nearest, axis=1)
        order = nearest_squared.argsort(axis=1, kind="stable")
        nearest_squared = np.take_along_axis(nearest_squared, order, axis=1)
        all_indices[start : start + len(block)] = np.where(np.isinf(nearest_squared), -1, np.take_along_axis(nearest, order, axis=1))
        all_distances[start : start + len(block)] = np.sqrt(np.maximum(nearest_squared, 0.0))
    return all_indices, all_distances


def rows_of_queries(feature_index, query_paths):
    """For each query, its own row in the index, or -1 when it is not indexed.

    A query is matched with its folder resolved (the indexed file may itself be a symlink), failing that fully
    resolved (the query may be a symlink to an indexed file), and failing that, for a file with several hard links,
    by its inode among the indexed files' (stat'ed only then).
    """
    row_of_path = {path: row for row, path in enumerate(feature_index.paths)}
    dataset_dir = os.path.realpath(feature_index.dataset_dir)
    row_of_inode = None  # Built on the first hard-linked query, once.

    def row_of(path):
        nonlocal row_of_inode
        folder, name = os.path.split(os.path.abspath(path))
        for resolved in (os.path.join(os.path.realpath(folder), name), os.path.realpath(path)):
            row = row_of_path.get(os.path.relpath(resolved, dataset_dir).replace(os.sep, "/"))
            if row is not None:
                return row
        try:
            status = os.stat(path)
        except OSError:
            return -1
        if status.st_nlink < 2 or not os.path.isdir(dataset_dir):
            return -1
        if row_of_inode is None:
            row_of_inode = {}
            for row, indexed in enumerate(image_folders.full_paths(feature_index.dataset_dir, feature_index.paths)):
                with contextlib.suppress(OSError):
                    row_of_inode[image_folders.file_identity(indexed)] = row
        return row_of_inode.get((status.st_dev, status.st_ino), -1)

    return np.array([row_of(path) for path in query_paths], dtype=np.int64)


def search_batches(encoder, feature_index, query_paths, top_k, metric, batch_size, approximate=None, diffusion=False):
    """Rank the index for query paths taken batch_size at a time from any iterable, as each batch is ranked.

    Yields (readable query paths, (B, k) rows, (B, k) distances) per batch, so memory is bounded by a batch
    and the first hits come before the last query is read. Each row is ranked by the nearer of the query and
    its mirror image, so a mirrored copy finds the same.
    approximate: a faiss index from load_approximate, used when built for this metric; None ranks exactly.
    diffusion: re-rank cosine results over the index's neighbour graph when it has one, by diffusion distance.
    """
    top_k = min(top_k, feature_index.count)  # No more hits than rows: --top-k 3000000 allocates nothing for them.
    diffusion_graph = None
    if diffusion and metric == "cosine":
        diffusion_graph = feature_index.diffusion_graph()
    if approximate is not None and metric != feature_index.approximate_metric:
        approximate = None
    if approximate is None and diffusion and metric == "cosine" and diffusion_graph is None and feature_index.count > 1:
        console.note("ranking by cosine alone: the index has no neighbour graph (merged shards, or indexed with "
                     "--no-diffusion, or above --approximate-above images without an approximate index by cosine)")
    database_features = vectors.postprocess_features(feature_index.features, metric)
    query_paths = iter(query_paths)
    while batch := list(itertools.islice(query_paths, batch_size)):
        features, mirrored, readable = encoding.encode_queries(encoder, batch, batch_size, feature_index.histograms)
        readable_paths = [path for path, ok in zip(batch, readable) if ok]
        if not readable_paths:
            yield [], np.zeros((0, top_k), np.int64), np.zeros((0, top_k), np.float32)
            continue
        exclude = rows_of_queries(feature_index, readable_paths)
        both = vectors.postprocess_features(feature_index.as_stored(np.concatenate([features, mirrored])), metric)
        yield (readable_paths, *rank_batch(both, exclude, database_features, top_k, metric, approximate, diffusion_graph))


def rank_batch(both, exclude, database_features, top_k, metric, approximate, diffusion_graph):
    """(rows, distances) of a batch of queries given as their features stacked above their mirror images'."""
    if approximate is not None:
        if diffusion_graph is not None:
            # Diffusion over the graph among each query's nearest rows, found by the approximate index.
            # The query's own row may be among them; top_k never asks for more rows than the candidates hold.
            count = max(DIFFUSION_CANDIDATES, top_k) + 1
            candidates, _ = nearer_of_mirrors(*search_approximate(approximate, both, count), count)
            query_features, mirrored_features = np.split(both, 2)
            return graph.rank_by_local_diffusion(query_features, mirrored_features, database_features, diffusion_graph,
                                                 candidates, top_k, exclude)
        rows, distances = nearer_of_mirrors(*search_approximate(approximate, both, top_k + 1), top_k + 1)
        if metric == "cosine":
            distances = distances**2 / 2  # Unit vectors: the cosine distance, as exact search reports it.
        return drop_excluded(rows, distances, exclude, top_k)
    if diffusion_graph is not None:
        query_features, mirrored_features = np.split(both, 2)
        return graph.rank_by_diffusion(query_features, database_features, diffusion_graph, top_k, exclude, mirrored_features)
    rows, distances = nearer_of_mirrors(*rank(both, database_features, top_k, np.concatenate([exclude, exclude])), top_k)
    if metric == "cosine":
        # Between unit vectors |a - b|^2 = 2 (1 - cos), so this reports the cosine distance itself.
        distances = distances**2 / 2
    return rows, distances


def nearer_of_mirrors(rows, distances, top_k):
    """Merge the results of 2Q queries, Q queries followed by their mirror images, into Q: each row once, nearest first.

    The k nearest rows by the nearer of two distances are among the k nearest of either, so merging the two
    lists is exact. faiss's -1 fillers are kept, at infinite distance, for drop_excluded to remove.
    """
    count = len(rows) // 2
    top_k = min(top_k, rows.shape[1])  # Each list holds that many different rows: so does their union.
    rows = np.concatenate([rows[:count], rows[count:]], axis=1)
    distances = np.where(rows >= 0, np.concatenate([distances[:count], distances[count:]], axis=1), np.inf)
    # Sorted by row, then distance: a row's later copies are the farther ones, and are pushed to the end.
    by_row = np.lexsort((distances, rows), axis=1)
    rows, distances = np.take_along_axis(rows, by_row, axis=1), np.take_along_axis(distances, by_row, axis=1)
    repeated = np.zeros(rows.shape, dtype=bool)
    repeated[:, 1:] = (rows[:, 1:] == rows[:, :-1]) & (rows[:, 1:] >= 0)
    distances = np.where(repeated, np.inf, distances)
    order = np.argsort(distances, axis=1, kind="stable")[:, :top_k]
    return np.take_along_axis(rows, order, axis=1), np.take_along_axis(distances, order, axis=1)


def drop_excluded(rows, distances, exclude, top_k):
    """Remove each query's own row (and faiss's -1 fillers) from (Q, k + 1) results, keeping top_k.

    A query left with fewer than top_k rows is padded with row -1 at infinite distance; callers skip those.
    """
    keep = (rows != exclude[:, None]) & (rows >= 0)
    order = np.argsort(~keep, axis=1, kind="stable")[:, :top_k]
    kept = np.take_along_axis(keep, order, axis=1)
    return (np.where(kept, np.take_along_axis(rows, order, axis=1), -1),
            np.where(kept, np.take_along_axis(distances, order, axis=1), np.inf))


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


def approximate_neighbour_graph(approximate, features, neighbours):
    """Each unit-length row's nearest others found by the approximate index: (N, K) int32 rows, float32 cosine similarities.

    The approximate counterpart of graph.neighbour_graph, best first; a row that finds fewer than K others
    links to itself with similarity 0 in the places left, a link that carries no weight.
    """
    count = len(features)
    neighbours = min(neighbours, count - 1)
    rows = np.zeros((count, neighbours), dtype=np.int32)
    similarities = np.zeros((count, neighbours), dtype=np.float32)
    probes, approximate.nprobe = approximate.nprobe, min(approximate.nlist, GRAPH_PROBES)
    try:
        with console.progress(count, "linking") as progress:
            for start in range(0, count, GRAPH_SEARCH_BLOCK):
                block = np.ascontiguousarray(features[start : start + GRAPH_SEARCH_BLOCK], dtype=np.float32)
                found, distances = search_approximate(approximate, block, neighbours + 1)
                own = np.arange(start, start + len(block))[:, None]
                # Drop each row's own entry (or, when it was not found, the farthest): K others remain, best first.
                keep = (found != own) & (found >= 0)
                order = np.argsort(~keep, axis=1, kind="stable")[:, :neighbours]
                kept = np.take_along_axis(keep, order, axis=1)
                rows[start : start + len(block)] = np.where(kept, np.take_along_axis(found, order, axis=1), own)
                # Between unit vectors cos = 1 - |a - b|^2 / 2.
                similarities[start : start + len(block)] = np.where(kept, 1.0 - np.take_along_axis(distances, order, axis=1) ** 2 / 2, 0.0)
                progress.update(len(block))
    finally:
        approximate.nprobe = probes
    return rows, similarities


def search_approximate(approximate, query_features, top_k):
    """(Q, k) rows and Euclidean distances from the approximate index; rows are -1 where fewer were found."""
    squared, rows = approximate.search(np.ascontiguousarray(query_features, dtype=np.float32), top_k)
    return rows.astype(np.int64), np.sqrt(np.maximum(squared, 0.0))
