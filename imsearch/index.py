"""The feature index: encode a folder into it, save, load, update and merge it safely."""

import hashlib
import os
import sys

import numpy as np

from imsearch import InputError, data, encoding, graph, model, ranking, safeio, vectors

FORMAT_VERSION = 3
REQUIRED_KEYS = ("format_version", "paths", "labels", "stamps", "features", "model_sha256", "image_size", "channels",
                 "histograms", "neighbours", "neighbour_similarities")


def file_stamp(path):
    """(size, mtime in ns) of a file, or (-1, -1) when it cannot be stat'ed: what --update compares."""
    try:
        status = os.stat(path)
    except OSError:
        return (-1, -1)
    return (status.st_size, status.st_mtime_ns)


def build_index(encoder, dataset_dir, model_sha256, batch_size, previous=None, shard=None, histograms=False):
    """Encode the images of dataset_dir into an index dict, skipping unreadable files with a warning.

    previous: an index of the same model whose rows are kept for unchanged files (path, size, mtime).
    shard: (i, n) to take only every n-th image from the i-th, so n machines can share a folder.
    histograms: append gradient and colour histograms to the encoder's features (see encoding.make_encode_function).
    The neighbour graph for diffusion is left empty; add_neighbour_graph fills it.
    """
    if previous is not None and previous["histograms"] != histograms:
        previous = None  # Its rows hold other features than these: nothing can be reused.
    relative_paths, labels = data.list_images(dataset_dir)
    if shard is not None:
        relative_paths = relative_paths[shard[0] :: shard[1]]
        labels = None if labels is None else labels[shard[0] :: shard[1]]
    paths = data.full_paths(dataset_dir, relative_paths)
    if previous is None:
        stamps = np.full((len(paths), 2), -1, dtype=np.int64)  # Filled in by the reads: no second stat per file.
    else:
        stamps = np.array([file_stamp(path) for path in paths], dtype=np.int64).reshape(-1, 2)
    reusable = reusable_rows(previous, relative_paths, stamps)
    pending = [position for position, row in enumerate(reusable) if row < 0]
    print(f"encoding {len(pending)} images of {dataset_dir} ({len(paths) - len(pending)} unchanged)", file=sys.stderr, flush=True)
    new_features, readable = encoding.encode_paths(
        encoder, [paths[position] for position in pending], batch_size, histograms=histograms,
        stamps=stamps if previous is None else None,  # Without a previous index every path is pending, in order.
    )
    unreadable = [pending[i] for i in np.flatnonzero(~readable)]
    if unreadable:
        data.warn(f"skipped {len(unreadable)} unreadable image(s) of {len(paths)}, first: {paths[unreadable[0]]}")
    kept = sorted(set(range(len(paths))) - set(unreadable))
    if not kept:
        raise InputError(f"{dataset_dir}: none of the {len(paths)} images is readable; check the folder")
    reused = [position for position, row in enumerate(reusable) if row >= 0]
    image_size, channels = model.image_shape_of(encoder)
    if reused:
        # Folder order, new features where files were encoded and the previous index's where unchanged.
        features = np.zeros((len(paths), encoding.feature_length(encoder, histograms)), np.float32)
        features[[pending[i] for i in np.flatnonzero(readable)]] = new_features
        features[reused] = previous["features"][[reusable[position] for position in reused]]
        features = features[kept]
    else:
        features = new_features  # Every file was encoded in folder order: no copy of the largest array.
    return {
        "format_version": FORMAT_VERSION,
        "dataset_dir": os.path.abspath(dataset_dir),
        "paths": [relative_paths[i] for i in kept],
        "labels": None if labels is None else [labels[i] for i in kept],
        "stamps": stamps if len(kept) == len(paths) else stamps[kept],
        "features": features,
        "model_sha256": model_sha256,
        "image_size": int(image_size),
        "channels": int(channels),
        "shard": None if shard is None else f"{shard[0]}/{shard[1]}",
        "histograms": bool(histograms),
        "neighbours": None,
        "neighbour_similarities": None,
    }


def add_neighbour_graph(feature_index, previous=None):
    """Store each row's nearest neighbours (by cosine similarity) in the index, for diffusion re-ranking.

    previous: the index this one updates; its graph is reused for the rows it holds unchanged.
    """
    count = len(feature_index["paths"])
    neighbours = graph.neighbour_count(count)
    print(f"linking each of {count} images to its {neighbours} nearest, for diffusion", file=sys.stderr, flush=True)
    previous_graph = None if previous is None else previous["neighbours"]
    if previous_graph is None or previous_graph.shape[1] != neighbours or previous["histograms"] != feature_index["histograms"]:
        feature_index["neighbours"], feature_index["neighbour_similarities"] = graph.neighbour_graph(feature_index["features"])
        return
    previous_rows = np.array(reusable_rows(previous, feature_index["paths"], feature_index["stamps"]), dtype=np.int64)
    feature_index["neighbours"], feature_index["neighbour_similarities"], relinked = graph.update_neighbour_graph(
        feature_index["features"], previous_rows, previous_graph, previous["neighbour_similarities"]
    )
    print(f"relinked {relinked} of {count} images; the others kept their neighbours from the previous index",
          file=sys.stderr, flush=True)


def reusable_rows(previous, relative_paths, stamps):
    """For each path, the row of previous holding it unchanged (same size and mtime), else -1.

    stamps: (N, 2) sizes and mtimes of relative_paths now, -1 where a file could not be stat'ed.
    """
    if previous is None or not previous["paths"]:
        return [-1] * len(relative_paths)
    previous_rows = {path: row for row, path in enumerate(previous["paths"])}
    rows = np.array([previous_rows.get(path, -1) for path in relative_paths], dtype=np.int64)
    unchanged = (rows >= 0) & (stamps[:, 0] >= 0) & (previous["stamps"][rows] == stamps).all(axis=1)
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


def save_index(feature_index, index_path, approximate="never", approximate_above=0, metric="cosine"):
    """Write the index atomically, with a faiss approximate index beside it when asked or large enough.

    The approximate index ranks by metric (for cosine, it holds unit-length features) and only serves
    searches by that metric.

    The approximate index is written first and its SHA-256 recorded in the pickle, so a crash between
    the two leaves a pair that search recognises as mismatched and answers exactly instead.
    """
    approximate_path = approximate_path_for(index_path)
    add_prefix_bound(feature_index, metric)
    feature_index["approximate_sha256"] = None
    if approximate == "always" or (approximate == "auto" and len(feature_index["paths"]) >= approximate_above):
        import faiss

        unit_features = vectors.postprocess_features(feature_index["features"], metric)
        payload = faiss.serialize_index(ranking.build_approximate(unit_features)).tobytes()
        feature_index["approximate_metric"] = metric
        safeio.atomic_write_bytes(approximate_path, payload)
        feature_index["approximate_sha256"] = hashlib.sha256(payload).hexdigest()
    safeio.atomic_pickle(index_path, feature_index)
    if feature_index["approximate_sha256"] is None and os.path.exists(approximate_path):
        os.remove(approximate_path)


def add_prefix_bound(feature_index, metric):
    """Store the lower bound that makes exact search by metric read a short prefix of most rows (see ranking)."""
    prefix = ranking.build_prefix_bound(feature_index["features"], metric)
    feature_index["prefix_metric"] = None if prefix is None else metric
    feature_index["prefix_basis"], feature_index["prefix_bounds"] = (None, None) if prefix is None else prefix


def load_approximate(index_path, feature_index):
    """The faiss index beside index_path if the pickle vouches for it (same SHA-256), else None."""
    expected = feature_index.get("approximate_sha256")
    if not isinstance(expected, str):
        return None
    approximate_path = approximate_path_for(index_path)
    try:
        with open(approximate_path, "rb") as file:
            payload = file.read()
    except OSError:
        payload = b""
    if hashlib.sha256(payload).hexdigest() != expected:
        data.warn(f"{approximate_path}: missing or not the one this index was saved with; searching exactly")
        return None
    import faiss

    return faiss.deserialize_index(np.frombuffer(payload, dtype=np.uint8))


def merge_indexes(indexes, index_paths):
    """One index from shard indexes of the same model and folder, rows in path order; no approximate part."""
    first = indexes[0]
    for other, path in zip(indexes[1:], index_paths[1:]):
        if (other["model_sha256"], other["dataset_dir"]) != (first["model_sha256"], first["dataset_dir"]):
            raise InputError(f"{path}: another model or folder than {index_paths[0]}; pass shards of one indexing run")
        if other["histograms"] != first["histograms"]:
            raise InputError(f"{path}: indexed {'with' if other['histograms'] else 'without'} histograms, unlike "
                             f"{index_paths[0]}; index every shard with the same --histograms setting")
    paths = [path for shard in indexes for path in shard["paths"]]
    order = np.argsort(np.array(paths, dtype=object), kind="stable")
    labelled = all(shard["labels"] is not None for shard in indexes)
    labels = [label for shard in indexes for label in shard["labels"]] if labelled else None
    stamps = np.concatenate([shard["stamps"] for shard in indexes])
    return first | {
        "paths": [paths[i] for i in order], "labels": None if labels is None else [labels[i] for i in order],
        "stamps": stamps[order], "features": np.concatenate([shard["features"] for shard in indexes])[order],
        "shard": None, "approximate_sha256": None, "neighbours": None, "neighbour_similarities": None,
        "prefix_metric": None, "prefix_basis": None, "prefix_bounds": None,
    }


def load_index(index_path, autoencoder=None, model_sha256=None):
    """Read an index with the restricted unpickler and check it belongs to the given model."""
    if not os.path.isfile(index_path):
        raise InputError(f"{index_path}: index not found; run index_dataset.py first or pass --index")
    index = safeio.restricted_load(index_path)
    if not is_well_formed(index):
        if isinstance(index, dict) and "format_version" in index and not is_current_version(index["format_version"]):
            raise InputError(f"{index_path}: index format {index['format_version']!r}, expected {FORMAT_VERSION}; rebuild it with index_dataset.py")
        if isinstance(index, dict) and all(key in index for key in REQUIRED_KEYS) and isinstance(index["features"], np.ndarray):
            raise InputError(f"{index_path}: features do not match its paths; rebuild it with index_dataset.py")
        raise InputError(f"{index_path}: not an index of this suite; rebuild it with index_dataset.py")
    features = index["features"]
    if model_sha256 is not None and index["model_sha256"] != model_sha256:
        raise InputError(f"{index_path}: made with another model than the one given; rebuild it with index_dataset.py --model")
    if autoencoder is not None:
        image_size, channels = model.image_shape_of(autoencoder)
        expected = (image_size, channels, encoding.feature_length(model.encoder_of(autoencoder), index["histograms"]))
        found = (index["image_size"], index["channels"], features.shape[1])
        if found != expected:
            raise InputError(f"{index_path}: image size, channels, feature length {found} do not match the model's {expected}; rebuild it")
    if not is_well_formed_prefix(index):
        raise InputError(f"{index_path}: its exact-search bound does not match its features; rebuild it with index_dataset.py")
    index["features"] = features.astype(np.float32, copy=False)
    index["stamps"] = np.asarray(index["stamps"], dtype=np.int64).reshape(len(index["paths"]), 2)
    return index


def is_current_version(value):
    """Whether a stored format_version is this suite's (and a plain int, not an array pretending)."""
    return type(value) is int and value == FORMAT_VERSION


def is_well_formed(index):
    """Whether an unpickled object has every field of this format, of the right types and lengths."""
    if not isinstance(index, dict) or any(key not in index for key in REQUIRED_KEYS):
        return False
    paths, labels, features = index["paths"], index["labels"], index["features"]
    return (
        is_current_version(index["format_version"])
        and isinstance(paths, list) and all(isinstance(path, str) for path in paths)
        and (labels is None or (isinstance(labels, list) and len(labels) == len(paths)))
        and is_well_formed_stamps(index["stamps"], len(paths))
        and isinstance(features, np.ndarray) and features.ndim == 2 and features.shape[0] == len(paths)
        and features.dtype.kind == "f"
        and isinstance(index["image_size"], int) and isinstance(index["channels"], int)
        and isinstance(index["model_sha256"], str) and isinstance(index.get("dataset_dir", ""), str)
        and isinstance(index["histograms"], bool) and is_well_formed_graph(index)
    )


def is_well_formed_stamps(stamps, count):
    """Whether stamps are (count, 2) integers: an array, or a list of pairs as older indexes stored them."""
    if isinstance(stamps, list):
        is_int64 = lambda value: type(value) is int and abs(value) < 2**63  # noqa: E731
        return len(stamps) == count and all(
            isinstance(stamp, (list, tuple)) and len(stamp) == 2 and all(map(is_int64, stamp)) for stamp in stamps
        )
    return isinstance(stamps, np.ndarray) and stamps.shape == (count, 2) and stamps.dtype.kind == "i"


def is_well_formed_graph(index):
    """Whether the neighbour graph is absent, or two (N, K) arrays of rows in range and similarities."""
    neighbours, similarities = index["neighbours"], index["neighbour_similarities"]
    if neighbours is None and similarities is None:
        return True
    return (
        isinstance(neighbours, np.ndarray) and isinstance(similarities, np.ndarray)
        and neighbours.ndim == 2 and neighbours.shape == similarities.shape and neighbours.shape[0] == len(index["paths"])
        and neighbours.dtype.kind == "i" and similarities.dtype.kind == "f"
        and (neighbours.size == 0 or (neighbours.min() >= 0 and neighbours.max() < len(index["paths"])))
    )


def is_well_formed_prefix(index):
    """Whether the prefix bound is absent (older indexes lack it), or a finite (D, p) basis and (p + 2, N) bounds."""
    metric, basis, bounds = index.get("prefix_metric"), index.get("prefix_basis"), index.get("prefix_bounds")
    if metric is None and basis is None and bounds is None:
        return True
    return (
        isinstance(metric, str) and metric in ("euclidean", "cosine")
        and isinstance(basis, np.ndarray) and isinstance(bounds, np.ndarray)
        and basis.dtype == np.float32 and bounds.dtype == np.float32 and basis.ndim == 2 and bounds.ndim == 2
        and basis.shape[0] == index["features"].shape[1] and bounds.shape == (basis.shape[1] + 2, len(index["paths"]))
        and bool(np.isfinite(basis).all()) and bool(np.isfinite(bounds).all())
    )
