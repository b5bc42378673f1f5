"""Quality measures: reconstruction error of the autoencoder and retrieval quality of the index."""

import concurrent.futures

import numpy as np

from imsearch import InputError, console, encoding, graph, image_folders, model, ranking, vectors
from imsearch.backend import tf

METRIC_NAMES = ("map", "map_at_100", "precision_at_1", "precision_at_10", "precision_at_100", "knn_accuracy", "top_hit_share")
# Queries ranked at a time in each thread: small enough that a block per core fits beside the index.
METRICS_BLOCK = 128


def reconstruction_error(autoencoder, paths, batch_size):
    """Mean squared error over the readable images of paths, and how many were readable."""
    image_size, channels = model.image_shape_of(autoencoder)
    reconstruct = tf.function(lambda images: autoencoder(images, training=False), reduce_retracing=True)
    total, count = 0.0, 0
    for _, pixels, _ in image_folders.iterate_batches(paths, image_size, channels, batch_size):
        batch = pixels.astype(np.float32) / 255.0
        if len(batch):
            reconstructions = reconstruct(tf.constant(batch)).numpy()
            total += float(np.square(reconstructions - batch, dtype=np.float64).mean(axis=(1, 2, 3)).sum())
            count += len(batch)
    return (total / count if count else float("nan")), count


def reconstruct_examples(autoencoder, paths):
    """Images of paths in [0, 1] and the autoencoder's reconstructions of them."""
    image_size, channels = model.image_shape_of(autoencoder)
    originals = np.stack([image_folders.read_image(path, image_size, channels) for path in paths]).astype(np.float32) / 255.0
    return originals, autoencoder(originals, training=False).numpy()


def retrieval_metrics(query_features, query_labels, database_features, database_labels, exclude=None, neighbours=10,
                      diffusion_graph=None, mirrored_features=None):
    """mAP, mAP@100, precision@1, @10 and @100, k-NN accuracy and top-hit share of Euclidean ranking; same label is relevant.

    Features must already be post-processed. exclude gives, per query, a database row to leave out (-1: none).
    diffusion_graph: a graph from graph.diffusion_graph_of to rank by diffusion instead (unit-length features).
    AP@100 divides by min(relevant, 100), so a perfect top 100 scores 1. top_hit_share is the largest share
    of the queries whose first hit is one and the same image: near 1 when one image comes first for everything.
    mirrored_features: the queries' mirror images, post-processed likewise; rows are ranked by the nearer of the two.
    """
    classes = sorted({label for label in database_labels if label is not None})
    code_of = {label: code for code, label in enumerate(classes)}
    # Unlabelled images (None: at the root of a labelled folder) get codes that match nothing: -2 in the
    # database, -1 for queries, which relevant_counts[-1] = 0 counts as having no relevant images.
    database_codes = np.array([code_of.get(label, -2) for label in database_labels])
    query_codes = np.array([code_of.get(label, -1) for label in query_labels])
    relevant_counts = np.append(np.bincount(database_codes[database_codes >= 0], minlength=len(classes)), 0)
    database_norms = vectors.squared_norms(database_features)
    exclude = np.full(len(query_features), -1) if exclude is None else np.asarray(exclude)

    def block_sums(start):
        stop = start + METRICS_BLOCK
        squared = vectors.squared_distances(query_features[start:stop], database_features, database_norms)
        if mirrored_features is not None:
            np.minimum(squared, vectors.squared_distances(mirrored_features[start:stop], database_features, database_norms),
                       out=squared)
        excluded = exclude[start:stop]
        vectors.mask_excluded(squared, excluded, np.inf)
        if diffusion_graph is not None:
            # Between unit vectors cos = 1 - d^2 / 2.
            squared = graph.diffusion_distances(diffusion_graph, 1.0 - squared / 2)
        ranked_rows = np.argsort(squared, axis=1, kind="stable")
        ranked_codes = database_codes[ranked_rows]
        # The excluded row sorts last (infinite distance); it counts as neither relevant nor a neighbour.
        relevant = (ranked_codes == query_codes[start:stop, None]) & (ranked_rows != excluded[:, None])
        totals = relevant_counts[query_codes[start:stop]] - (excluded >= 0)
        top_hits = np.bincount(ranked_rows[:, 0], minlength=len(database_features))
        rankable = len(database_features) - (excluded >= 0)
        return block_metrics(relevant, np.maximum(totals, 1), ranked_codes[:, :neighbours], query_codes[start:stop],
                             rankable), top_hits

    sums = dict.fromkeys(METRIC_NAMES[:-1], 0.0)
    top_hits = np.zeros(len(database_features), dtype=np.int64)
    # Sorting every distance, the diffusion's products and the metrics release the GIL: blocks run on every core.
    # A block holds about a dozen (block, N) arrays of 4 or 8 bytes: distances, their order, codes, hits.
    workers = vectors.block_workers(METRICS_BLOCK * len(database_features) * 64)
    with concurrent.futures.ThreadPoolExecutor(workers) as executor, \
            console.progress(len(query_features), "scoring", unit="query") as progress:
        for start, (block, block_top_hits) in zip(range(0, len(query_features), METRICS_BLOCK),
                                                  executor.map(block_sums, range(0, len(query_features), METRICS_BLOCK))):
            top_hits += block_top_hits
            for name in sums:
                sums[name] += block[name]
            progress.update(min(METRICS_BLOCK, len(query_features) - start))
    return {name: value / len(query_features) for name, value in sums.items()} | {"top_hit_share": top_hits.max() / len(query_features)}


def block_metrics(relevant, totals, nearest_labels, query_labels, rankable):
    """One block's per-query metrics, summed over its queries; relevant is (Q, N) in rank order.

    rankable: per query, how many database images it can be shown (N, less its own image): P@k divides by
    min(k, rankable), so a database of five images can still score a perfect P@10.
    """
    hits = np.cumsum(relevant, axis=1)
    ranks = np.arange(1, relevant.shape[1] + 1)
    precision_at_hits = np.where(relevant, hits / ranks, 0.0)
    return {
        "map": float((precision_at_hits.sum(axis=1) / totals).sum()),
        "map_at_100": float((precision_at_hits[:, :100].sum(axis=1) / np.minimum(totals, 100)).sum()),
        "precision_at_1": float(hits[:, 0].sum()),
        "precision_at_10": float((hits[:, min(10, hits.shape[1]) - 1] / np.clip(rankable, 1, 10)).sum()),
        "precision_at_100": float((hits[:, min(100, hits.shape[1]) - 1] / np.clip(rankable, 1, 100)).sum()),
        "knn_accuracy": float(sum(majority_vote(labels) == label for labels, label in zip(nearest_labels, query_labels))),
    }


def majority_vote(labels):
    """The most frequent label; ties go to the label reached first in rank order."""
    values, first_positions, counts = np.unique(labels, return_index=True, return_counts=True)
    best = np.flatnonzero(counts == counts.max())
    return values[best[np.argmin(first_positions[best])]]


def compare_with_baselines(encoder, feature_index, queries_dir, metric, batch_size, diffusion=False):
    """Retrieval metrics of the suite's search and of raw pixels (Euclidean, cosine) for a labelled query folder."""
    if feature_index.labels is None:
        raise InputError(f"the index of {feature_index.dataset_dir} has no labels (its images are not in class subfolders); "
                         "index a labelled folder")
    relative_paths, labels = image_folders.list_images(queries_dir)
    if labels is None:
        raise InputError(f"{queries_dir}: queries need class subfolders (<class>/<image>) to be scored")
    unlabelled = sum(label is None for label in labels)
    if unlabelled:
        console.warn(f"skipped {unlabelled} queries at the root of {queries_dir}: only images in class subfolders can be scored")
        relative_paths, labels = labelled_only(relative_paths, labels)
    query_paths = image_folders.full_paths(queries_dir, relative_paths)
    query_features, mirrored_features, readable = encoding.encode_queries(encoder, query_paths, batch_size,
                                                                          feature_index.histograms)
    if not readable.all():
        console.warn(f"skipped {int((~readable).sum())} unreadable queries of {len(query_paths)}, first: "
                     f"{query_paths[int(np.flatnonzero(~readable)[0])]}")
    indexed_classes = set(feature_index.labels)
    # A query of a class the index lacks has nothing relevant to find: its zero would only pull the means down.
    scorable = readable & np.array([label in indexed_classes for label in labels], bool)
    if (readable & ~scorable).any():
        missing = sorted({label for label, ok in zip(labels, readable & ~scorable) if ok})
        console.warn(f"skipped {int((readable & ~scorable).sum())} queries of classes the index does not have "
                     f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})")
    if not scorable.any():
        raise InputError(f"{queries_dir}: no readable query of a class the index has; pass --queries with images of its classes")
    query_paths = [path for path, ok in zip(query_paths, scorable) if ok]
    query_labels = [label for label, ok in zip(labels, scorable) if ok]
    query_features, mirrored_features = query_features[scorable[readable]], mirrored_features[scorable[readable]]
    exclude = ranking.rows_of_queries(feature_index, query_paths)
    console.log(f"scoring {len(query_paths)} queries against {feature_index.count} indexed images")
    database_labels = feature_index.labels
    diffusion_graph = None
    if diffusion and metric == "cosine":
        diffusion_graph = feature_index.diffusion_graph()
    results = {"autoencoder": retrieval_metrics(
        vectors.postprocess_features(feature_index.as_stored(query_features), metric), query_labels,
        vectors.postprocess_features(feature_index.features, metric), database_labels, exclude, diffusion_graph=diffusion_graph,
        mirrored_features=vectors.postprocess_features(feature_index.as_stored(mirrored_features), metric))}
    image_size, channels = feature_index.image_size, feature_index.channels
    database_paths = image_folders.full_paths(feature_index.dataset_dir, feature_index.paths)
    database_pixels, database_readable = encoding.pixel_features(database_paths, image_size, channels, batch_size)
    if not database_readable.all():
        raise InputError(f"{feature_index.dataset_dir}: indexed images are gone or changed; rebuild the index")
    query_pixels, _ = encoding.pixel_features(query_paths, image_size, channels, batch_size)
    for pixel_metric in ("euclidean", "cosine"):
        results[f"pixels_{pixel_metric}"] = retrieval_metrics(
            vectors.postprocess_features(query_pixels, pixel_metric), query_labels,
            vectors.postprocess_features(database_pixels, pixel_metric), database_labels, exclude)
    return results | {"queries": len(query_paths), "database": len(database_paths)}


def labelled_only(items, labels):
    """items and labels without the unlabelled (None) ones."""
    kept = [(item, label) for item, label in zip(items, labels) if label is not None]
    return [item for item, _ in kept], [label for _, label in kept]


def validation_retrieval(model_path, settings):
    """Retrieval metrics of a trained model with its validation split as queries and its training split as database.

    Features are made as index_dataset.py makes them (with settings.histograms) and ranked as search ranks them
    by cosine similarity (each row by the nearer of the query and its mirror image), without diffusion, whose
    graph would cost more than the trial.
    """
    relative_paths, labels = image_folders.list_images(settings.dataset_dir)
    if labels is None:
        raise InputError(f"{settings.dataset_dir}: tuning scores retrieval by class, so it needs class subfolders")
    train_rows, validation_rows = image_folders.split_indices(len(relative_paths), settings.validation_fraction, settings.seed)
    validation_rows = [row for row in validation_rows if labels[row] is not None]  # An unlabelled query cannot be scored.
    encoder = model.encoder_of(model.load_autoencoder(model_path))

    def paths_of(rows):
        return image_folders.full_paths(settings.dataset_dir, [relative_paths[row] for row in rows])

    query_features, mirrored_features, readable = encoding.encode_queries(
        encoder, paths_of(validation_rows), settings.encode_batch_size, settings.histograms)
    query_labels = [labels[row] for row, ok in zip(validation_rows, readable) if ok]
    database_features, readable = encoding.encode_paths(encoder, paths_of(train_rows), settings.encode_batch_size,
                                                        histograms=settings.histograms)
    database_labels = [labels[row] for row, ok in zip(train_rows, readable) if ok]
    return retrieval_metrics(vectors.postprocess_features(query_features, "cosine"), query_labels,
                             vectors.postprocess_features(database_features, "cosine"), database_labels,
                             mirrored_features=vectors.postprocess_features(mirrored_features, "cosine"))
