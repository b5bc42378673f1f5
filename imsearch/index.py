"""The feature index: encode a folder into it, save, load, update and merge it safely."""

import dataclasses
import hashlib
import os

import numpy as np

from imsearch import InputError, console, encoding, graph, image_folders, locations, projection, ranking, safeio, vectors

FORMAT_VERSION = 5
# Format 4 differs only in float32 features and no projection fields, so it is read as it is.
READABLE_VERSIONS = (4, 5)
# With the approximate index, --update relinks rows one by one (each compared with every row) only while
# they are this share of the index at most; past it, finding the whole graph approximately is cheaper.
APPROXIMATE_RELINK_SHARE = 0.01
METRICS = ("euclidean", "cosine")


@dataclasses.dataclass(frozen=True)
class IndexingReport:
    """What one indexing run did: images in the index, images encoded anew, rows of the graph linked anew."""

    images: int
    encoded: int
    relinked: int


class MalformedIndex(ValueError):
    """A FeatureIndex whose fields do not fit together; the message says which."""


@dataclasses.dataclass
class FeatureIndex:
    """The features of every image of a folder, with what search needs beside them; validated when made.

    Saved as a pickled dict of these fields plus format_version (features in float16), read back with the
    restricted unpickler. A compact index stores its features projected (see projection.py).
    """

    dataset_dir: str  # Absolute: paths are relative to it.
    paths: list  # Relative paths with "/" separators, sorted.
    labels: list | None  # First-level folder of each path (None at the root), or None when no image is in one.
    stamps: np.ndarray  # (N, 2) int64 file size and mtime in ns, what --update compares.
    features: np.ndarray  # (N, D) float32, of float16 precision; (N, P) projected ones in a compact index.
    model_sha256: str  # The model file the features were made with.
    image_size: int
    channels: int
    histograms: bool  # Whether the features end with histograms (descriptors.histograms_length).
    shard: str | None = None  # "i/n" for a shard's index.
    neighbours: np.ndarray | None = None  # (N, K) rows of each row's nearest others, for diffusion.
    neighbour_similarities: np.ndarray | None = None  # (N, K) their cosine similarities.
    approximate_metric: str | None = None  # The metric of the faiss index saved beside the pickle.
    approximate_sha256: str | None = None  # Its SHA-256, so a mismatched pair is recognised.
    projection_mean: np.ndarray | None = None  # (D,) float32: a compact index's features are (x - mean) @ basis.
    projection_basis: np.ndarray | None = None  # (D, P) float32.

    def __post_init__(self):
        if isinstance(self.stamps, np.ndarray) and self.stamps.dtype.kind == "i":
            self.stamps = self.stamps.astype(np.int64, copy=False)
        if isinstance(self.features, np.ndarray) and self.features.dtype.kind == "f":
            self.features = self.features.astype(np.float32, copy=False)
        for name in ("projection_mean", "projection_basis"):
            value = getattr(self, name)
            if isinstance(value, np.ndarray) and value.dtype.kind == "f":
                setattr(self, name, value.astype(np.float32, copy=False))
        problem = self.problem()
        if problem:
            raise MalformedIndex(problem)

    def problem(self):
        """What does not fit together, or None."""
        count = len(self.paths) if isinstance(self.paths, list) else -1
        checks = (
            (isinstance(self.dataset_dir, str), "dataset_dir is not a path"),
            (count >= 0 and all(isinstance(path, str) for path in self.paths), "paths are not a list of strings"),
            (self.labels is None or (isinstance(self.labels, list) and len(self.labels) == count
                                     and all(label is None or isinstance(label, str) for label in self.labels)),
             "labels do not match its paths"),
            (isinstance(self.stamps, np.ndarray) and self.stamps.shape == (count, 2) and self.stamps.dtype == np.int64,
             "stamps do not match its paths"),
            (isinstance(self.features, np.ndarray) and self.features.ndim == 2 and self.features.shape[0] == count
             and self.features.dtype == np.float32, "features do not match its paths"),
            (isinstance(self.model_sha256, str), "model_sha256 is not a string"),
            (type(self.image_size) is int and self.image_size > 0 and type(self.channels) is int and self.channels in (1, 3), "bad image shape"),
            (type(self.histograms) is bool, "histograms is not a boolean"),
            (self.shard is None or isinstance(self.shard, str), "shard is not a string"),
            (self.graph_problem() is None, self.graph_problem()),
            (self.approximate_metric is None or (isinstance(self.approximate_metric, str) and self.approximate_metric in METRICS),
             "unknown approximate_metric"),
            (self.approximate_sha256 is None or isinstance(self.approximate_sha256, str), "approximate_sha256 is not a string"),
            (self.projection_problem() is None, self.projection_problem()),
        )
        return next((message for ok, message in checks if not ok), None)

    def graph_problem(self):
        """What is wrong with the neighbour graph, or None when it is absent or two (N, K) arrays of rows in range."""
        neighbours, similarities = self.neighbours, self.neighbour_similarities
        if neighbours is None and similarities is None:
            return None
        count = len(self.paths) if isinstance(self.paths, list) else -1
        well_formed = (
            isinstance(neighbours, np.ndarray) and isinstance(similarities, np.ndarray)
            and neighbours.ndim == 2 and neighbours.shape == similarities.shape and neighbours.shape[0] == count
            and neighbours.dtype.kind == "i" and similarities.dtype.kind == "f"
            and (neighbours.size == 0 or (neighbours.min() >= 0 and neighbours.max() < count))
        )
        return None if well_formed else "neighbour graph does not match its paths"

    def projection_problem(self):
        """What is wrong with the projection, or None when it is absent or a (D,) mean and (D, P) basis for (N, P) features."""
        mean, basis = self.projection_mean, self.projection_basis
        if mean is None and basis is None:
            return None
        well_formed = (
            isinstance(mean, np.ndarray) and isinstance(basis, np.ndarray) and mean.dtype == np.float32
            and basis.dtype == np.float32 and mean.ndim == 1 and basis.shape == (len(mean), getattr(self.features, "shape", (0, -1))[-1])
        )
        return None if well_formed else "projection does not match its features"

    @property
    def compact(self):
        """Whether the features are stored projected."""
        return self.projection_basis is not None

    def projected_like(self, other):
        """Whether the two indexes store features alike: both in full, or both projected with the same mean and basis."""
        if not (self.compact or other.compact):
            return True
        return (self.compact and other.compact and np.array_equal(self.projection_mean, other.projection_mean)
                and np.array_equal(self.projection_basis, other.projection_basis))

    def as_stored(self, features):
        """Features of new images (queries, changed files) in the form this index stores its own."""
        if self.compact:
            return projection.project(features, self.projection_mean, self.projection_basis)
        return projection.stored_precision(features)

    def to_dict(self):
        """The fields as the plain dict that is pickled, features in float16 (no copy of the other arrays)."""
        fields = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        return {"format_version": FORMAT_VERSION} | fields | {"features": self.features.astype(np.float16)}

    @classmethod
    def from_dict(cls, saved):
        """A FeatureIndex from an unpickled dict; MalformedIndex when it is not one of this format."""
        if not isinstance(saved, dict) or "format_version" not in saved:
            raise MalformedIndex("not an index of this suite")
        version = saved["format_version"]
        if not (type(version) is int and version in READABLE_VERSIONS):
            raise MalformedIndex(f"index format {version!r}, expected {FORMAT_VERSION}")
        names = {field.name for field in dataclasses.fields(cls)}
        required = {field.name for field in dataclasses.fields(cls) if field.default is dataclasses.MISSING}
        if not required <= saved.keys() or not saved.keys() - {"format_version"} <= names:
            raise MalformedIndex("not an index of this suite")
        return cls(**{name: value for name, value in saved.items() if name != "format_version"})

    @property
    def count(self):
        """How many images the index holds."""
        return len(self.paths)


def file_stamp(path):
    """(size, mtime in ns) of a file, or (-1, -1) when it cannot be stat'ed: what --update compares."""
    try:
        status = os.stat(path)
    except OSError:
        return (-1, -1)
    return (status.st_size, status.st_mtime_ns)


def build_index(encoder, dataset_dir, model_sha256, batch_size, previous=None, shard=None, histograms=False,
                fitted_projection=None):
    """Encode the images of dataset_dir into a FeatureIndex, skipping unreadable files with a warning.

    previous: an index of the same model whose rows are kept for unchanged files (path, size, mtime).
    shard: (i, n) to take only every n-th image from the i-th, so n machines can share a folder.
    histograms: append gradient and colour histograms to the encoder's features (see encoding.make_encode_function).
    fitted_projection: (mean, basis) to store the features projected with, when there is no previous index.
    The neighbour graph for diffusion is left empty; with_neighbour_graph fills it.
    Returns the index and how many images were encoded (the others were reused from previous).
    """
    if previous is not None and previous.histograms != histograms:
        previous = None  # Its rows hold other features than these: nothing can be reused.
    relative_paths, labels = image_folders.list_images(dataset_dir)
    if shard is not None:
        relative_paths = relative_paths[shard[0] :: shard[1]]
        labels = None if labels is None else labels[shard[0] :: shard[1]]
    paths = image_folders.full_paths(dataset_dir, relative_paths)
    image_folders.warn_if_colour_for_gray_model(paths, encoder.channels, f"the images of {dataset_dir}")
    if previous is None:
        stamps = np.full((len(paths), 2), -1, dtype=np.int64)  # Filled in by the reads: no second stat per file.
    else:
        stamps = np.array([file_stamp(path) for path in paths], dtype=np.int64).reshape(-1, 2)
    reusable = reusable_rows(previous, relative_paths, stamps)
    pending = [position for position, row in enumerate(reusable) if row < 0]
    console.log(f"encoding {len(pending)} images of {dataset_dir} ({len(paths) - len(pending)} unchanged)")
    new_features, readable = encoding.encode_paths(
        encoder, [paths[position] for position in pending], batch_size, histograms=histograms,
        stamps=stamps if previous is None else None,  # Without a previous index every path is pending, in order.
    )
    unreadable = [pending[i] for i in np.flatnonzero(~readable)]
    if unreadable:
        console.warn(f"skipped {len(unreadable)} unreadable image(s) of {len(paths)}, first: {paths[unreadable[0]]}")
    # New rows are stored as the previous index stores its own (projected when it is compact).
    if previous is not None:
        fitted_projection = (previous.projection_mean, previous.projection_basis) if previous.compact else None
    if fitted_projection is None:
        new_features = projection.stored_precision(new_features)
    else:
        new_features = projection.project(new_features, *fitted_projection)
    kept = sorted(set(range(len(paths))) - set(unreadable))
    if not kept:
        raise InputError(f"{dataset_dir}: none of the {len(paths)} images is readable; check the folder")
    reused = [position for position, row in enumerate(reusable) if row >= 0]
    image_size, channels = encoder.image_size, encoder.channels
    if reused:
        # Folder order, new features where files were encoded and the previous index's where unchanged.
        features = np.zeros((len(paths), new_features.shape[1]), np.float32)
        features[[pending[i] for i in np.flatnonzero(readable)]] = new_features
        features[reused] = previous.features[[reusable[position] for position in reused]]
        features = features[kept]
    else:
        features = new_features  # Every file was encoded in folder order: no copy of the largest array.
    return FeatureIndex(
        dataset_dir=os.path.abspath(dataset_dir),
        paths=[relative_paths[i] for i in kept],
        labels=None if labels is None else [labels[i] for i in kept],
        stamps=stamps if len(kept) == len(paths) else stamps[kept],
        features=features,
        model_sha256=model_sha256,
        image_size=int(image_size),
        channels=int(channels),
        histograms=bool(histograms),
        shard=None if shard is None else f"{shard[0]}/{shard[1]}",
        projection_mean=None if fitted_projection is None else fitted_projection[0],
        projection_basis=None if fitted_projection is None else fitted_projection[1],
    ), len(pending) - len(unreadable)


def index_folder(encoder, model_sha256, dataset_dir, index_path, batch_size, previous=None, shard=None, histograms=True,
                 compact_above=10_000, compact_length=256, approximate="auto", approximate_above=200_000, diffusion=True,
                 metric="cosine", encoded_index=None):
    """Encode a folder (or what changed since previous), compact, link and save its index; returns an IndexingReport.

    encoded_index: an index already encoded elsewhere (the shards of a Ray run, merged), to finish and save.
    """
    if encoded_index is None:
        feature_index, encoded = build_index(encoder, dataset_dir, model_sha256, batch_size, previous, shard, histograms)
    else:
        feature_index, encoded = encoded_index, encoded_index.count
    feature_index = compacted(feature_index, compact_above, compact_length)
    approximate_index = approximate_index_for(feature_index, approximate, approximate_above, metric)
    relinked = 0
    if diffusion:
        feature_index, relinked = linked_for_diffusion(feature_index, previous, approximate_index, approximate_above, metric)
    feature_index = save_index(feature_index, index_path, approximate_index, metric)
    count, length = feature_index.features.shape
    beside = " with an approximate index beside it" if feature_index.approximate_sha256 else ""
    console.log(f"indexed {count} images ({length} features each) to {index_path}{beside}")
    return IndexingReport(images=count, encoded=encoded, relinked=relinked)


def compacted(feature_index, compact_above, length):
    """The index with its features projected onto `length` principal components when it holds compact_above images or more.

    A compact index keeps its projection: --update projects new images with it, so unchanged rows keep their
    features and neighbours. Shards stay in full, since each would fit a projection of its own.
    """
    # One image has no principal components to fit.
    if feature_index.compact or feature_index.shard is not None or feature_index.count < max(compact_above, 2):
        return feature_index
    console.log(f"fitting the principal components of {min(feature_index.count, projection.FIT_SAMPLE)} images' features")
    mean, basis = projection.fit_projection(feature_index.features, length)
    console.log(f"projecting the features of {feature_index.count} images onto their {basis.shape[1]} principal components")
    return dataclasses.replace(feature_index, features=projection.project(feature_index.features, mean, basis),
                               projection_mean=mean, projection_basis=basis)


def with_neighbour_graph(feature_index, previous=None, approximate=None):
    """(the index with each row's nearest neighbours by cosine similarity, for diffusion; rows linked anew).

    previous: the index this one updates; its graph is reused for the rows it holds unchanged.
    approximate: a faiss index over the unit-length features (cosine); when given, a graph built anew is
    found with it instead of exactly, which takes O(N^2).
    """
    count = feature_index.count
    neighbours = graph.neighbour_count(count)
    how = "approximately, " if approximate is not None else ""
    console.log(f"linking each of {count} images to its {neighbours} nearest, {how}for diffusion")

    def whole_graph(features, neighbours):
        if approximate is None:
            return graph.neighbour_graph(features, neighbours)
        return ranking.approximate_neighbour_graph(approximate, vectors.postprocess_features(features, "cosine"), neighbours)

    previous_graph = None if previous is None else previous.neighbours
    if (previous_graph is None or previous_graph.shape[1] != neighbours or previous.histograms != feature_index.histograms
            or not previous.projected_like(feature_index)):
        rows, similarities = whole_graph(feature_index.features, neighbours)
        relinked = count
    else:
        previous_rows = np.array(reusable_rows(previous, feature_index.paths, feature_index.stamps), dtype=np.int64)
        share = 0.5 if approximate is None else APPROXIMATE_RELINK_SHARE
        rows, similarities, relinked = graph.update_neighbour_graph(
            feature_index.features, previous_rows, previous_graph, previous.neighbour_similarities, whole_graph, share
        )
        if relinked < count:
            console.log(f"relinked {relinked} of {count} images; the others kept their neighbours from the previous index")
    return dataclasses.replace(feature_index, neighbours=rows, neighbour_similarities=similarities), relinked


def projection_of_sample(encoder, dataset_dir, batch_size, histograms, length, seed=0):
    """(mean, basis) fitted on the features of a seeded sample of the folder's images, for shards to share."""
    relative_paths, _ = image_folders.list_images(dataset_dir)
    chosen = np.sort(np.random.default_rng(seed).permutation(len(relative_paths))[: projection.FIT_SAMPLE])
    console.log(f"fitting the projection shared by every shard on {len(chosen)} images of {dataset_dir}")
    features, readable = encoding.encode_paths(encoder, image_folders.full_paths(dataset_dir, [relative_paths[i] for i in chosen]),
                                               batch_size, histograms=histograms)
    if not readable.all():
        console.warn(f"the projection's sample left out {int((~readable).sum())} unreadable image(s) of {len(chosen)}")
    if len(features) < 2:
        raise InputError(f"{dataset_dir}: fewer than two of its images are readable; check the folder")
    # Fitted on the features at the precision they are stored in, as compacted() fits a whole index.
    return projection.fit_projection(projection.stored_precision(features), length)


def linked_for_diffusion(feature_index, previous, approximate, approximate_above, metric):
    """(the index with its neighbour graph, rows linked anew), linked as its size allows; shards stay unlinked.

    Below approximate_above the graph is exact; from there on it is found with the approximate index when
    that ranks by cosine, since the exact graph costs O(N^2); without one the index gets no graph.
    """
    large = feature_index.count >= approximate_above
    linker = approximate if large and metric == "cosine" else None
    if feature_index.shard is not None or (large and linker is None):
        return feature_index, 0
    return with_neighbour_graph(feature_index, previous, linker)


def reusable_rows(previous, relative_paths, stamps):
    """For each path, the row of previous holding it unchanged (same size and mtime), else -1.

    stamps: (N, 2) sizes and mtimes of relative_paths now, -1 where a file could not be stat'ed.
    """
    if previous is None or not previous.paths:
        return [-1] * len(relative_paths)
    previous_rows = {path: row for row, path in enumerate(previous.paths)}
    rows = np.array([previous_rows.get(path, -1) for path in relative_paths], dtype=np.int64)
    unchanged = (rows >= 0) & (stamps[:, 0] >= 0) & (previous.stamps[rows] == stamps).all(axis=1)
    return np.where(unchanged, rows, -1).tolist()


def parse_shard(text):
    """'i/n' as (i, n) with 0 <= i < n; InputError otherwise."""
    try:
        shard_index, shard_count = (int(part) for part in text.split("/"))
    except ValueError:
        raise InputError(f"--shard must look like i/n (for example 0/4), got {text!r}") from None
    if not 0 <= shard_index < shard_count:
        raise InputError(f"--shard i/n needs 0 <= i < n, got {text!r}")
    return shard_index, shard_count


def approximate_path_for(index_path):
    """Where the approximate index lives beside the pickle: output/features.pkl -> output/features.ivf."""
    return os.path.splitext(index_path)[0] + ".ivf"


def approximate_index_for(feature_index, approximate="never", approximate_above=0, metric="cosine"):
    """A faiss approximate index over the features as ranked by metric, when asked or the index is large enough; else None."""
    if approximate == "always" or (approximate == "auto" and feature_index.count >= approximate_above):
        return ranking.build_approximate(vectors.postprocess_features(feature_index.features, metric))
    return None


def save_index(feature_index, index_path, approximate=None, metric="cosine"):
    """Write the index atomically, with the faiss approximate index (by metric) beside it when one is given.

    The approximate index ranks by metric (for cosine, it holds unit-length features) and only serves
    searches by that metric. It is written first and its SHA-256 recorded in the pickle, so a crash between
    the two leaves a pair that search recognises as mismatched and answers exactly instead.
    Returns the index as saved.
    """
    approximate_path = approximate_path_for(index_path)
    feature_index = dataclasses.replace(feature_index, approximate_metric=None, approximate_sha256=None)
    if approximate is not None:
        import faiss

        payload = faiss.serialize_index(approximate).tobytes()
        safeio.atomic_write_bytes(approximate_path, payload)
        feature_index = dataclasses.replace(feature_index, approximate_metric=metric,
                                            approximate_sha256=hashlib.sha256(payload).hexdigest())
    safeio.atomic_pickle(index_path, feature_index.to_dict())
    if feature_index.approximate_sha256 is None and os.path.exists(approximate_path):
        os.remove(approximate_path)
    return feature_index


def load_approximate(index_path, feature_index):
    """The faiss index beside index_path if the pickle vouches for it (same SHA-256), else None.

    Its inverted lists are memory-mapped rather than read: a search touches only the lists it probes, so
    the index adds to search's memory only what the queries read.
    """
    if feature_index.approximate_sha256 is None:
        return None
    approximate_path = approximate_path_for(index_path)
    digest, hashed = hashlib.sha256(), None
    try:
        with open(approximate_path, "rb") as file:
            for chunk in iter(lambda: file.read(2**20), b""):
                digest.update(chunk)
            hashed = os.fstat(file.fileno())
    except OSError:
        pass
    approximate = None
    if hashed is not None and digest.hexdigest() == feature_index.approximate_sha256:
        import faiss

        try:
            approximate = faiss.read_index(approximate_path, faiss.IO_FLAG_MMAP)
            mapped = os.stat(approximate_path)
        except (RuntimeError, OSError):  # A file system that cannot map it, or the file gone since.
            approximate, mapped = None, None
        # The file mapped must be the one hashed: a re-index may have renamed a new one over it in between.
        if mapped is None or (mapped.st_ino, mapped.st_mtime_ns) != (hashed.st_ino, hashed.st_mtime_ns) \
                or approximate.ntotal != feature_index.count:
            approximate = None
    if approximate is None:
        console.warn(f"{approximate_path}: missing or not the one this index was saved with; searching exactly")
    return approximate


def merge_indexes(indexes, index_paths):
    """One index from shard indexes of the same model and folder, rows in path order; no graph, no approximate part."""
    first = indexes[0]
    for shard, path in zip(indexes, index_paths):
        if shard.shard is None:
            raise InputError(f"{path}: a whole index, not a shard; pass only the shards index_dataset.py --shard wrote")
        # Rows projected differently cannot be ranked together (shards projected alike come from --workers).
        if not shard.projected_like(first):
            raise InputError(f"{path}: its features are projected unlike those of {index_paths[0]}; "
                             "pass shards of one indexing run")
    for other, path in zip(indexes[1:], index_paths[1:]):
        if (other.model_sha256, other.dataset_dir) != (first.model_sha256, first.dataset_dir):
            raise InputError(f"{path}: another model or folder than {index_paths[0]}; pass shards of one indexing run")
        if other.histograms != first.histograms:
            raise InputError(f"{path}: indexed {'with' if other.histograms else 'without'} histograms, unlike "
                             f"{index_paths[0]}; index every shard with the same --histograms setting")
    paths = [path for shard in indexes for path in shard.paths]
    if len(set(paths)) < len(paths):
        raise InputError(f"{index_paths[0]}: an image is in two of the shards given; pass each shard of one run once")
    order = np.argsort(np.array(paths, dtype=object), kind="stable")
    labelled = all(shard.labels is not None for shard in indexes)
    labels = [label for shard in indexes for label in shard.labels] if labelled else None
    return dataclasses.replace(
        first, paths=[paths[i] for i in order], labels=None if labels is None else [labels[i] for i in order],
        stamps=np.concatenate([shard.stamps for shard in indexes])[order],
        features=np.concatenate([shard.features for shard in indexes])[order],
        shard=None, neighbours=None, neighbour_similarities=None, approximate_metric=None, approximate_sha256=None,
    )


def load_indexes(index_paths, encoder=None, model_sha256=None):
    """The index at each path, loaded as load_index does, and shards merged into one."""
    indexes = [load_index(path, encoder, model_sha256) for path in index_paths]
    return merge_indexes(indexes, index_paths) if len(indexes) > 1 else indexes[0]


def load_index(index_path, encoder=None, model_sha256=None):
    """Read an index with the restricted unpickler and check it belongs to the given model (its encoding.Encoder)."""
    if not os.path.isfile(index_path):
        raise safeio.missing_file_error(index_path, "index", locations.INDEX_FILE, "index_dataset.py", "--index",
                                        f"make it with index_dataset.py --index {index_path}")
    try:
        feature_index = FeatureIndex.from_dict(safeio.restricted_load(index_path))
    except MalformedIndex as problem:
        raise InputError(f"{index_path}: {problem}; rebuild it with index_dataset.py") from None
    if model_sha256 is not None and feature_index.model_sha256 != model_sha256:
        raise InputError(f"{index_path}: made with another model than the one given; rebuild it with index_dataset.py --model")
    if encoder is not None:
        expected = (encoder.image_size, encoder.channels, encoding.feature_length(encoder, feature_index.histograms))
        # A compact index's projection takes the model's features: its basis has one row per feature.
        length = feature_index.projection_basis.shape[0] if feature_index.compact else feature_index.features.shape[1]
        found = (feature_index.image_size, feature_index.channels, length)
        if found != expected:
            raise InputError(f"{index_path}: image size, channels, feature length {found} do not match the model's {expected}; rebuild it")
    return feature_index
