"""Report the autoencoder's reconstruction error and write originals above their reconstructions."""

import json
import os

from imsearch import InputError, cli, data, metrics, model, pictures, training

FIELDS = ("dataset_dir", "output_dir", "model_path", "encode_batch_size")
EXAMPLE_COUNT = 8


def read_training_config(model_path):
    """The config train.py saved beside the model."""
    config_path = training.config_path_for(model_path)
    try:
        with open(config_path) as file:
            return json.load(file)
    except (OSError, ValueError):
        raise InputError(f"{config_path}: training config missing or unreadable; run train.py to make it") from None


@cli.reports_errors
def main(argv=None):
    """Parse flags, measure reconstruction error, write reconstructions.png, print the figures."""
    settings, _ = cli.parse_config(cli.make_parser(__doc__, FIELDS), argv)
    autoencoder = model.load_autoencoder(settings.model_path)
    trained = read_training_config(settings.model_path)
    _, validation_paths = training.split_folder(trained["dataset_dir"], trained["validation_fraction"], trained["seed"])
    results = {"validation": metrics.reconstruction_error(autoencoder, validation_paths, settings.encode_batch_size)}
    if os.path.realpath(settings.dataset_dir) != os.path.realpath(trained["dataset_dir"]):
        relative_paths, _ = data.list_images(settings.dataset_dir)
        folder_paths = [os.path.join(settings.dataset_dir, path) for path in relative_paths]
        results[settings.dataset_dir] = metrics.reconstruction_error(autoencoder, folder_paths, settings.encode_batch_size)
    print("split\timages\treconstruction_mse")
    for name, (error, count) in results.items():
        print(f"{name}\t{count}\t{error:.6f}")
    examples = data.keep_readable(validation_paths[:EXAMPLE_COUNT * 2], *model.image_shape_of(autoencoder))[:EXAMPLE_COUNT]
    originals, reconstructions = metrics.reconstruct_examples(autoencoder, examples)
    pictures.write_rgb(os.path.join(settings.output_dir, "reconstructions.png"), pictures.reconstruction_grid(originals, reconstructions))


if __name__ == "__main__":
    main()
