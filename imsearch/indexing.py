"""Building an index: encode a folder (or what changed in it), compact it, link it for diffusion and save it."""

import dataclasses
import os

import numpy as np

from imsearch import InputError, console, encoding, graph, image_folders, index, projection, ranking, vectors

# With the approximate index, --update relinks rows one by one (each compared with every row) only while
# they are this share of the index at most; past it, finding the whole graph approximately is cheaper.
APPROXIMATE_RELINK_SHARE = 0.01


@dataclasses.dataclass(frozen=True)
class IndexingReport:
    """What one indexing run did: images in the index, images encoded anew, rows of the graph linked anew."""

    images: int
    encoded: int
    relinked: int


def file_stamp(path):
    """(size, mtime in ns) of a file, or (-1, -1) when it cannot be stat'ed: what --update compares."""
    try:
        status = os.stat(path)
    except OSError:
        return (-1, -1)
    return (status.st_size, status.st_mtime_ns)


def build_index(encoder, dataset_dir, model_sha256, batch_size, previous=None, shard=None, histograms=False,
                fitted_projection=None):
    """Encode the images of dataset_dir into a index.FeatureIndex, skipping unreadable files with a warning.

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
        first = paths[unreadable[0]]
        console.warn(f"skipped {len(unreadable)} unreadable image(s) of {len(paths)}, first: {first}: "
                     f"{image_folders.why_unreadable(first)}")
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
    return index.FeatureIndex(
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
    feature_index = index.save_index(feature_index, index_path, approximate_index, metric)
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
    """(the index with each row's nearest neighbours by cosine similarity and, for an exact graph, its spectrum,
    for diffusion; rows linked anew).

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
    basis = eigenvalues = None
    unchanged = (previous is not None and previous.diffusion_basis is not None and np.array_equal(rows, previous.neighbours)
                 and np.array_equal(similarities, previous.neighbour_similarities))
    if approximate is None and unchanged:
        basis, eigenvalues = previous.diffusion_basis, previous.diffusion_eigenvalues  # The same graph: the same spectrum.
    elif approximate is None:
        # Search diffuses over the spectrum of a large exact graph; one found approximately serves local diffusion only.
        basis, eigenvalues = graph.graph_spectrum(rows, similarities) or (None, None)
    return dataclasses.replace(feature_index, neighbours=rows, neighbour_similarities=similarities, diffusion_basis=basis,
                               diffusion_eigenvalues=eigenvalues), relinked


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


def approximate_index_for(feature_index, approximate="never", approximate_above=0, metric="cosine"):
    """A faiss approximate index over the features as ranked by metric, when asked or the index is large enough; else None."""
    if approximate == "always" or (approximate == "auto" and feature_index.count >= approximate_above):
        return ranking.build_approximate(vectors.postprocess_features(feature_index.features, metric))
    return None
