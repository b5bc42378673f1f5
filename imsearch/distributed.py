"""Indexing a folder on many machines with Ray: each worker encodes one shard, the driver merges them."""

import os
import warnings

from imsearch import InputError, console, image_folders, index, indexing, runtime


def build_index_on_ray(dataset_dir, model_path, model_sha256, workers, batch_size, histograms, address="",
                       compact_above=None, compact_length=0):
    """The FeatureIndex of dataset_dir encoded by `workers` Ray tasks, one shard each, merged in path order.

    address: a running Ray cluster ("auto", or "ray://host:10001"); empty starts a new one on this machine.
    Every node must see the folder and the model at the same paths (a shared file system) and have the
    suite installed (bash install.sh). No more workers than images are started.
    From compact_above images the shards come back compact, projected onto compact_length components
    fitted here on a sample of the folder, so the full features never meet in one process.
    """
    count = len(image_folders.list_images(dataset_dir)[0])
    workers = min(workers, count)  # An empty shard would be an error of its own.
    if not address and workers > (os.cpu_count() or 1):
        # Each worker runs an encoder on every core: more workers than cores only contend for them, and for memory.
        console.note(f"--workers {workers} on this machine's {os.cpu_count()} cores: starting {os.cpu_count()}")
        workers = os.cpu_count() or 1
    os.environ.setdefault("RAY_COLOR_PREFIX", "0")  # Workers' lines keep their "(encode_shard pid=N)" prefix, uncoloured.
    try:
        import ray
    except ImportError:
        raise InputError("--workers needs Ray, which this install lacks (bash install.sh --search-only leaves it out): "
                         "pip install ray, or index without --workers") from None
    try:
        with warnings.catch_warnings():  # A failed connection is also warned about at length; the error says it.
            warnings.simplefilter("ignore")
            ray.init(address=address or "local", num_cpus=None if address else workers, include_dashboard=False,
                     logging_level="ERROR", configure_logging=True)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise InputError(f"--ray-address {address}: no Ray cluster to join there ({' '.join(str(error).split())[:160]}); "
                         "start one with ray start, or leave --ray-address out") from None
    try:
        fitted = None
        if compact_above is not None and count >= max(compact_above, 2):
            encoder = runtime.open_encoder(model_path)  # Here first: the workers then find the export made.
            fitted = indexing.projection_of_sample(encoder, dataset_dir, batch_size, histograms, compact_length)
        encode = ray.remote(encode_shard)
        arguments = (os.path.abspath(dataset_dir), os.path.abspath(model_path), model_sha256, batch_size, histograms, fitted)
        saved_shards = ray.get([encode.remote(*arguments, (number, workers)) for number in range(workers)])
    except ray.exceptions.RayTaskError as error:
        if isinstance(error.cause, InputError):  # A user mistake met on a worker: one line, as here.
            raise error.cause from None
        raise
    finally:
        ray.shutdown()
    shards = [index.FeatureIndex.from_dict(saved) for saved in saved_shards]
    merged = index.merge_indexes(shards, [f"shard {number}/{workers}" for number in range(workers)])
    # The workers' own warnings may be cut off when Ray shuts down: the driver says what was left out.
    if merged.count < count:
        console.warn(f"skipped {count - merged.count} unreadable image(s) of {count} in {dataset_dir}")
    return merged


def encode_shard(dataset_dir, model_path, model_sha256, batch_size, histograms, fitted, shard):
    """On a worker: the index of one shard of the folder (projected with fitted when given), as the plain dict shipped back."""
    encoder = runtime.open_encoder(model_path)
    feature_index, _ = indexing.build_index(encoder, dataset_dir, model_sha256, batch_size, shard=shard, histograms=histograms,
                                         fitted_projection=fitted)
    return feature_index.to_dict()
