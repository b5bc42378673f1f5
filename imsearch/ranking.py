"""Ranking an index against queries: exact vectorised distances, or the faiss approximate index."""

import os
import sys

import numpy as np

from imsearch import encoding

# Rows whose length is this close to 1 count as normalised already (float32 rounding of a unit row is ~1e-7).
UNIT_LENGTH_TOLERANCE = 1e-5
# Queries are ranked in blocks so the distance matrix stays small (block x database floats).
QUERY_BLOCK = 256
# Lists probed per query by the approximate index: recall@10 >= 0.95 at 1M rows in bench/bench_search.py.
APPROXIMATE_PROBES = 64

# Diffusion re-ranking (Iscen et al., CVPR 2017) over the database's nearest-neighbour graph. Each value
# was chosen on Fashion-MNIST queries (see README, Retrieval quality): 15 neighbours matched 30 at half the
# cost, 5 seeds beat 10 on precision@10, and alpha 0.99 with 20 conjugate-gradient steps beat 0.9 or 10 steps.
GRAPH_NEIGHBOURS = 15
DIFFUSION_SEEDS = 5
DIFFUSION_ALPHA = 0.99
DIFFUSION_STEPS = 20
# Similarities are raised to this power so that weak links count for little.
DIFFUSION_POWER = 3
# Rows this similar to a query are copies of it: they rank first, whatever the diffusion says.
DUPLICATE_SIMILARITY = 1 - 1e-5
# The graph is built from blocks of this many similarities (128 MB of float32), whatever the index size.
GRAPH_BLOCK_ELEMENTS = 2**25
# Above this share of a block's pairs offered to later rows, each later row takes its best K of the block
# directly: a sparse list costs about ten times as much per pair as that selection does per element.
GRAPH_SPARSE_SHARE = 1 / 16

# Exact search for a few queries reads a short prefix of every row along the features' principal axes (a
# matrix small enough to stay in cache) and measures whole rows only where that prefix's lower bound can
# still beat the k-th best: a few hundred of 60,000 rows per query on Fashion-MNIST's 192 encoder features.
# 96 axes: 0.61 ms per query at 60,000 x 192 here, against 0.77 with 64 and 0.94 with 48; 128 no longer fits in cache.
PREFIX_LENGTH = 96
# The first upper bound on the k-th distance comes from the best-bounded rows of every PREFIX_STRIDE-th row,
# then is tightened by measuring the PREFIX_PROBES best-bounded candidates.
PREFIX_STRIDE = 8
PREFIX_PROBES = 64
# When more than this share of rows survives the first bound, one product with every row is cheaper.
PREFIX_GIVE_UP_SHARE = 1 / 8
# Above this many queries one matrix product over every row beats pruning query by query.
PRUNED_QUERIES_MAX = 16
# Rows the principal axes are fitted on, and rows projected at a time; any orthonormal axes keep the bound exact.
PREFIX_FIT_ROWS = 8192
PREFIX_BLOCK_ROWS = 16384
# Relative slack on the bound, far above float32 rounding, so no row that ties or wins is ever pruned.
PREFIX_SLACK = 1e-4


def postprocess_features(features, metric, in_place=False):
    """The one place features are transformed for ranking: L2-normalised for cosine, as-is for Euclidean.

    in_place: normalise the given float32 array itself rather than a copy, for a caller that gives it up.
    Rows already of unit length (or zero) come back as they are, so post-processing twice copies nothing.
    """
    features = np.asarray(features, dtype=np.float32)
    if metric != "cosine":
        return features
    norms = np.sqrt(squared_norms(features))[:, None]  # Not np.linalg.norm: it squares a copy of every row.
    if np.all((np.abs(norms - 1.0) <= UNIT_LENGTH_TOLERANCE) | (norms == 0.0)):
        return features
    in_place = in_place and features.flags.writeable  # An array unpickled from bytes may be read-only.
    return np.divide(features, np.maximum(norms, 1e-12), out=features if in_place else None)


def mask_excluded(matrix, excluded, value):
    """Set matrix[i, excluded[i]] to value for every block row i whose excluded row is >= 0 (in place)."""
    matrix[np.flatnonzero(excluded >= 0), excluded[excluded >= 0]] = value


def squared_norms(features):
    """Row-wise squared L2 norms, (N, D) -> (N,)."""
    return np.einsum("ij,ij->i", features, features)


def squared_distances(queries, database, database_norms):
    """(Q, N) squared Euclidean distances as |q|^2 - 2 q.x + |x|^2: one matrix product, no loop over items."""
    squared = database_norms[None, :] - 2.0 * queries @ database.T
    squared += squared_norms(queries)[:, None]
    return squared


def rank(query_features, database_features, top_k, exclude=None, database_norms=None, prefix=None):
    """Indices and distances of the top_k nearest database rows per query, ascending, vectorised.

    query_features: (Q, D) and database_features: (N, D), already post-processed.
    exclude: optional (Q,) database row per query to leave out (the query itself), -1 for none.
    database_norms: squared_norms(database_features), when the caller keeps them between calls.
    prefix: build_prefix_bound(database_features), which makes a few queries much cheaper (see rank_pruned).
    Returns (Q, k) int64 indices and (Q, k) float32 Euclidean distances, k = min(top_k, rows available).
    """
    exclude = np.full(len(query_features), -1) if exclude is None else np.asarray(exclude)
    top_k = max(0, min(top_k, len(database_features) - int((exclude >= 0).any())))
    few_queries = 0 < top_k and len(query_features) <= PRUNED_QUERIES_MAX and len(database_features) > PREFIX_STRIDE * top_k
    if prefix is not None and few_queries:
        results = [rank_pruned(query, database_features, prefix, top_k, row) for query, row in zip(query_features, exclude)]
        return (np.array([rows for rows, _ in results], dtype=np.int64).reshape(-1, top_k),
                np.array([distances for _, distances in results], dtype=np.float32).reshape(-1, top_k))
    database_norms = squared_norms(database_features) if database_norms is None else database_norms
    all_indices = np.zeros((len(query_features), top_k), dtype=np.int64)
    all_distances = np.zeros((len(query_features), top_k), dtype=np.float32)
    for start in range(0, len(query_features) if top_k else 0, QUERY_BLOCK):
        block = query_features[start : start + QUERY_BLOCK]
        squared = squared_distances(block, database_features, database_norms)
        mask_excluded(squared, exclude[start : start + QUERY_BLOCK], np.inf)
        nearest = np.argpartition(squared, top_k - 1, axis=1)[:, :top_k]
        nearest_squared = np.take_along_axis(squared, nearest, axis=1)
        order = nearest_squared.argsort(axis=1, kind="stable")
        all_indices[start : start + len(block)] = np.take_along_axis(nearest, order, axis=1)
        all_distances[start : start + len(block)] = np.sqrt(np.maximum(np.take_along_axis(nearest_squared, order, axis=1), 0.0))
    return all_indices, all_distances


def build_prefix_bound(features, metric, seed=0):
    """(basis (D, p), bounds (p + 2, N)) for rank_pruned over postprocess_features(features, metric), or None.

    basis holds the p principal axes of the post-processed features; each column of bounds is a row x's
    coordinates on them, the length of its remainder off them, and -|x|^2 / 2. It is stored column by
    column because one product with it then runs about twice as fast. None when rows are too short to gain.
    """
    count, length = features.shape
    if length <= PREFIX_LENGTH or count == 0:
        return None
    fit_rows = np.random.default_rng(seed).choice(count, size=min(count, PREFIX_FIT_ROWS), replace=False)
    sample = postprocess_features(features[np.sort(fit_rows)], metric)
    sample -= sample.mean(axis=0)
    _, axes = np.linalg.eigh((sample.T @ sample).astype(np.float64))
    basis = np.ascontiguousarray(axes[:, ::-1][:, :PREFIX_LENGTH], dtype=np.float32)  # Largest variance first.
    bounds = np.zeros((PREFIX_LENGTH + 2, count), dtype=np.float32)
    for start in range(0, count, PREFIX_BLOCK_ROWS):
        block = postprocess_features(features[start : start + PREFIX_BLOCK_ROWS], metric)
        coordinates = block @ basis
        columns = slice(start, start + len(block))
        bounds[:PREFIX_LENGTH, columns] = coordinates.T
        bounds[PREFIX_LENGTH, columns] = np.linalg.norm(block - coordinates @ basis.T, axis=1)
        bounds[PREFIX_LENGTH + 1, columns] = -0.5 * squared_norms(block)
    return basis, bounds


def rank_pruned(query, database_features, prefix, top_k, exclude_row=-1):
    """rank() for one query (D,): exact, but whole rows are read only where the prefix bound cannot rule them out.

    With q_p, x_p the coordinates on the basis and r_q, r_x the remainders' lengths, Pythagoras and the
    triangle inequality give |q - x|^2 >= |q_p - x_p|^2 + (r_q - r_x)^2 = |q|^2 - 2 s(x), where
    s(x) = [x_p, r_x, -|x|^2 / 2] . [q_p, r_q, 1]; so a row can be among the k nearest only if
    s(x) >= (|q|^2 - tau) / 2 for any tau >= the k-th squared distance.
    Returns (k,) rows and (k,) Euclidean distances, nearest first; needs top_k < rows / PREFIX_STRIDE.
    """
    basis, bounds = prefix
    coordinates = query @ basis
    remainder = np.linalg.norm(query - basis @ coordinates)
    scores = np.concatenate([coordinates, [remainder, 1.0]]).astype(np.float32) @ bounds  # (N,), s(x) per row.
    if exclude_row >= 0:
        scores[exclude_row] = -np.inf
    squared_query = float(query @ query)

    def candidates_within(tau, rows=None):
        """Rows (of all, or of rows) whose bound does not rule them out against a k-th squared distance tau."""
        threshold = (squared_query - tau) / 2 - PREFIX_SLACK * (squared_query + tau)
        return np.flatnonzero(scores >= threshold) if rows is None else rows[scores[rows] >= threshold]

    # Any k rows bound the k-th distance from above; the best-bounded of a strided sample bound it well.
    sampled = np.argpartition(-scores[::PREFIX_STRIDE], top_k - 1)[:top_k] * PREFIX_STRIDE
    candidates = candidates_within(row_squared_distances(query, database_features[sampled]).max())
    if len(candidates) > PREFIX_GIVE_UP_SHARE * len(scores):
        # The bound rules out little on these features: one product with every row beats gathering them.
        candidates = np.arange(len(scores))
        squared = np.maximum(squared_query - 2.0 * (database_features @ query + bounds[-1]), 0.0)
        squared[~np.isfinite(scores)] = np.inf  # The excluded row.
    else:
        probes = max(PREFIX_PROBES, top_k)
        if len(candidates) > probes:
            # The k-th nearest of the best-bounded candidates bounds far more tightly than the sample did.
            probed = candidates[np.argpartition(-scores[candidates], probes - 1)[:probes]]
            tau = np.partition(row_squared_distances(query, database_features[probed]), top_k - 1)[top_k - 1]
            candidates = candidates_within(tau, candidates)
        squared = row_squared_distances(query, database_features[candidates])
    nearest = np.argpartition(squared, top_k - 1)[:top_k] if len(squared) > top_k else np.arange(len(squared))
    nearest = nearest[np.argsort(squared[nearest], kind="stable")]
    return candidates[nearest], np.sqrt(squared[nearest])


def row_squared_distances(query, rows):
    """Squared Euclidean distances (R,) from a query (D,) to rows (R, D), from the differences themselves."""
    differences = rows - query
    return np.einsum("ij,ij->i", differences, differences)


def rows_of_queries(feature_index, query_paths):
    """For each query, its own row in the index (found by resolved path), or -1 when it is not indexed."""
    row_of_path = {path: row for row, path in enumerate(feature_index["paths"])}
    dataset_dir = os.path.realpath(feature_index.get("dataset_dir", ""))
    rows = []
    for path in query_paths:
        relative = os.path.relpath(os.path.realpath(path), dataset_dir).replace(os.sep, "/")
        rows.append(row_of_path.get(relative, -1))
    return np.array(rows, dtype=np.int64)


def search(encoder, feature_index, query_paths, top_k, metric, batch_size, approximate=None, diffusion=False):
    """Rank the index for each readable query: (readable query paths, (Q, k) rows, (Q, k) distances).

    approximate: a faiss index from load_approximate, used when built for this metric; None ranks exactly.
    diffusion: re-rank cosine results over the index's neighbour graph when it has one; distances stay cosine.
    """
    features, readable = encoding.encode_paths(
        encoder, query_paths, batch_size, description="queries", histograms=feature_index["histograms"]
    )
    readable_paths = [path for path, ok in zip(query_paths, readable) if ok]
    exclude = rows_of_queries(feature_index, readable_paths)
    if approximate is not None and metric == feature_index.get("approximate_metric", "euclidean"):
        rows, distances = search_approximate(approximate, postprocess_features(features, metric), top_k + 1)
        if metric == "cosine":
            distances = distances**2 / 2  # Unit vectors: the cosine distance, as exact search reports it.
        return (readable_paths, *drop_excluded(rows, distances, exclude, top_k))
    operator = diffusion_operator_of(feature_index) if diffusion and metric == "cosine" else None
    if diffusion and metric == "cosine" and operator is None:
        print("note: the index has no neighbour graph (shards, --no-diffusion or a large index); ranking by cosine alone",
              file=sys.stderr)
    query_features = postprocess_features(features, metric)
    database_features = postprocess_features(feature_index["features"], metric)
    if operator is not None:
        return (readable_paths, *rank_by_diffusion(query_features, database_features, operator, top_k, exclude))
    rows, distances = rank(query_features, database_features, top_k, exclude, prefix=prefix_of(feature_index, metric))
    if metric == "cosine":
        # Between unit vectors |a - b|^2 = 2 (1 - cos), so this reports the cosine distance itself.
        distances = distances**2 / 2
    return readable_paths, rows, distances


def prefix_of(feature_index, metric):
    """The index's (basis, bounds) for rank_pruned when they were built for this metric, else None."""
    if feature_index.get("prefix_metric") != metric:
        return None
    return feature_index["prefix_basis"], feature_index["prefix_bounds"]


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


def neighbour_graph(features, neighbours=GRAPH_NEIGHBOURS):
    """Each row's nearest other rows by cosine similarity: (N, K) int32 rows and float32 similarities, best first.

    Similarity is symmetric, so each block of rows is multiplied only with itself and the rows after it
    (half the products of a full square) and offers each pair to both rows. Blocks are normalised one at a
    time and their products scaled by every column's inverse length, so no normalised copy of the (N, D)
    matrix is held beside the features.
    """
    features = np.asarray(features, dtype=np.float32)
    count = len(features)
    inverse_lengths = 1.0 / np.maximum(np.sqrt(squared_norms(features)), 1e-12)
    neighbours = max(0, min(neighbours, count - 1))
    # Each row's best K so far, unordered; -inf marks places not yet filled.
    rows = np.zeros((count, neighbours), dtype=np.int32)
    similarities = np.full((count, neighbours), -np.inf, dtype=np.float32)
    start = 0
    while start < count and neighbours:
        # The blocks grow as fewer rows remain after them, holding GRAPH_BLOCK_ELEMENTS similarities each.
        stop = min(count, start + max(1, GRAPH_BLOCK_ELEMENTS // (count - start)))
        block = cosine_block(features, np.arange(start, stop), inverse_lengths, start)  # (B, N - start)
        block_ids, block_similarities = best_columns(block, neighbours)
        merge_candidates(rows, similarities, np.arange(start, stop), block_ids + start, block_similarities)
        offer_to_later_rows(rows, similarities, start, block[:, stop - start :])
        start = stop
    order = np.argsort(-similarities, axis=1, kind="stable")
    return np.take_along_axis(rows, order, axis=1), np.take_along_axis(similarities, order, axis=1)


def update_neighbour_graph(features, previous_rows, previous_neighbours, previous_similarities):
    """neighbour_graph(features), reusing the graph of a previous index that shares most of these rows.

    previous_rows[i] is the previous row holding row i's features unchanged, or -1 for a new or changed
    row. A kept row whose neighbours are all kept still has its best K among the kept rows, so only the
    new rows can enter its list; rows that are new or lost a neighbour are compared with every row.
    Returns the graph as neighbour_graph does, and how many rows were compared with every row.
    """
    count, neighbours = len(features), previous_neighbours.shape[1]
    kept = previous_rows >= 0
    row_of_previous = np.full(len(previous_neighbours), -1, dtype=np.int64)
    row_of_previous[previous_rows[kept]] = np.flatnonzero(kept)
    rows = np.full((count, neighbours), -1, dtype=np.int64)
    similarities = np.full((count, neighbours), -np.inf, dtype=np.float32)
    rows[kept] = row_of_previous[previous_neighbours[previous_rows[kept]]]
    similarities[kept] = previous_similarities[previous_rows[kept]]
    whole = kept & (rows >= 0).all(axis=1)  # Kept rows whose neighbours were all kept.
    relinked, unchanged = np.flatnonzero(~whole), np.flatnonzero(whole)
    # Comparing a row with every row costs twice its share of a fresh graph, which multiplies half the square.
    if 2 * len(relinked) > count or neighbours == 0:
        return *neighbour_graph(features, neighbours), count
    inverse_lengths = 1.0 / np.maximum(np.sqrt(squared_norms(features)), 1e-12)
    block_rows = max(1, GRAPH_BLOCK_ELEMENTS // count)
    for start in range(0, len(relinked), block_rows):
        targets = relinked[start : start + block_rows]
        block = cosine_block(features, targets, inverse_lengths)  # (B, N)
        rows[targets], similarities[targets] = best_columns(block, neighbours)
        # New rows are offered to the unchanged rows' lists; rows that only lost a neighbour were in them already.
        new = ~kept[targets]
        if new.any() and len(unchanged):
            offers = np.ascontiguousarray(block[new][:, unchanged].T)  # (unchanged, new in this block)
            offer_rows, offer_similarities = best_columns(offers, neighbours)
            merge_candidates(rows, similarities, unchanged, targets[new][offer_rows], offer_similarities)
    order = np.argsort(-similarities, axis=1, kind="stable")
    return np.take_along_axis(rows, order, axis=1).astype(np.int32), np.take_along_axis(similarities, order, axis=1), len(relinked)


def cosine_block(features, rows, inverse_lengths, first_column=0):
    """Cosine similarities of features[rows] with features[first_column:], (B, N - first_column); -inf with itself."""
    block = postprocess_features(features[rows], "cosine") @ features[first_column:].T
    block *= inverse_lengths[first_column:]
    block[np.arange(len(rows)), rows - first_column] = -np.inf  # Not its own neighbour.
    return block


def best_columns(matrix, count):
    """Column numbers and values of each row's `count` largest values (all columns when there are fewer), unordered."""
    width = matrix.shape[1]
    if width <= count:
        columns = np.broadcast_to(np.arange(width), matrix.shape)
        return columns, np.take_along_axis(matrix, columns, axis=1)
    columns = np.empty((len(matrix), count), dtype=np.intp)
    # A few rows at a time: the partition's indices are 8 bytes per element, twice the block itself.
    part_rows = max(1, GRAPH_BLOCK_ELEMENTS // 8 // width)
    for first in range(0, len(matrix), part_rows):
        part = matrix[first : first + part_rows]
        # Partitioning at the top end, not the bottom of a negated copy, halves the selection's time.
        columns[first : first + part_rows] = np.argpartition(part, width - count, axis=1)[:, width - count :]
    return columns, np.take_along_axis(matrix, columns, axis=1)


def merge_candidates(rows, similarities, targets, candidate_rows, candidate_similarities):
    """Keep, for each row in targets, the best K of its current neighbours and the (T, C) candidates offered."""
    all_rows = np.concatenate([rows[targets], candidate_rows.astype(np.int32, copy=False)], axis=1)
    all_similarities = np.concatenate([similarities[targets], candidate_similarities], axis=1)
    kept, kept_similarities = best_columns(all_similarities, rows.shape[1])
    rows[targets] = np.take_along_axis(all_rows, kept, axis=1)
    similarities[targets] = kept_similarities


def offer_to_later_rows(rows, similarities, start, later):
    """Offer the block's similarities with later rows, later (B, M) for rows stop.., to those rows' lists.

    Only pairs that beat a later row's current K-th best can enter its list. Once the lists hold real
    neighbours those pairs are few, and are taken from a sparse mask; while they are many (early blocks,
    or rows ordered from least to most similar), each later row takes its best K of the block directly.
    """
    block_rows, later_count = later.shape
    stop = start + block_rows
    beats = later > similarities[stop:].min(axis=1)
    if np.count_nonzero(beats) <= GRAPH_SPARSE_SHARE * beats.size:
        receivers, candidate_rows, candidate_similarities = best_offers(later, beats, rows.shape[1])
        merge_candidates(rows, similarities, receivers + stop, candidate_rows + start, candidate_similarities)
        return
    # An eighth of a block at a time, so the transposed copy and its selection stay small beside the block.
    part_rows = max(1, GRAPH_BLOCK_ELEMENTS // 8 // block_rows)
    for first in range(0, later_count, part_rows):
        part = np.ascontiguousarray(later[:, first : first + part_rows].T)  # (part_rows, B)
        candidate_rows, candidate_similarities = best_columns(part, rows.shape[1])
        receivers = np.arange(stop + first, stop + first + len(part))
        merge_candidates(rows, similarities, receivers, candidate_rows + start, candidate_similarities)


def best_offers(later, beats, count):
    """The later rows offered a pair by the (B, M) mask beats, and up to `count` best offers each.

    Returns (R,) receiving columns of later, and (R, C) block rows and similarities, padded with -inf.
    """
    block_positions, later_positions = np.nonzero(beats)
    # Grouped by receiving row, best first.
    order = np.lexsort((-later[block_positions, later_positions], later_positions))
    block_positions, later_positions = block_positions[order], later_positions[order]
    receivers, first_offer, offer_counts = np.unique(later_positions, return_index=True, return_counts=True)
    ranks = np.arange(len(later_positions)) - np.repeat(first_offer, offer_counts)
    kept = ranks < count
    width = min(count, int(offer_counts.max(initial=0)))
    candidate_rows = np.zeros((len(receivers), width), dtype=np.int32)
    candidate_similarities = np.full((len(receivers), width), -np.inf, dtype=np.float32)
    slots = np.repeat(np.arange(len(receivers)), offer_counts)[kept], ranks[kept]
    candidate_rows[slots] = block_positions[kept]
    candidate_similarities[slots] = later[block_positions[kept], later_positions[kept]]
    return receivers, candidate_rows, candidate_similarities


def diffusion_operator_of(feature_index):
    """The index's normalised graph affinity D^-1/2 W D^-1/2 (scipy CSR), or None when it has no graph.

    W links each row to its neighbours with weight similarity^DIFFUSION_POWER, made symmetric by taking
    the larger weight of the two directions.
    """
    import scipy.sparse

    neighbours, similarities = feature_index.get("neighbours"), feature_index.get("neighbour_similarities")
    if neighbours is None or neighbours.size == 0:
        return None
    count = len(neighbours)
    weights = np.maximum(similarities, 0.0).ravel() ** DIFFUSION_POWER
    affinity = scipy.sparse.csr_matrix((weights, (np.repeat(np.arange(count), neighbours.shape[1]), neighbours.ravel())),
                                       shape=(count, count))
    affinity = affinity.maximum(affinity.T)
    scale = 1.0 / np.sqrt(np.maximum(np.asarray(affinity.sum(axis=1)).ravel(), 1e-12))
    return (scipy.sparse.diags(scale) @ affinity @ scipy.sparse.diags(scale)).tocsr().astype(np.float32)


def diffuse(operator, similarities):
    """Diffusion scores (B, N), higher is better, for (B, N) cosine similarities (-inf for excluded rows).

    Each query seeds its DIFFUSION_SEEDS most similar rows; the scores solve (I - alpha S) f = seeds by
    conjugate gradients, so rows well connected to the seeds through the graph rank high. The cosine
    similarity breaks ties among rows the diffusion does not reach, and copies of the query rank first.
    """
    seeds = min(DIFFUSION_SEEDS, similarities.shape[1])
    nearest = np.argpartition(-similarities, seeds - 1, axis=1)[:, :seeds]
    seeded = np.zeros_like(similarities)
    np.put_along_axis(seeded, nearest, np.maximum(np.take_along_axis(similarities, nearest, axis=1), 0.0) ** DIFFUSION_POWER, axis=1)
    seeded = np.ascontiguousarray(seeded.T)  # (N, B): one column per query.
    scores, residual = np.zeros_like(seeded), seeded.copy()
    direction, residual_norms = residual.copy(), np.einsum("ij,ij->j", residual, residual)
    for _ in range(DIFFUSION_STEPS):
        product = direction - DIFFUSION_ALPHA * (operator @ direction)
        step = residual_norms / np.maximum(np.einsum("ij,ij->j", direction, product), 1e-20)
        scores += step * direction
        residual -= step * product
        new_norms = np.einsum("ij,ij->j", residual, residual)
        direction = residual + (new_norms / np.maximum(residual_norms, 1e-20)) * direction
        residual_norms = new_norms
    scores = scores.T + 1e-6 * similarities
    return np.where(similarities >= DUPLICATE_SIMILARITY, scores + 1e6, scores)


def rank_by_diffusion(query_features, database_features, operator, top_k, exclude):
    """Like rank(), ordered by diffusion score; the distances reported are cosine distances (1 - cos)."""
    top_k = max(0, min(top_k, len(database_features) - int((exclude >= 0).any())))
    all_rows = np.zeros((len(query_features), top_k), dtype=np.int64)
    all_distances = np.zeros((len(query_features), top_k), dtype=np.float32)
    for start in range(0, len(query_features) if top_k else 0, QUERY_BLOCK):
        similarities = query_features[start : start + QUERY_BLOCK] @ database_features.T
        mask_excluded(similarities, exclude[start : start + QUERY_BLOCK], -np.inf)
        scores = diffuse(operator, similarities)
        nearest = np.argpartition(-scores, top_k - 1, axis=1)[:, :top_k]
        order = np.argsort(-np.take_along_axis(scores, nearest, axis=1), axis=1, kind="stable")
        rows = np.take_along_axis(nearest, order, axis=1)
        all_rows[start : start + len(rows)] = rows
        all_distances[start : start + len(rows)] = 1.0 - np.take_along_axis(similarities, rows, axis=1)
    return all_rows, all_distances
