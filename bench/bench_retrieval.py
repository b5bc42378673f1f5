"""Retrieval quality on every benchmark set: raw pixels, each feature part alone (and, for colour, both histograms) and the default, re-ranked or not.

For each set (Fashion-MNIST, scikit-learn's digits, the photos near-duplicate set and the small photo
folder; each prepared by prepare_dataset.py when missing) the default model is trained on the train split
unless output/bench/<set>/ holds one, the train split is indexed with default settings, and the test
images are the queries (relevant = same class). Parts are ranked as search.py ranks: cosine similarity,
each row by the nearer of the query and its mirror image; raw pixels are the plain cosine baseline.
Re-ranking is the default diffusion over each row set's own neighbour graph. Prints one markdown table
per set on stdout (R@1: the share of queries whose first hit is relevant; top share: the largest share of
queries with one and the same first hit), and the steps' times on stderr. A compact index (see
index_dataset.py --compact-above) gets a row for its features in full beside the default.

    python bench/bench_retrieval.py [--sets photos photos-small] [--max-queries 2000] [--epochs 60] [--compact-above 1]
"""

import argparse
import os
import sys
import time

import numpy as np

from common import REPOSITORY_DIR, run_script
from imsearch import vectors

SETS = ("fashion-mnist", "digits", "photos", "photos-small")
DATASET_ROOT = os.path.join(REPOSITORY_DIR, "dataset")
OUTPUT_ROOT = os.path.join(REPOSITORY_DIR, "output", "bench")


def prepare(name, epochs, index_flags=()):
    """Dataset and model of a set made where missing, and its default index made anew: (train, test, output dir)."""
    train_dir, test_dir = (os.path.join(DATASET_ROOT, name, split) for split in ("train", "test"))
    output_dir = os.path.join(OUTPUT_ROOT, name)
    if not os.path.isdir(train_dir):
        run_script(["prepare_dataset.py", name, "--dataset-root", DATASET_ROOT])
    if not os.path.isfile(os.path.join(output_dir, "autoencoder.keras")):
        seconds = run_script(["train.py", "--dataset", train_dir, "--output", output_dir, *(["--epochs", str(epochs)] if epochs else [])])
        print(f"{name}: trained in {seconds:.0f} s", file=sys.stderr, flush=True)
    seconds = run_script(["index_dataset.py", "--dataset", train_dir, "--model", os.path.join(output_dir, "autoencoder.keras"),
                          "--index", os.path.join(output_dir, "features.pkl"), *index_flags])
    print(f"{name}: indexed in {seconds:.0f} s", file=sys.stderr, flush=True)
    return train_dir, test_dir, output_dir


def cosine_rows(features):
    """Rows scaled to unit length, as cosine ranking takes them."""
    return vectors.postprocess_features(features, "cosine")


def score(database, queries, mirrored, database_labels, query_labels, diffusion_graph):
    """retrieval_metrics of unit-length features, ranked by cosine or by diffusion over diffusion_graph."""
    from imsearch import metrics

    return metrics.retrieval_metrics(queries, query_labels, database, database_labels, diffusion_graph=diffusion_graph,
                                     mirrored_features=mirrored)


def graph_of(features):
    """The DiffusionGraph of a neighbour graph built over these features."""
    from imsearch import graph

    rows, similarities = graph.neighbour_graph(features)
    return graph.diffusion_graph_of(rows, similarities, graph.graph_spectrum(rows, similarities))


def table_rows(name, epochs, max_queries, index_flags=()):
    """(features, re-ranking, metrics) rows of one set."""
    import config
    from imsearch import descriptors, encoding, graph, image_folders, index, model

    train_dir, test_dir, output_dir = prepare(name, epochs, index_flags)
    autoencoder = model.load_autoencoder(os.path.join(output_dir, "autoencoder.keras"))
    encoder = model.encoder_of(autoencoder)
    feature_index = index.load_index(os.path.join(output_dir, "features.pkl"), encoder)
    relative_paths, query_labels = image_folders.list_images(test_dir)
    if max_queries and len(relative_paths) > max_queries:
        chosen = np.sort(np.random.default_rng(0).choice(len(relative_paths), max_queries, replace=False))
        relative_paths, query_labels = [relative_paths[i] for i in chosen], [query_labels[i] for i in chosen]
    query_paths = image_folders.full_paths(test_dir, relative_paths)
    batch_size = config.DEFAULTS.encode_batch_size
    queries, mirrored, _ = encoding.encode_queries(encoder, query_paths, batch_size, histograms=feature_index.histograms)
    database_paths, database_labels = image_folders.full_paths(train_dir, feature_index.paths), feature_index.labels
    database = feature_index.features
    if feature_index.compact:  # The projection mixes the parts: encode them again for the parts' rows.
        database, _ = encoding.encode_paths(encoder, database_paths, batch_size, histograms=feature_index.histograms)
    image_size, channels = feature_index.image_size, feature_index.channels
    database_pixels, _ = encoding.pixel_features(database_paths, image_size, channels, batch_size)
    query_pixels, _ = encoding.pixel_features(query_paths, image_size, channels, batch_size)
    encoder_length = encoder.length
    gradient_end = encoder_length + descriptors.HISTOGRAM_LENGTH
    parts = [("encoder", slice(0, encoder_length)), ("gradient histograms", slice(encoder_length, gradient_end))]
    if channels == 3:
        parts.append(("colour histograms", slice(gradient_end, None)))
    default = f"**default**: all {len(parts)} parts" + (", compact" if feature_index.compact else "")
    if channels == 3:  # What the encoder adds to the two histograms on colour sets.
        parts.append(("both histograms (no encoder)", slice(encoder_length, None)))
    if feature_index.compact:
        parts.append(("all parts in full (not compact)", slice(None)))
    rows = []
    for reranked in (False, True):
        start = time.perf_counter()
        pixels = cosine_rows(database_pixels)
        metrics = score(pixels, cosine_rows(query_pixels), None, database_labels, query_labels, graph_of(pixels) if reranked else None)
        rows.append(("raw pixels (no mirror)", reranked, metrics))
        for part, columns in parts:
            part_database = cosine_rows(database[:, columns])
            metrics = score(part_database, cosine_rows(queries[:, columns]), cosine_rows(mirrored[:, columns]), database_labels, query_labels,
                            graph_of(part_database) if reranked else None)
            rows.append((part, reranked, metrics))
        # The default as search ranks it: the index's own features (projected when compact) and graph.
        metrics = score(cosine_rows(feature_index.features), cosine_rows(feature_index.as_stored(queries)),
                        cosine_rows(feature_index.as_stored(mirrored)), database_labels, query_labels,
                        feature_index.diffusion_graph() if reranked else None)
        rows.append((default, reranked, metrics))
        if reranked and feature_index.diffusion_basis is not None:
            # The same diffusion solved by conjugate gradients over the whole graph, as before the index kept its spectrum.
            steps = graph.diffusion_graph_of(feature_index.neighbours, feature_index.neighbour_similarities)
            metrics = score(cosine_rows(feature_index.features), cosine_rows(feature_index.as_stored(queries)),
                            cosine_rows(feature_index.as_stored(mirrored)), database_labels, query_labels, steps)
            rows.append((default + ", conjugate gradients instead of the spectrum", reranked, metrics))
        print(f"{name}: {'diffusion' if reranked else 'cosine'} rows in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return rows, len(query_paths), len(database)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    parser.add_argument("--max-queries", type=int, default=0, help="score at most this many random test images per set; 0: all")
    parser.add_argument("--epochs", type=int, default=0, help="epochs for models trained here; 0: train.py's default")
    parser.add_argument("--compact-above", type=int, help="index_dataset.py's --compact-above for every set (1: compact even the small ones)")
    arguments = parser.parse_args()
    index_flags = () if arguments.compact_above is None else ("--compact-above", str(arguments.compact_above))
    for name in arguments.sets:
        rows, query_count, database_count = table_rows(name, arguments.epochs, arguments.max_queries, index_flags)
        print(f"\n{name}: {query_count} queries against {database_count} indexed images\n")
        print("| features | re-ranking | mAP | P@10 | R@1 | top share |")
        print("| --- | --- | --- | --- | --- | --- |")
        for part, reranked, metrics in rows:
            print(f"| {part} | {'diffusion' if reranked else 'none (cosine)'} | {metrics['map']:.4f} | "
                  f"{metrics['precision_at_10']:.4f} | {metrics['precision_at_1']:.4f} | {metrics['top_hit_share']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
