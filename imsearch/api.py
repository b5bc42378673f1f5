"""The suite from Python: a run folder opened once, then searched with paths or images, its duplicates found, its index updated.

    import imsearch
    run = imsearch.open_run("output")
    for hit in run.search("query.jpg", top_k=5)[0]:
        print(hit.path, hit.distance)

No TensorFlow is imported: the encoder runs with onnxruntime on the export train.py wrote beside the model.
"""

import dataclasses
import os

import numpy as np

from imsearch import InputError, duplicates, encoding, image_folders, index, indexing, locations, ranking, runtime, safeio, vectors

# What a search returns when nothing else is asked for, as search.py's --top-k.
TOP_K = 10
BATCH_SIZE = 256


@dataclasses.dataclass(frozen=True)
class Hit:
    """One image found for a query: its path, and the distance it was ranked by (search.py --help, --diffusion)."""

    path: str
    distance: float


@dataclasses.dataclass(frozen=True)
class Duplicate:
    """Two indexed files verified to be copies of one picture: the one to keep first, then the copy."""

    keep: str
    copy: str
    distance: float


def open_run(run_folder="output", model_path="", index_path=""):
    """A Run on a run folder: its model and index (or those given), ready to search."""
    return Run(model_path or os.path.join(run_folder, locations.MODEL_FILE),
               index_path or os.path.join(run_folder, locations.INDEX_FILE))


class Run:
    """A trained model and its index, loaded once: search, find duplicates, update the index."""

    def __init__(self, model_path, index_path):
        self.model_path, self.index_path = model_path, index_path
        self.encoder = runtime.open_encoder(model_path)
        self.reload()

    def reload(self):
        """Read the index again, as it is on disk now."""
        self.index = index.load_index(self.index_path, self.encoder, safeio.sha256_of_file(self.model_path))
        self.approximate = index.load_approximate(self.index_path, self.index)
        if self.approximate is not None and self.index.approximate_metric != "cosine":
            self.approximate = None
        self.index.features = vectors.postprocess_features(self.index.features, "cosine", in_place=True)
        self.diffusion_graph = self.index.diffusion_graph()

    def search(self, queries, top_k=TOP_K, diffusion=True):
        """Per query, its hits nearest first; a query is an image file's path or an RGB or gray uint8 array.

        Ranked as search.py ranks (cosine, each row by the nearer of the query and its mirror image, then diffusion
        over the index's neighbour graph); an indexed file given as a query never finds itself.
        """
        queries = [queries] if isinstance(queries, (str, os.PathLike, np.ndarray)) else list(queries)
        if not queries:
            return []
        paths = [os.fspath(query) for query in queries if not isinstance(query, np.ndarray)]
        images = [query for query in queries if isinstance(query, np.ndarray)]
        features, mirrored = np.zeros((0, self.index_length()), np.float32), np.zeros((0, self.index_length()), np.float32)
        if paths:
            features, mirrored, readable = encoding.encode_queries(self.encoder, paths, BATCH_SIZE, self.index.histograms)
            if not readable.all():
                unreadable = paths[int(np.flatnonzero(~readable)[0])]
                raise InputError(f"{unreadable}: {image_folders.why_unreadable(unreadable)}")
        if images:
            image_features, image_mirrored = encoding.encode_images(self.encoder, images, self.index.histograms)
            features, mirrored = np.concatenate([features, image_features]), np.concatenate([mirrored, image_mirrored])
        exclude = np.concatenate([ranking.rows_of_queries(self.index, paths), np.full(len(images), -1)]).astype(np.int64)
        both = vectors.postprocess_features(self.index.as_stored(np.concatenate([features, mirrored])), "cosine")
        rows, distances = ranking.rank_batch(both, exclude, self.index.features, min(top_k, self.index.count), "cosine",
                                             self.approximate, self.diffusion_graph if diffusion else None)
        # Results in the order the queries were given: paths were encoded first, then the arrays.
        order = [position for position, query in enumerate(queries) if not isinstance(query, np.ndarray)] + \
                [position for position, query in enumerate(queries) if isinstance(query, np.ndarray)]
        hits = [None] * len(queries)
        for position, hit_rows, hit_distances in zip(order, rows, distances):
            hits[position] = [Hit(self.path_of(row), max(float(distance), 0.0))
                              for row, distance in zip(hit_rows, hit_distances) if row >= 0]
        return hits

    def duplicates(self, max_distance=0.4):
        """Each copy of a picture in the index once, beside the file to keep, as search.py --duplicates prints them."""
        if not self.index.histograms:
            raise InputError(f"{self.index_path}: holds no histograms (indexed with --no-histograms), which duplicates compares")
        pairs, _ = duplicates.find_duplicates(self.index, max_distance, BATCH_SIZE)
        return [Duplicate(self.path_of(pair.keep), self.path_of(pair.copy), float(pair.distance)) for pair in pairs]

    def update(self, dataset_dir=""):
        """Index the indexed folder (or dataset_dir, its new place) again, encoding only new and changed files, kept in
        the index's own form; an IndexingReport."""
        previous = index.load_index(self.index_path, self.encoder, safeio.sha256_of_file(self.model_path))
        dataset_dir = dataset_dir or previous.dataset_dir
        if not os.path.isdir(dataset_dir):
            raise InputError(f"{dataset_dir}: no such folder; if the indexed folder moved, pass its new place: "
                             "update(dataset_dir=...)")
        report = indexing.index_folder(
            self.encoder, previous.model_sha256, os.fspath(dataset_dir), self.index_path, BATCH_SIZE, previous,
            shard=None if previous.shard is None else indexing.parse_shard(previous.shard), histograms=previous.histograms, compact_above=2 if previous.compact else previous.count + 2 ** 40,
            approximate="always" if previous.approximate_metric else "never",
            diffusion=previous.neighbours is not None, metric=previous.approximate_metric or "cosine",
        )
        self.reload()
        return report

    def index_length(self):
        """Length of a query's features before they are stored like the index's own."""
        return encoding.feature_length(self.encoder, self.index.histograms)

    def path_of(self, row):
        """The file of an index row."""
        return os.path.join(self.index.dataset_dir, self.index.paths[row])
