"""The feature index: encode a folder, save and load it safely, and rank it against queries."""

import hashlib
import os
import sys

import numpy as np
import tensorflow as tf
import tqdm

from imsearch import InputError, data, model, safeio

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "paths", "labels", "stamps", "features", "model_sha256", "image_size", "channels")
# Queries are ranked in blocks so the distance matrix stays small (block x database floats).
QUERY_BLOCK = 256
# Lists probed per query by the approximate index: recall@10 >= 0.95 at 1M rows in bench/bench_search.py.
APPROXIMATE_PROBES = 64


def make_encode_function(encoder):
    """A compiled encoder call: one tf.function trace per batch shape, far cheaper than predict per call."""
    @tf.function(reduce_retracing=True)
    def encode(images):
        return encoder(images, training=False)

    return lambda images: encode(tf.constant(images)).numpy()


def encode_paths(encoder, paths, batch_size, description="encoding"):
    """Encoder features of the readable images among paths, and which paths those are."""
    image_size, channels = encoder.input_shape[1], encoder.input_shape[3]
    return transform_paths(make_encode_function(encoder), paths, (image_size, channels, encoder.output_shape[-1]), batch_size, description)


def pixel_features(paths, image_size, channels, batch_size):
    """Raw pixels as flat feature vectors (the baseline), and which paths were readable."""
    flatten = lambda batch: batch.reshape(len(batch), -1)  # noqa: E731
    return transform_paths(flatten, paths, (image_size, channels, image_size * image_size * channels), batch_size, "pixels")


def transform_paths(transform, paths, shape, batch_size, description):
    """Apply transform to batches of images read from paths; reading overlaps the transform.

    shape is (image_size, channels, feature_length). Returns (readable count, feature_length) float32
    features and a boolean mask of readable paths.
    """
    image_size, channels, feature_length = shape
    features = np.zeros((len(paths), feature_length), dtype=np.float32)
    readable = np.zeros(len(paths), dtype=bool)
    with tqdm.tqdm(total=len(paths), desc=description, unit="img", leave=False, disable=None) as progress:
        for start, batch, valid in data.iterate_batches(paths, image_size, channels, batch_size):
            rows = np.flatnonzero(valid) + start
            if rows.size:
                features[rows] = transform(batch)
                readable[rows] = True
            progress.update(len(valid))
    return features[readable], readable


def file_stamp(path):
    """(size, mtime in ns) of a file, or (-1, -1) when it cannot be stat'ed: what --update compares."""
    try:
        status = os.stat(path)
    except OSError:
        return (-1, -1)
    return (status.st_size, status.st_mtime_ns)


def build_index(encoder, dataset_dir, model_sha256, batch_size, previous=None, shard=None):
    """Encode the images of dataset_dir into an index dict, skipping unreadable files with a warning.

    previous: an index of the same model whose rows are kept for unchanged files (path, size, mtime).
    shard: (i, n) to take only every n-th image from the i-th, so n machines can share a folder.
    """
    relative_paths, labels = data.list_images(dataset_dir)
    if shard is not None:
        relative_paths = relative_paths[shard[0] :: shard[1]]
        labels = None if labels is None else labels[shard[0] :: shard[1]]
    paths = [os.path.join(dataset_dir, path) for path in relative_paths]
    stamps = [file_stamp(path) for path in paths]
    reusable = reusable_rows(previous, relative_paths, stamps)
    pending = [position for position, row in enumerate(reusable) if row < 0]
    print(f"encoding {len(pending)} images of {dataset_dir} ({len(paths) - len(pending)} unchanged)", file=sys.stderr, flush=True)
    new_features, readable = encode_paths(encoder, [paths[position] for position in pending], batch_size)
    unreadable = [pending[i] for i in np.flatnonzero(~readable)]
    if unreadable:
        data.warn(f"skipped {len(unreadable)} unreadable image(s) of {len(paths)}, first: {paths[unreadable[0]]}")
    kept = sorted(set(range(len(paths))) - set(unreadable))
    if not kept:
        raise InputError(f"{dataset_dir}: none of the {len(paths)} images is readable; check the folder")
    features = np.zeros((len(paths), new_features.shape[1]), np.float32)
    features[[pending[i] for i in np.flatnonzero(readable)]] = new_features
    reused = [position for position, row in enumerate(reusable) if row >= 0]
    if reused:
        features[reused] = previous["features"][[reusable[position] for position in reused]]
    return {
        "format_version": FORMAT_VERSION,
        "dataset_dir": os.path.abspath(dataset_dir),
        "paths": [relative_paths[i] for i in kept],
        "labels": None if labels is None else [labels[i] for i in kept],
        "stamps": [list(stamps[i]) for i in kept],
        "features": features[kept],
        "model_sha256": model_sha256,
        "image_size": int(encoder.input_shape[1]),
        "channels": int(encoder.input_shape[3]),
        "shard": None if shard is None else f"{shard[0]}/{shard[1]}",
    }


def reusable_rows(previous, relative_paths, stamps):
    """For each path, the row of previous holding it unchanged (same size and mtime), else -1."""
    if previous is None:
        return [-1] * len(relative_paths)
    previous_rows = {path: row for row, path in enumerate(previous["paths"])}
    rows = []
    for path, stamp in zip(relative_paths, stamps):
        row = previous_rows.get(path, -1)
        rows.append(row if row >= 0 and tuple(previous["stamps"][row]) == stamp and stamp[0] >= 0 else -1)
    return rows


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


def save_index(feature_index, index_path, approximate="never", approximate_above=0):
    """Write the index atomically, with a faiss approximate index beside it when asked or large enough.

    The approximate index is written first and its SHA-256 recorded in the pickle, so a crash between
    the two leaves a pair that search recognises as mismatched and answers exactly instead.
    """
    approximate_path = approximate_path_for(index_path)
    feature_index["approximate_sha256"] = None
    if approximate == "always" or (approximate == "auto" and len(feature_index["paths"]) >= approximate_above):
        import faiss

        payload = faiss.serialize_index(build_approximate(feature_index["features"])).tobytes()
        safeio.atomic_write_bytes(approximate_path, payload)
        feature_index["approximate_sha256"] = hashlib.sha256(payload).hexdigest()
    safeio.atomic_pickle(index_path, feature_index)
    if feature_index["approximate_sha256"] is None and os.path.exists(approximate_path):
        os.remove(approximate_path)


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
    paths = [path for shard in indexes for path in shard["paths"]]
    order = np.argsort(np.array(paths, dtype=object), kind="stable")
    labelled = all(shard["labels"] is not None for shard in indexes)
    labels = [label for shard in indexes for label in shard["labels"]] if labelled else None
    stamps = [stamp for shard in indexes for stamp in shard["stamps"]]
    return first | {
        "paths": [paths[i] for i in order], "labels": None if labels is None else [labels[i] for i in order],
        "stamps": [stamps[i] for i in order], "features": np.concatenate([shard["features"] for shard in indexes])[order],
        "shard": None, "approximate_sha256": None,
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
        expected = (image_size, channels, autoencoder.get_layer(model.ENCODER_LAYER).output.shape[-1])
        found = (index["image_size"], index["channels"], features.shape[1])
        if found != expected:
            raise InputError(f"{index_path}: image size, channels, feature length {found} do not match the model's {expected}; rebuild it")
    index["features"] = features.astype(np.float32, copy=False)
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
        and isinstance(index["stamps"], list) and len(index["stamps"]) == len(paths)
        and isinstance(features, np.ndarray) and features.ndim == 2 and features.shape[0] == len(paths)
        and features.dtype.kind == "f"
        and isinstance(index["image_size"], int) and isinstance(index["channels"], int)
        and isinstance(index["model_sha256"], str) and isinstance(index.get("dataset_dir", ""), str)
    )


def postprocess_features(features, metric):
    """The one place features are transformed for ranking: L2-normalised for cosine, as-is for Euclidean."""
    features = np.asarray(features, dtype=np.float32)
    if metric == "cosine":
        norms = np.linalg.norm(features, axis=1, keepdims=True)
        return features / np.maximum(norms, 1e-12)
    return features


def squared_norms(features):
    """Row-wise squared L2 norms, (N, D) -> (N,)."""
    return np.einsum("ij,ij->i", features, features)


def squared_distances(queries, database, database_norms):
    """(Q, N) squared Euclidean distances as |q|^2 - 2 q.x + |x|^2: one matrix product, no loop over items."""
    squared = database_norms[None, :] - 2.0 * queries @ database.T
    squared += squared_norms(queries)[:, None]
    return squared


def rank(query_features, database_features, top_k, exclude=None, database_norms=None):
    """Indices and distances of the top_k nearest database rows per query, ascending, vectorised.

    query_features: (Q, D) and database_features: (N, D), already post-processed.
    exclude: optional (Q,) database row per query to leave out (the query itself), -1 for none.
    database_norms: squared_norms(database_features), when the caller keeps them between calls.
    Returns (Q, k) int64 indices and (Q, k) float32 Euclidean distances, k = min(top_k, rows available).
    """
    exclude = np.full(len(query_features), -1) if exclude is None else np.asarray(exclude)
    top_k = max(0, min(top_k, len(database_features) - int((exclude >= 0).any())))
    database_norms = squared_norms(database_features) if database_norms is None else database_norms
    all_indices = np.zeros((len(query_features), top_k), dtype=np.int64)
    all_distances = np.zeros((len(query_features), top_k), dtype=np.float32)
    for start in range(0, len(query_features) if top_k else 0, QUERY_BLOCK):
        block = query_features[start : start + QUERY_BLOCK]
        squared = squared_distances(block, database_features, database_norms)
        excluded = exclude[start : start + QUERY_BLOCK]
        squared[np.flatnonzero(excluded >= 0), excluded[excluded >= 0]] = np.inf
        nearest = np.argpartition(squared, top_k - 1, axis=1)[:, :top_k]
        nearest_squared = np.take_along_axis(squared, nearest, axis=1)
        order = nearest_squared.argsort(axis=1, kind="stable")
        all_indices[start : start + len(block)] = np.take_along_axis(nearest, order, axis=1)
        all_distances[start : start + len(block)] = np.sqrt(np.maximum(np.take_along_axis(nearest_squared, order, axis=1), 0.0))
    return all_indices, all_distances


def rows_of_queries(feature_index, query_paths):
    """For each query, its own row in the index (found by resolved path), or -1 when it is not indexed."""
    row_of_path = {path: row for row, path in enumerate(feature_index["paths"])}
    dataset_dir = os.path.realpath(feature_index.get("dataset_dir", ""))
    rows = []
    for path in query_paths:
        relative = os.path.relpath(os.path.realpath(path), dataset_dir).replace(os.sep, "/")
        rows.append(row_of_path.get(relative, -1))
    return np.array(rows, dtype=np.int64)


def search(encoder, feature_index, query_paths, top_k, metric, batch_size, approximate=None):
    """Rank the index for each readable query: (readable query paths, (Q, k) rows, (Q, k) distances).

    approximate: a faiss index from load_approximate, used for Euclidean ranking; None ranks exactly.
    """
    features, readable = encode_paths(encoder, query_paths, batch_size, description="queries")
    readable_paths = [path for path, ok in zip(query_paths, readable) if ok]
    exclude = rows_of_queries(feature_index, readable_paths)
    if approximate is not None and metric == "euclidean":
        rows, distances = search_approximate(approximate, features, top_k + 1)
        return (readable_paths, *drop_excluded(rows, distances, exclude, top_k))
    rows, distances = rank(
        postprocess_features(features, metric), postprocess_features(feature_index["features"], metric), top_k, exclude
    )
    if metric == "cosine":
        # Between unit vectors |a - b|^2 = 2 (1 - cos), so this reports the cosine distance itself.
        distances = distances**2 / 2
    return readable_paths, rows, distances


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
