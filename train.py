"""Train the regularized convolutional autoencoder on a folder of images."""

import config
from imsearch import cli, console

training = cli.lazy_modules("training")

FIELDS = (
    "dataset_dir", "output_dir", "image_size", "channels", "architecture", "filters", "convolutions_per_stage", "latent_dim",
    "l2_weight_decay", "l1_activity", "loss", "objective", "invariance", "invariance_weight", "temperature",
    "histogram_prediction_weight",
    "projection_dim", "view_crop_area", "flip_augmentation", "denoise_std", "shift_pixels", "learning_rate", "batch_size", "epochs",
    "early_stopping_patience", "validation_fraction", "seed",
)


@cli.reports_errors
def main(argv=None):
    """Parse flags, train, and report where the model went."""
    settings, _ = cli.parse_config(cli.make_parser(__file__, __doc__, config.DEFAULTS, FIELDS), argv)
    model_path, history_rows = training.train(settings)
    monitor = training.checkpoint_metric(settings)
    best = min((row.get(monitor, row["loss"]) for row in history_rows), default=float("nan"))
    console.log(f"{len(history_rows)} epochs, best {monitor} {best:.5f}; model saved to {model_path}")


if __name__ == "__main__":
    main()
