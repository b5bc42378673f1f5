"""The nearest-neighbour graph of an index, and diffusion re-ranking over it (Iscen et al., CVPR 2017 and 2018)."""

import concurrent.futures
import dataclasses

import numpy as np

from imsearch import console, vectors

# One setting for every folder, chosen across the benchmark sets (see docs/photos.md): with the scores
# divided by sqrt(degree), 12 neighbours serve classes of thousands and folders of unrelated photos alike.
GRAPH_NEIGHBOURS = 12
DIFFUSION_SEEDS = 5
DIFFUSION_ALPHA = 0.99
# Conjugate-gradient steps of a diffusion over a graph without its spectrum (a query's candidates, at scale).
DIFFUSION_STEPS = 20
# Eigenvectors of the graph kept with an index, largest eigenvalues first: they carry the diffusion along the
# graph's clusters, and two sparse steps from the seeds add what lies outside them. 512 are the fewest that rank
# Fashion-MNIST as conjugate gradients do (docs/performance.md).
SPECTRUM_RANK = 512
SPECTRUM_SPARSE_STEPS = 2
# Below this many rows conjugate gradients over the whole graph cost little: an index keeps no spectrum.
SPECTRUM_MIN_ROWS = 2000
# Similarities are raised to this power so that weak links count for little.
DIFFUSION_POWER = 3
# Rows this close to a query by cosine distance are copies of it (resized ones, and most re-encoded ones): they
# rank first, closest first, whatever the diffusion says (see docs/photos.md for the margin to different pictures).
NEAR_COPY_DISTANCE = 0.05
# Queries diffused at a time in each thread: small enough that a block per core fits beside the index.
DIFFUSION_BLOCK = 128
# The graph is built from blocks of this many similarities (128 MB of float32), whatever the index size.
GRAPH_BLOCK_ELEMENTS = 2**25
# Above this share of a block's pairs offered to later rows, each later row takes its best K of the block
# directly: a sparse list costs about ten times as much per pair as that selection does per element.
GRAPH_SPARSE_SHARE = 1 / 16


def neighbour_graph(features, neighbours=GRAPH_NEIGHBOURS):
    """Each row's nearest other rows by cosine similarity: (N, K) int32 rows and float32 similarities, best first.

    Similarity is symmetric, so each block of rows is multiplied only with itself and the rows after it
    (half the products of a full square) and offers each pair to both rows. Blocks are normalised one at a
    time and their products scaled by every column's inverse length, so no normalised copy of the (N, D)
    matrix is held beside the features.
    """
    features = np.asarray(features, dtype=np.float32)
    count = len(features)
    inverse_lengths = inverse_lengths_of(features)
    neighbours = neighbour_count(count, neighbours)
    # Each row's best K so far, unordered; -inf marks places not yet filled.
    rows = np.zeros((count, neighbours), dtype=np.int32)
    similarities = np.full((count, neighbours), -np.inf, dtype=np.float32)
    start = 0
    with console.progress(count * (count + 1) // 2 if neighbours else 0, "linking", unit="pair") as progress:
        while start < count and neighbours:
            # The blocks grow as fewer rows remain after them, holding GRAPH_BLOCK_ELEMENTS similarities each.
            stop = min(count, start + max(1, GRAPH_BLOCK_ELEMENTS // (count - start)))
            block = cosine_block(features, np.arange(start, stop), inverse_lengths, start)  # (B, N - start)
            block_ids, block_similarities = best_columns(block, neighbours)
            merge_candidates(rows, similarities, np.arange(start, stop), block_ids + start, block_similarities)
            offer_to_later_rows(rows, similarities, start, block[:, stop - start :])
            progress.update(block.shape[0] * block.shape[1] - block.shape[0] * (block.shape[0] - 1) // 2)
            start = stop
    return best_first(rows, similarities)


def neighbour_count(count, neighbours=GRAPH_NEIGHBOURS):
    """How many neighbours each of count rows gets: as asked, but never more than the other rows."""
    return max(0, min(neighbours, count - 1))


def update_neighbour_graph(features, previous_rows, previous_neighbours, previous_similarities, rebuild=None,
                           rebuild_share=0.5):
    """neighbour_graph(features), reusing the graph of a previous index that shares most of these rows.

    previous_rows[i] is the previous row holding row i's features unchanged, or -1 for a new or changed
    row. A kept row whose neighbours are all kept still has its best K among the kept rows, so only the
    new rows can enter its list; rows that are new or lost a neighbour are compared with every row.
    rebuild(features, K): how the whole graph is built anew (neighbour_graph by default), which happens
    when more than rebuild_share of the rows would be compared with every row.
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
    if len(relinked) > rebuild_share * count or neighbours == 0:
        return *(rebuild or neighbour_graph)(features, neighbours), count
    inverse_lengths = inverse_lengths_of(features)
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
    return *best_first(rows, similarities), len(relinked)


def inverse_lengths_of(features):
    """1 / the length of each row, (N,); rows of zeros get a large finite value instead of infinity."""
    return 1.0 / np.maximum(np.sqrt(vectors.squared_norms(features)), 1e-12)


def best_first(rows, similarities):
    """Each row's neighbours ordered by decreasing similarity: (N, K) int32 rows and float32 similarities."""
    order = np.argsort(-similarities, axis=1, kind="stable")
    return np.take_along_axis(rows, order, axis=1).astype(np.int32), np.take_along_axis(similarities, order, axis=1)


def cosine_block(features, rows, inverse_lengths, first_column=0):
    """Cosine similarities of features[rows] with features[first_column:], (B, N - first_column); -inf with itself."""
    block = vectors.postprocess_features(features[rows], "cosine") @ features[first_column:].T
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


@dataclasses.dataclass(frozen=True)
class DiffusionGraph:
    """An index's neighbour graph ready for diffusion."""

    operator: object  # The normalised affinity D^-1/2 W D^-1/2, a symmetric (N, N) scipy CSR matrix.
    inverse_sqrt_degrees: np.ndarray  # D^-1/2 as (N,) float32: divides the bias towards well-linked rows out of the scores.
    basis: np.ndarray | None = None  # (N, R) float32 leading eigenvectors of the operator, or None: solved by steps.
    eigenvalues: np.ndarray | None = None  # (R,) float32, their eigenvalues.


def diffusion_graph_of(neighbours, similarities, spectrum=None):
    """The DiffusionGraph of an index's (N, K) neighbour rows and similarities, or None when it has none.

    W links each row to its neighbours with weight similarity^DIFFUSION_POWER, made symmetric by averaging
    the two directions: a pair that lists each other keeps its full weight, a link listed by one row alone
    counts half, so a row many others list without being close to them gains less degree.
    spectrum: (basis, eigenvalues) as graph_spectrum gives them, kept with the index; without one the
    diffusion runs by conjugate-gradient steps.
    """
    if neighbours is None or neighbours.size == 0:
        return None
    operator, scale = affinity_operator(neighbours, similarities)
    if spectrum is None:
        return DiffusionGraph(operator, scale)
    basis, eigenvalues = spectrum
    return DiffusionGraph(operator, scale, np.asarray(basis, np.float32), np.asarray(eigenvalues, np.float32))


def affinity_operator(neighbours, similarities):
    """(D^-1/2 W D^-1/2 as a float32 CSR matrix, D^-1/2) for the graph of (N, K) neighbour rows and similarities."""
    import scipy.sparse

    count = len(neighbours)
    weights = np.maximum(similarities, 0.0).ravel() ** DIFFUSION_POWER
    affinity = scipy.sparse.csr_matrix((weights, (np.repeat(np.arange(count), neighbours.shape[1]), neighbours.ravel())),
                                       shape=(count, count))
    operator = ((affinity + affinity.T) / 2).tocsr().astype(np.float32)
    scale = (1.0 / np.sqrt(np.maximum(np.asarray(operator.sum(axis=1)).ravel(), 1e-12))).astype(np.float32)
    # D^-1/2 W D^-1/2 entry by entry: two products with diagonal matrices took as long as the rest together.
    operator.data *= np.repeat(scale, np.diff(operator.indptr)) * scale[operator.indices]
    return operator, scale


def graph_spectrum(neighbours, similarities):
    """The spectrum an index keeps for its (N, K) graph (spectrum_of its operator) from SPECTRUM_MIN_ROWS rows; else None."""
    if len(neighbours) < SPECTRUM_MIN_ROWS:
        return None
    return spectrum_of(affinity_operator(neighbours, similarities)[0])


def spectrum_of(operator):
    """(basis, eigenvalues): the operator's SPECTRUM_RANK leading eigenvectors (fewer for a small graph), (N, R)
    float32 of float16 precision as an index stores them, and their (R,) float32 eigenvalues; None, with a
    warning, when they are not found (diffusion then runs by conjugate gradients)."""
    import scipy.sparse.linalg

    count = operator.shape[0]
    rank = min(SPECTRUM_RANK, count - 2)
    console.log(f"finding the {rank} leading eigenvectors of the graph of {count} images")
    # A tolerance of 1e-4 in float32 ranks as well as machine precision in float64 does, in a fraction of the time.
    try:
        eigenvalues, basis = scipy.sparse.linalg.eigsh(operator.astype(np.float32), k=rank, which="LA", tol=1e-4,
                                                       v0=np.full(count, count**-0.5, np.float32))
    except scipy.sparse.linalg.ArpackError as problem:
        console.warn(f"the graph's eigenvectors were not found ({problem}); search will diffuse by conjugate gradients")
        return None
    return basis.astype(np.float16).astype(np.float32), eigenvalues.astype(np.float32)


def diffusion_distances(diffusion_graph, similarities):
    """Diffusion distances (B, N), lower is better, for (B, N) cosine similarities (-inf for excluded rows).

    Each query seeds its DIFFUSION_SEEDS most similar rows, and f = (I - alpha S)^-1 seeds (diffusion_scores),
    so rows well connected to the seeds through the graph score high. With alpha near 1, f leans towards
    S's leading eigenvector, D^1/2 1, whatever the query: dividing f by D^1/2 removes that lean, without
    which a row with many strong links comes first for most queries of a folder of unrelated photos.
    The distance is what hits are ranked by and what search prints: near copies of the query (cosine
    distance up to NEAR_COPY_DISTANCE) keep their cosine distance and so come first, closest first; every
    other row gets NEAR_COPY_DISTANCE + (1 - NEAR_COPY_DISTANCE) (1 - f / the query's largest f), from
    NEAR_COPY_DISTANCE for its best-connected row to 1 for rows the diffusion does not reach, which the
    cosine similarity orders among themselves. Excluded rows are at infinite distance.
    """
    import scipy.sparse

    count = similarities.shape[1]
    seeds = min(DIFFUSION_SEEDS, count)
    # Partitioning at the top end, not the bottom of a negated copy, halves the selection's time.
    nearest = np.argpartition(similarities, count - seeds, axis=1)[:, count - seeds :]
    weights = np.maximum(np.take_along_axis(similarities, nearest, axis=1), 0.0) ** DIFFUSION_POWER
    seeded = scipy.sparse.csr_matrix((weights.ravel(), nearest.ravel(), np.arange(0, weights.size + 1, seeds)),
                                     shape=similarities.shape, dtype=np.float32)
    # In place, a few passes over (B, N): at 60,000 rows these passes cost as much as the diffusion itself.
    scores = diffusion_scores(diffusion_graph, seeded)
    scores *= diffusion_graph.inverse_sqrt_degrees
    near = similarities >= 1.0 - NEAR_COPY_DISTANCE
    masked = near | np.isinf(similarities)
    best = scores.max(axis=1)
    some = np.flatnonzero(masked.any(axis=1))
    if len(some):
        best[some] = np.where(masked[some], -np.inf, scores[some]).max(axis=1, initial=-np.inf)
    # distance = 1 - (1 - NEAR_COPY_DISTANCE) relative, where relative is (1 - 1e-6) min(max(f / best, 0), 1) and a
    # millionth of (1 + cos) / 2: the cosine similarity orders the rows the diffusion leaves at 0.
    share = np.float32(1.0 - NEAR_COPY_DISTANCE)
    scores *= (share * np.float32(1.0 - 1e-6) / np.maximum(best, np.float32(1e-30)))[:, None]
    np.clip(scores, 0.0, share * np.float32(1.0 - 1e-6), out=scores)
    tie = share * np.float32(1e-6 / 2)
    scores += tie * similarities + tie  # Excluded rows (-inf) end at an infinite distance.
    distances = np.subtract(np.float32(1.0), scores, out=scores)
    rows = np.flatnonzero(near.any(axis=1))
    if len(rows):
        distances[rows] = np.where(near[rows], np.maximum(1.0 - similarities[rows], 0.0), distances[rows])
    return distances


def diffusion_scores(diffusion_graph, seeded):
    """f = (I - alpha S)^-1 y, (B, N), for each row y of the (B, N) sparse seeds: spectral when the graph has its spectrum.

    With S's leading eigenvectors U and eigenvalues L, (I - alpha S)^-1 = U (1 - alpha L)^-1 U' on their span,
    exact when U is the whole spectrum; the rest, where the eigenvalues are smaller, is approximated by the
    first terms of its series, (I - U U') (I + alpha S + (alpha S)^2) y (Iscen et al., CVPR 2018). Without a
    spectrum (a small graph, a query's candidates), conjugate gradients solve it in DIFFUSION_STEPS steps.
    """
    if diffusion_graph.basis is None:
        return solve_by_conjugate_gradients(diffusion_graph.operator, seeded.toarray().T).T
    basis = diffusion_graph.basis
    series, term = seeded, seeded
    for _ in range(SPECTRUM_SPARSE_STEPS):
        term = (term @ diffusion_graph.operator) * np.float32(DIFFUSION_ALPHA)
        series = series + term
    gains = (1.0 / (1.0 - DIFFUSION_ALPHA * diffusion_graph.eigenvalues)).astype(np.float32)
    coefficients = np.asarray(seeded @ basis) * gains - np.asarray(series @ basis)
    scores = coefficients @ basis.T
    scores += series.toarray()
    return scores


def solve_by_conjugate_gradients(operator, seeded):
    """(N, B) solutions f of (I - alpha operator) f = seeded for the (N, B) dense seeds, by DIFFUSION_STEPS steps."""
    seeded = np.ascontiguousarray(seeded, dtype=np.float32)
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
    return scores


def rank_by_diffusion(query_features, database_features, diffusion_graph, top_k, exclude, mirrored_features=None):
    """Like rank(), by diffusion distance (see diffusion_distances), which the distances reported are.

    mirrored_features: the queries' mirror images, (Q, D); each row's similarity is then the larger of the two.
    As in rank(), a query left with fewer than top_k other rows gets row -1 at infinite distance last.
    """
    top_k = max(0, min(top_k, len(database_features)))
    all_rows = np.zeros((len(query_features), top_k), dtype=np.int64)
    all_distances = np.zeros((len(query_features), top_k), dtype=np.float32)

    def rank_block(start):
        similarities = query_features[start : start + DIFFUSION_BLOCK] @ database_features.T
        if mirrored_features is not None:
            np.maximum(similarities, mirrored_features[start : start + DIFFUSION_BLOCK] @ database_features.T, out=similarities)
        vectors.mask_excluded(similarities, exclude[start : start + DIFFUSION_BLOCK], -np.inf)
        distances = diffusion_distances(diffusion_graph, similarities)
        nearest = np.argpartition(distances, top_k - 1, axis=1)[:, :top_k]
        order = np.argsort(np.take_along_axis(distances, nearest, axis=1), axis=1, kind="stable")
        rows = np.take_along_axis(nearest, order, axis=1)
        distances = np.take_along_axis(distances, rows, axis=1)  # The query's own row: infinite.
        all_rows[start : start + len(rows)] = np.where(np.isinf(distances), -1, rows)
        all_distances[start : start + len(rows)] = distances

    # The sparse products and the vector updates release the GIL: query blocks run on every core.
    # A block holds about ten (block, N) float32 arrays: similarities and the conjugate-gradient vectors.
    workers = vectors.block_workers(DIFFUSION_BLOCK * len(database_features) * 40)
    with concurrent.futures.ThreadPoolExecutor(workers) as executor:
        list(executor.map(rank_block, range(0, len(query_features) if top_k else 0, DIFFUSION_BLOCK)))
    return all_rows, all_distances


def rank_by_local_diffusion(query_features, mirrored_features, database_features, diffusion_graph, candidates, top_k, exclude):
    """Like rank_by_diffusion, with each query's diffusion run on the graph among its candidate rows only.

    candidates: (Q, M) rows per query (-1 for none), such as an approximate index's nearest; truncating the
    graph to them keeps a query's cost independent of the index size (Iscen et al. rank this way too).
    """
    top_k = max(0, min(top_k, len(database_features)))
    all_rows = np.full((len(query_features), top_k), -1, dtype=np.int64)
    all_distances = np.full((len(query_features), top_k), np.inf, dtype=np.float32)

    def rank_one(position):
        wanted = candidates[position]
        rows = np.unique(wanted[(wanted >= 0) & (wanted != exclude[position])])
        if not len(rows):
            return
        block = np.ascontiguousarray(database_features[rows])
        similarities = np.maximum(block @ query_features[position], block @ mirrored_features[position])[None]
        local = DiffusionGraph(diffusion_graph.operator[rows][:, rows], diffusion_graph.inverse_sqrt_degrees[rows])
        distances = diffusion_distances(local, similarities)[0]
        best = np.argsort(distances, kind="stable")[:top_k]
        all_rows[position, : len(best)] = rows[best]
        all_distances[position, : len(best)] = distances[best]

    # The sparse slicing and products release the GIL for much of their time: queries run on every core.
    workers = vectors.block_workers(candidates.shape[1] * (database_features.shape[1] + 64) * 4)
    with concurrent.futures.ThreadPoolExecutor(workers) as executor:
        list(executor.map(rank_one, range(len(query_features) if top_k else 0)))
    return all_rows, all_distances
