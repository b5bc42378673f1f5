"""Encode every image of a folder with the trained encoder and save the feature index."""

from imsearch import cli, index, model, safeio

FIELDS = ("dataset_dir", "model_path", "index_path", "encode_batch_size")


@cli.reports_errors
def main(argv=None):
    """Parse flags, encode the folder, write the index."""
    settings, _ = cli.parse_config(cli.make_parser(__doc__, FIELDS), argv)
    autoencoder = model.load_autoencoder(settings.model_path)
    feature_index = index.build_index(
        model.encoder_of(autoencoder), settings.dataset_dir, safeio.sha256_of_file(settings.model_path),
        settings.encode_batch_size,
    )
    index.save_index(feature_index, settings.index_path)
    count, length = feature_index["features"].shape
    cli.log(f"indexed {count} images ({length} features each) to {settings.index_path}")


if __name__ == "__main__":
    main()
