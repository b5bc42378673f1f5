"""Near-duplicate pairs of an index: images so close by their histograms that they are copies of each other."""

import numpy as np

from imsearch import descriptors, graph, vectors


def histogram_features(feature_index):
    """The index's histogram parts (gradients, and colours for colour models), unit length: (N, H).

    Copies are told apart by these rather than by the encoder's features, which move more under crops and
    depend on how well the model was trained.
    """
    if not feature_index.histograms or feature_index.compact:
        raise ValueError("the index holds no histograms to compare")  # search.py tells the user which index.
    length = descriptors.histograms_length(feature_index.channels)
    return vectors.postprocess_features(feature_index.features[:, -length:], "cosine")


def duplicate_pairs(feature_index, max_distance):
    """(rows (P, 2) with i < j, cosine distances (P,) of the histograms) of every pair within max_distance, closest first.

    Candidates are each image's nearest neighbours by the histograms, so an image with more copies than
    graph.GRAPH_NEIGHBOURS lists only that many of them.
    """
    neighbours, similarities = graph.neighbour_graph(histogram_features(feature_index))
    rows = np.repeat(np.arange(len(neighbours)), neighbours.shape[1])
    columns, distances = neighbours.ravel().astype(np.int64), 1.0 - similarities.ravel()
    close = distances <= max_distance
    pairs = np.sort(np.stack([rows[close], columns[close]], axis=1), axis=1)
    # A pair listed from both ends appears twice: keep it once, at its smaller distance.
    order = np.lexsort((distances[close], pairs[:, 1], pairs[:, 0]))
    pairs, pair_distances = pairs[order], distances[close][order]
    first = np.ones(len(pairs), dtype=bool)
    first[1:] = (pairs[1:] != pairs[:-1]).any(axis=1)
    pairs, pair_distances = pairs[first], np.maximum(pair_distances[first], 0.0)
    closest_first = np.argsort(pair_distances, kind="stable")
    return pairs[closest_first], pair_distances[closest_first]


def duplicate_sets(pairs, count):
    """The images linked by pairs, grouped into sets (connected components), largest set first; each set sorted."""
    import scipy.sparse
    import scipy.sparse.csgraph

    if not len(pairs):
        return []
    links = scipy.sparse.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(count, count))
    _, component = scipy.sparse.csgraph.connected_components(links, directed=False)
    linked = np.unique(pairs)
    sets = {}
    for row in linked:
        sets.setdefault(component[row], []).append(int(row))
    return sorted(sets.values(), key=lambda members: (-len(members), members[0]))
