"""Near-duplicate pairs of an index: images so close by their histograms that they are copies of each other."""

import numpy as np

from imsearch import console, data, descriptors, encoding, graph, vectors


def histogram_features(feature_index, batch_size):
    """The histogram parts of the index's rows, unit length: (N', H), and the index rows they belong to (N',).

    Copies are told apart by these rather than by the encoder's features, which move more under crops and
    depend on how well the model was trained. A compact index keeps only a projection of every part, so its
    images are read again for their histograms; images that are gone are left out with a warning.
    """
    if not feature_index.histograms:
        raise ValueError("the index holds no histograms to compare")  # search.py tells the user which index.
    length = descriptors.histograms_length(feature_index.channels)
    if not feature_index.compact:
        return vectors.postprocess_features(feature_index.features[:, -length:], "cosine"), np.arange(feature_index.count)
    console.log(f"reading the {feature_index.count} images of the compact index again for their histograms")
    paths = data.full_paths(feature_index.dataset_dir, feature_index.paths)
    histograms, readable = encoding.histogram_paths(paths, feature_index.image_size, feature_index.channels, batch_size)
    if not readable.all():
        console.warn(f"left out {int((~readable).sum())} indexed image(s) that could not be read, first: "
                     f"{paths[int(np.flatnonzero(~readable)[0])]}")
    return vectors.postprocess_features(histograms, "cosine"), np.flatnonzero(readable)


def duplicate_pairs(feature_index, max_distance, batch_size):
    """(index rows (P, 2) with i < j, cosine distances (P,) of the histograms) of every pair within max_distance, closest first.

    Candidates are each image's nearest neighbours by the histograms, so an image with more copies than
    graph.GRAPH_NEIGHBOURS lists only that many of them.
    """
    histograms, index_rows = histogram_features(feature_index, batch_size)
    neighbours, similarities = graph.neighbour_graph(histograms)
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
    return index_rows[pairs[closest_first]], pair_distances[closest_first]


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
