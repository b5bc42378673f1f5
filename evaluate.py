"""Report the autoencoder's reconstruction error and write originals above their reconstructions."""

import json
import os

import config
from imsearch import cli, console

figures, image_folders, index, metrics, model, safeio, training, vectors = cli.lazy_modules(
    "figures", "image_folders", "index", "metrics", "model", "safeio", "training", "vectors")

FIELDS = ("output_dir", "model_path", "index_path", "queries_dir", "metric", "encode_batch_size", "diffusion")
EXAMPLE_COUNT = 8


def report_retrieval(settings, autoencoder):
    """Score the index with the labelled queries against pixel baselines; print, save JSON and a feature map."""
    encoder = model.encoder_of(autoencoder)
    feature_index = index.load_index(settings.index_path, encoder, safeio.sha256_of_file(settings.model_path))
    results = metrics.compare_with_baselines(
        encoder, feature_index, settings.queries_dir, settings.metric, settings.encode_batch_size,
        settings.diffusion,
    )
    console.log(f"retrieval: {results['queries']} queries against {results['database']} indexed images")
    print()  # A blank line between the two tables.
    print("method\t" + "\t".join(metrics.METRIC_NAMES))
    for method in ("autoencoder", "pixels_euclidean", "pixels_cosine"):
        print(method + "\t" + "\t".join(f"{results[method][name]:.4f}" for name in metrics.METRIC_NAMES))
    safeio.atomic_write_bytes(os.path.join(settings.output_dir, "metrics.json"), json.dumps(results, indent=2).encode())
    map_features = vectors.postprocess_features(feature_index.features, settings.metric)
    figures.plot_feature_map(map_features, feature_index.labels, os.path.join(settings.output_dir, "feature_map.png"))


@cli.reports_errors
def main(argv=None):
    """Parse flags, measure reconstruction error, write reconstructions.png, print the figures."""
    parser = cli.make_parser(__file__, __doc__, config.DEFAULTS, FIELDS)
    parser.add_argument("--dataset", dest="other_dataset", metavar="DATASET",
                        help="also measure the reconstruction error on this folder (default: the validation split only)")
    settings, arguments = cli.parse_config(parser, argv)
    autoencoder = model.load_autoencoder(settings.model_path)
    trained = training.read_training_config(settings.model_path)
    validation_paths = training.validation_paths_of(trained)
    results = {"validation": metrics.reconstruction_error(autoencoder, validation_paths, settings.encode_batch_size)}
    other = arguments.other_dataset
    if other and os.path.realpath(other) != os.path.realpath(trained["dataset_dir"]):
        relative_paths, _ = image_folders.list_images(other)
        results[other] = metrics.reconstruction_error(autoencoder, image_folders.full_paths(other, relative_paths), settings.encode_batch_size)
    print("split\timages\treconstruction_mse")
    for name, (error, count) in results.items():
        print(f"{name}\t{count}\t{error:.6f}")
    # Spread the examples over the sorted split, so they show several classes rather than the first one.
    spread = validation_paths[:: max(1, len(validation_paths) // (EXAMPLE_COUNT * 2))]
    examples = image_folders.keep_readable(spread, *model.image_shape_of(autoencoder))[:EXAMPLE_COUNT]
    originals, reconstructions = metrics.reconstruct_examples(autoencoder, examples)
    figures.write_rgb(os.path.join(settings.output_dir, "reconstructions.png"), figures.reconstruction_grid(originals, reconstructions))
    if settings.queries_dir:
        report_retrieval(settings, autoencoder)


if __name__ == "__main__":
    main()
