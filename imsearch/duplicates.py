"""Duplicates in an index: candidate pairs close by their histograms, kept where their pixels show one picture, grouped into sets."""

import dataclasses

import numpy as np

from imsearch import console, copies, descriptors, encoding, graph, image_folders, vectors

# Candidate pairs screened at once: bounds the screen's memory at 60,000 images.
SCREEN_BATCH = 50_000


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
    paths = image_folders.full_paths(feature_index.dataset_dir, feature_index.paths)
    histograms, readable = encoding.histogram_paths(paths, feature_index.image_size, feature_index.channels, batch_size)
    if not readable.all():
        console.warn(f"left out {int((~readable).sum())} indexed image(s) that could not be read, first: "
                     f"{paths[int(np.flatnonzero(~readable)[0])]}")
    return vectors.postprocess_features(histograms, "cosine"), np.flatnonzero(readable)


def candidate_pairs(feature_index, max_distance, batch_size):
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


@dataclasses.dataclass(frozen=True)
class DuplicatePair:
    """Two index rows verified to be copies of one picture, the keeper's first; their histogram distance and the verdict."""

    keep: int
    copy: int
    distance: float
    verdict: copies.Verdict


@dataclasses.dataclass(frozen=True)
class DuplicateSet:
    """Index rows that are all copies of each other: the one to keep, then the others, closest first."""

    keep: int
    copies: tuple


class Pictures:
    """The index's images read for comparison on first use, and the verdicts on pairs of them, each computed once."""

    def __init__(self, feature_index):
        self.paths = image_folders.full_paths(feature_index.dataset_dir, feature_index.paths)
        self.pictures, self.unreadable, self.verdicts = {}, [], {}

    def picture(self, row):
        """The Picture of an index row, or None when its file can no longer be read."""
        if row not in self.pictures:
            try:
                self.pictures[row] = copies.read_picture(self.paths[row])
            except image_folders.UnreadableImage:
                self.pictures[row] = None
                self.unreadable.append(self.paths[row])
        return self.pictures[row]

    def keeper_order(self, row):
        """Sort key of the file to keep: the largest resolution, then the least compressed, then the oldest."""
        picture = self.picture(row)
        return (-picture.pixels, -picture.file_bytes / picture.pixels, picture.modified_ns, self.paths[row])

    def verdict(self, first, second):
        """copies.compare on two rows (either order), or a negative Verdict when either cannot be read."""
        key = (min(first, second), max(first, second))
        if key not in self.verdicts:
            pictures = self.picture(key[0]), self.picture(key[1])
            self.verdicts[key] = (copies.compare(*pictures) if None not in pictures
                                  else copies.NO_COPY)
        return self.verdicts[key]


def verified_pairs(pictures, candidates, distances):
    """The DuplicatePairs among candidate pairs (rows (P, 2), histogram distances (P,)) that copies.compare confirms."""
    candidates, distances = screened(pictures, candidates, distances)
    console.log(f"comparing the pixels of {len(candidates)} candidate pairs")
    found = []
    with console.progress(len(candidates), "comparing", unit="pair") as bar:
        for (first, second), distance in zip(candidates, distances):
            verdict = pictures.verdict(int(first), int(second))
            if verdict.copy:
                keep, copy = sorted((int(first), int(second)), key=pictures.keeper_order)
                found.append(DuplicatePair(keep, copy, float(distance), verdict))
            bar.update(1)
    return found


def screened(pictures, candidates, distances):
    """The candidate pairs (and their distances) worth a full comparison: those of unreadable files and
    small pictures that copies.frame_screen rules out are dropped."""
    count = len(pictures.paths)
    readable, small, aspects = np.zeros(count, bool), np.zeros(count, bool), np.ones(count)
    thumbnails = np.zeros((count, copies.THUMBNAIL_SIDE ** 2), np.float32)
    for row in np.unique(candidates):
        picture = pictures.picture(int(row))
        if picture is not None:
            readable[row], small[row], aspects[row], thumbnails[row] = True, picture.small, picture.aspect, picture.thumbnail
    first, second = candidates[:, 0], candidates[:, 1]
    keep = readable[first] & readable[second]
    screen = keep & (small[first] | small[second])
    for start in range(0, int(screen.sum()), SCREEN_BATCH):
        pairs = np.flatnonzero(screen)[start : start + SCREEN_BATCH]
        a, b = first[pairs], second[pairs]
        keep[pairs] = copies.frame_screen(thumbnails[a], thumbnails[b], aspects[a], aspects[b])
    return candidates[keep], distances[keep]


def duplicate_sets(pictures, pairs):
    """DuplicateSets from verified pairs: around each keeper in keeper order, every copy that is also a copy of the set's other members.

    Sets never chain: a~b and b~c put a and c in one set only when a~c holds too (compared here if it was
    not a candidate), so a set can be acted on as a whole.
    """
    linked = {}
    for pair in pairs:
        linked.setdefault(pair.keep, []).append(pair.copy)
        linked.setdefault(pair.copy, []).append(pair.keep)
    taken, sets = set(), []
    for keep in sorted(linked, key=pictures.keeper_order):
        if keep in taken:
            continue
        members = []
        for row in sorted(linked[keep], key=lambda row: -pictures.verdict(keep, row).correlation):
            if row not in taken and all(pictures.verdict(row, member).copy for member in members):
                members.append(row)
        if members:
            taken.update([keep, *members])
            sets.append(DuplicateSet(keep, tuple(members)))
    return sorted(sets, key=lambda found: (-len(found.copies), found.keep))


def find_duplicates(feature_index, max_distance, batch_size):
    """(DuplicatePairs closest first, DuplicateSets largest first) of an index: candidates by histogram, verified by pixels."""
    candidates, distances = candidate_pairs(feature_index, max_distance, batch_size)
    pictures = Pictures(feature_index)
    pairs = verified_pairs(pictures, candidates, distances)
    sets = duplicate_sets(pictures, pairs)
    if pictures.unreadable:
        console.warn(f"left out {len(pictures.unreadable)} indexed image(s) that could not be read, first: "
                     f"{pictures.unreadable[0]}; refresh the index with index_dataset.py --update")
    return pairs, sets
