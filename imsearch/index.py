"""The feature index: what it holds, checked where it is made, and saving, loading and merging it safely."""

import dataclasses
import hashlib
import operator
import os
import re

import numpy as np

from imsearch import InputError, console, encoding, graph, locations, projection, safeio

FORMAT_VERSION = 6
# Format 4 differs only in float32 features and no projection fields, format 5 in no spectrum of the graph (its
# diffusion then runs by conjugate-gradient steps), so both are read as they are.
READABLE_VERSIONS = (4, 5, 6)
METRICS = ("euclidean", "cosine")


class MalformedIndex(ValueError):
    """A FeatureIndex whose fields do not fit together; the message says which."""


# Between NUL separators: an empty path, an absolute one, or one that steps out of its folder by "..".
OUTSIDE_FOLDER = ("\0\0", "\0/", "\0../", "\0..\0", "/../", "/..\0")


def paths_within_folder(paths):
    """Whether relative paths are sorted, distinct and each inside its folder: none empty, absolute, with '..' or NUL."""
    joined = "\0" + "\0".join(paths) + "\0"  # One string: its scans run in C, not once per path (1,000,000 of them).
    return (joined.count("\0") == len(paths) + 1 and not any(pattern in joined for pattern in OUTSIDE_FOLDER)
            and all(map(operator.lt, paths, paths[1:])))


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
    diffusion_basis: np.ndarray | None = None  # (N, R) float32 of float16 precision: the graph's leading eigenvectors.
    diffusion_eigenvalues: np.ndarray | None = None  # (R,) float32, their eigenvalues (graph.spectrum_of).

    def __post_init__(self):
        if isinstance(self.stamps, np.ndarray) and self.stamps.dtype.kind == "i":
            self.stamps = self.stamps.astype(np.int64, copy=False)
        if isinstance(self.features, np.ndarray) and self.features.dtype.kind == "f":
            self.features = self.features.astype(np.float32, copy=False)
        for name in ("neighbour_similarities", "projection_mean", "projection_basis", "diffusion_basis", "diffusion_eigenvalues"):
            value = getattr(self, name)
            if isinstance(value, np.ndarray) and value.dtype.kind == "f":
                setattr(self, name, value.astype(np.float32, copy=False))
        problem = self.problem()
        if problem:
            raise MalformedIndex(problem)

    def problem(self):
        """What does not fit together, or None: the first check that fails, each run only once those before it pass."""
        count = len(self.paths) if isinstance(self.paths, list) else -1
        checks = (
            (lambda: isinstance(self.dataset_dir, str) and os.path.isabs(self.dataset_dir) and "\0" not in self.dataset_dir,
             "dataset_dir is not an absolute path"),
            (lambda: count >= 0 and all(isinstance(path, str) for path in self.paths), "paths are not a list of strings"),
            (lambda: paths_within_folder(self.paths), "paths are not sorted, distinct and inside dataset_dir"),
            (lambda: self.labels is None or (isinstance(self.labels, list) and len(self.labels) == count
                                             and all(label is None or isinstance(label, str) for label in self.labels)),
             "labels do not match its paths"),
            (lambda: isinstance(self.stamps, np.ndarray) and self.stamps.shape == (count, 2) and self.stamps.dtype == np.int64,
             "stamps do not match its paths"),
            (lambda: isinstance(self.features, np.ndarray) and self.features.ndim == 2 and self.features.shape[0] == count
             and self.features.dtype == np.float32, "features do not match its paths"),
            # NaN and infinity carry into the sum; float64 cannot overflow on float32 values.
            (lambda: bool(np.isfinite(self.features.sum(dtype=np.float64))), "features are not all finite"),
            (lambda: isinstance(self.model_sha256, str), "model_sha256 is not a string"),
            (lambda: type(self.image_size) is int and 8 <= self.image_size <= 1024 and type(self.channels) is int
             and self.channels in (1, 3), "bad image shape"),
            (lambda: type(self.histograms) is bool, "histograms is not a boolean"),
            (lambda: self.shard is None or isinstance(self.shard, str), "shard is not a string"),
            (lambda: self.approximate_metric is None or (isinstance(self.approximate_metric, str)
                                                         and self.approximate_metric in METRICS), "unknown approximate_metric"),
            (lambda: self.approximate_sha256 is None or isinstance(self.approximate_sha256, str), "approximate_sha256 is not a string"),
        )
        failed = next((message for check, message in checks if not check()), None)
        return failed or self.graph_problem() or self.projection_problem() or self.spectrum_problem()

    def graph_problem(self):
        """What is wrong with the neighbour graph, or None when it is absent or two (N, K) arrays of rows in range."""
        neighbours, similarities = self.neighbours, self.neighbour_similarities
        if neighbours is None and similarities is None:
            return None
        count = len(self.paths) if isinstance(self.paths, list) else -1
        well_formed = (
            isinstance(neighbours, np.ndarray) and isinstance(similarities, np.ndarray)
            and neighbours.ndim == 2 and neighbours.shape == similarities.shape and neighbours.shape[0] == count
            and neighbours.dtype.kind == "i" and similarities.dtype == np.float32
            and (neighbours.size == 0 or (neighbours.min() >= 0 and neighbours.max() < count))
            and bool((np.abs(similarities) <= 1.001).all())  # Cosine similarities; False for NaN too.
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
            and bool(np.isfinite(mean).all()) and bool(np.isfinite(basis).all())
        )
        return None if well_formed else "projection does not match its features"

    def spectrum_problem(self):
        """What is wrong with the graph's spectrum, or None when it is absent or an (N, R) basis and (R,) eigenvalues beside a graph."""
        basis, eigenvalues = self.diffusion_basis, self.diffusion_eigenvalues
        if basis is None and eigenvalues is None:
            return None
        count = len(self.paths) if isinstance(self.paths, list) else -1
        # Eigenvalues of D^-1/2 W D^-1/2 lie in [-1, 1]; from 1 / alpha on, (1 - alpha lambda)^-1 would blow up.
        well_formed = (
            isinstance(basis, np.ndarray) and isinstance(eigenvalues, np.ndarray)
            and isinstance(self.neighbours, np.ndarray) and self.neighbours.size > 0
            and basis.dtype == np.float32 and eigenvalues.dtype == np.float32 and eigenvalues.ndim == 1
            and basis.shape == (count, len(eigenvalues)) and 0 < len(eigenvalues) < count
            and bool(np.isfinite(basis).all()) and bool((np.abs(eigenvalues) <= 1.001).all())
        )
        return None if well_formed else "the graph's spectrum does not match its graph"

    def diffusion_graph(self):
        """The graph.DiffusionGraph of the index's neighbour graph, with its spectrum when it keeps one; None without a graph."""
        spectrum = None if self.diffusion_basis is None else (self.diffusion_basis, self.diffusion_eigenvalues)
        return graph.diffusion_graph_of(self.neighbours, self.neighbour_similarities, spectrum)

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
        spectrum = {} if self.diffusion_basis is None else {"diffusion_basis": self.diffusion_basis.astype(np.float16)}
        return {"format_version": FORMAT_VERSION} | fields | {"features": self.features.astype(np.float16)} | spectrum

    @classmethod
    def from_dict(cls, saved):
        """A FeatureIndex from an unpickled dict; MalformedIndex when it is not one of this format."""
        if not isinstance(saved, dict) or "format_version" not in saved:
            raise MalformedIndex("not an index of this suite")
        version = saved["format_version"]
        if not (type(version) is int and version in READABLE_VERSIONS):
            # Only a small number is shown: a huge or deeply nested one cannot even be printed.
            shown = version if type(version) is int and abs(version) < 10**6 else "of another kind"
            raise MalformedIndex(f"index format {shown}, expected {FORMAT_VERSION}")
        names = {field.name for field in dataclasses.fields(cls)}
        required = {field.name for field in dataclasses.fields(cls) if field.default is dataclasses.MISSING}
        if not required <= saved.keys() or not saved.keys() - {"format_version"} <= names:
            raise MalformedIndex("not an index of this suite")
        return cls(**{name: value for name, value in saved.items() if name != "format_version"})

    @property
    def count(self):
        """How many images the index holds."""
        return len(self.paths)


def approximate_path_for(index_path):
    """Where the approximate index lives beside the pickle: output/features.pkl -> output/features.ivf."""
    return os.path.splitext(index_path)[0] + ".ivf"


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
        diffusion_basis=None, diffusion_eigenvalues=None,
    )


def load_indexes(index_paths, encoder=None, model_sha256=None):
    """The index at each path, loaded as load_index does, and shards merged into one (a warning when some are missing)."""
    indexes = [load_index(path, encoder, model_sha256) for path in index_paths]
    warn_of_missing_shards([feature_index.shard for feature_index in indexes])
    return merge_indexes(indexes, index_paths) if len(indexes) > 1 else indexes[0]


def warn_of_missing_shards(shards):
    """Warn when shard indexes ("i/n") given together leave out some of their folder's shards."""
    parsed = [tuple(int(part) for part in shard.split("/")) for shard in shards
              if shard is not None and re.fullmatch(r"[0-9]+/[0-9]+", shard)]
    counts = {count for _, count in parsed}
    if len(counts) == 1:
        count = counts.pop()
        missing = sorted(set(range(count)) - {number for number, _ in parsed})
        if missing:
            console.warn(f"searching {len(parsed)} of the {count} shards of the folder: shard(s) "
                         f"{', '.join(f'{number}/{count}' for number in missing[:5])}{', ...' if len(missing) > 5 else ''} "
                         "not given; pass every --index of the run to search all its images")


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
