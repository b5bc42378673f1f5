"""Duplicates in an index: candidate pairs close by their histograms, kept where their pixels show one picture, grouped into sets."""

import dataclasses
import os

import numpy as np

from imsearch import console, copies, descriptors, encoding, formats, graph, image_folders, vectors

# Candidate pairs screened at once: bounds the screen's memory at 60,000 images.
SCREEN_BATCH = 50_000
# Formats that store every pixel as it was: kept before a lossy copy of the same resolution, however small.
LOSSLESS_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff", *formats.RAW_EXTENSIONS)
# A copy is a crop of the other when at least this share of it lies in their overlap and less than
# CROPPED_COVERAGE of the other does: the other holds more of the picture and is kept, whatever the resolutions.
WHOLE_COVERAGE, CROPPED_COVERAGE = 0.97, 0.9


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
        self.pictures, self.unreadable, self.verdicts, self.files = {}, [], {}, {}
        self.crops = set()  # Rows verified to be a crop of another picture: never kept before it.

    def picture(self, row):
        """The Picture of an index row, or None when its file can no longer be read."""
        if row not in self.pictures:
            try:
                self.pictures[row] = copies.read_picture(self.paths[row])
                self.files[row] = image_folders.file_identity(self.paths[row])
            except (image_folders.UnreadableImage, OSError):
                self.pictures[row] = None
                self.unreadable.append(self.paths[row])
        return self.pictures[row]

    def keeper_order(self, row):
        """Sort key of the file to keep: not a crop of another, not a link, the largest resolution, lossless, the least
        compressed, the oldest."""
        picture = self.picture(row)
        return (row in self.crops, os.path.islink(self.paths[row]), -picture.pixels,
                not self.paths[row].lower().endswith(LOSSLESS_EXTENSIONS),
                -picture.file_bytes / picture.pixels, picture.modified_ns, self.paths[row])

    def verdict(self, first, second):
        """copies.compare on two rows (either order), or a negative Verdict when either cannot be read or both are one file."""
        key = (min(first, second), max(first, second))
        if key not in self.verdicts:
            pictures = self.picture(key[0]), self.picture(key[1])
            # Two paths of one file (a link, a hard link) are no copy: deleting either would lose the picture or free nothing.
            same_file = None not in pictures and self.files[key[0]] == self.files[key[1]]
            self.verdicts[key] = (copies.compare(*pictures) if None not in pictures and not same_file
                                  else copies.NO_COPY)
        return self.verdicts[key]

    def note_crop(self, first, second, verdict):
        """Remember which of a verified pair (first, second as verdict compared them) is a crop of the other, if either."""
        for row, own, other in ((first, *verdict.coverage), (second, *verdict.coverage[::-1])):
            if own >= WHOLE_COVERAGE and other < CROPPED_COVERAGE:
                self.crops.add(row)


def verified_pairs(pictures, candidates, distances):
    """The DuplicatePairs among candidate pairs (rows (P, 2), histogram distances (P,)) that copies.compare confirms."""
    candidates, distances = screened(pictures, candidates, distances)
    console.log(f"comparing the pixels of {len(candidates)} candidate pairs")
    verified = []
    with console.progress(len(candidates), "comparing", unit="pair") as bar:
        for (first, second), distance in zip(candidates, distances):
            first, second = int(first), int(second)
            verdict = pictures.verdict(first, second)
            if verdict.copy:
                low, high = min(first, second), max(first, second)  # The order verdict compared them in.
                pictures.note_crop(low, high, verdict)
                verified.append((first, second, float(distance), verdict))
            bar.update(1)
    # Oriented once every crop is known: which to keep depends on them.
    return [DuplicatePair(*sorted((first, second), key=pictures.keeper_order), distance, verdict)
            for first, second, distance, verdict in verified]


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
    """DuplicateSets from verified pairs: around each keeper in keeper order, every copy verified against it not yet in a set.

    Sets never chain: a~b and b~c put c in a's set only when a~c was verified too, so removing every copy of
    a set keeps a picture that each of them shows. A file is a member of one set at most, and never the
    keeper of another.
    """
    linked = {}
    for pair in pairs:
        linked.setdefault(pair.keep, []).append(pair.copy)
        linked.setdefault(pair.copy, []).append(pair.keep)
    taken, sets = set(), []
    for keep in sorted(linked, key=pictures.keeper_order):
        if keep in taken:
            continue
        members = [row for row in sorted(linked[keep], key=lambda row: -pictures.verdict(keep, row).correlation)
                   if row not in taken]
        if members:
            taken.update([keep, *members])
            sets.append(DuplicateSet(keep, tuple(members)))
    return sorted(sets, key=lambda found: (-len(found.copies), found.keep))


def copies_to_remove(pairs, sets):
    """The DuplicatePairs of each set's keeper with each of its copies, sets largest first, copies closest first.

    Each file appears at most once as a copy and never as the keeper of another set: removing every copy
    listed keeps one file of each picture. A verified pair of two copies, or of a copy and a file outside its
    set (a~b, b~c, where a~c was not verified), is left out.
    """
    by_rows = {frozenset((pair.keep, pair.copy)): pair for pair in pairs}
    return [by_rows[frozenset((found.keep, row))] for found in sets for row in found.copies]


def find_duplicates(feature_index, max_distance, batch_size):
    """(the copies to remove as DuplicatePairs with their keepers, DuplicateSets largest first) of an index.

    Candidates are found by histogram and verified by pixels; see copies_to_remove for the pairs.
    """
    candidates, distances = candidate_pairs(feature_index, max_distance, batch_size)
    pictures = Pictures(feature_index)
    pairs = verified_pairs(pictures, candidates, distances)
    sets = duplicate_sets(pictures, pairs)
    pairs = copies_to_remove(pairs, sets)
    if pictures.unreadable:
        console.warn(f"left out {len(pictures.unreadable)} indexed image(s) that could not be read, first: "
                     f"{pictures.unreadable[0]}; refresh the index with index_dataset.py --update")
    return pairs, sets
