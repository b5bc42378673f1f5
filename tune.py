"""Search latent size, filters, learning rate and L1 penalty, scoring each by retrieval mAP on the validation split."""

import dataclasses
import itertools
import json
import os
import random
import shlex

import config
from imsearch import InputError, cli, console

image_folders, metrics, safeio, training = cli.lazy_modules("image_folders", "metrics", "safeio", "training")

FIELDS = (
    "dataset_dir", "output_dir", "image_size", "channels", "architecture", "l2_weight_decay", "loss", "batch_size",
    "validation_fraction", "seed", "encode_batch_size", "histograms", "tune_latent_dims", "tune_first_filters",
    "tune_learning_rates", "tune_l1_activities", "tune_trials", "tune_epochs",
)
COLUMNS = ("trial", "latent_dim", "filters", "learning_rate", "l1_activity", "val_loss", "map", "precision_at_10")


def draw_trials(settings):
    """Settings of the grid points to train: --tune-trials of them, drawn with the seed."""
    grid = list(itertools.product(settings.tune_latent_dims, settings.tune_first_filters, settings.tune_learning_rates,
                                  settings.tune_l1_activities))
    chosen = random.Random(settings.seed).sample(grid, min(settings.tune_trials, len(grid)))
    tune_dir = os.path.join(settings.output_dir, "tune")
    return [
        dataclasses.replace(settings, latent_dim=latent_dim, filters=(first, 2 * first), learning_rate=learning_rate,
                            l1_activity=l1_activity, epochs=settings.tune_epochs,
                            output_dir=os.path.join(tune_dir, f"trial-{number}"))
        for number, (latent_dim, first, learning_rate, l1_activity) in enumerate(chosen, start=1)
    ]


@cli.reports_errors
def main(argv=None):
    """Parse flags, train every drawn trial, print one tab-separated line each, save the best settings."""
    settings, _ = cli.parse_config(cli.make_parser(__file__, __doc__, config.DEFAULTS, FIELDS), argv)
    labels = image_folders.list_images(settings.dataset_dir)[1]
    if labels is None or len(set(labels) - {None}) < 2:
        raise InputError(f"{settings.dataset_dir}: tuning scores retrieval by class, so it needs two or more class "
                         "subfolders (<class>/<image>)")
    print("\t".join(COLUMNS), flush=True)
    results = []
    trials = draw_trials(settings)
    for number, trial in enumerate(trials, start=1):
        console.log(f"trial {number}: latent {trial.latent_dim}, filters {trial.filters}, "
                f"learning rate {trial.learning_rate}, L1 {trial.l1_activity}")
        model_path, history_rows = training.train(trial)
        scores = metrics.validation_retrieval(model_path, trial)
        monitor = training.checkpoint_metric(trial)
        val_loss = min(row.get(monitor, row["loss"]) for row in history_rows)
        results.append({"trial": number, "latent_dim": trial.latent_dim, "filters": list(trial.filters),
                        "learning_rate": trial.learning_rate, "l1_activity": trial.l1_activity, "val_loss": val_loss,
                        "map": scores["map"], "precision_at_10": scores["precision_at_10"], "model_path": model_path})
        print("\t".join(format_value(results[-1][column]) for column in COLUMNS), flush=True)
    best = max(results, key=lambda result: result["map"])
    best_path = os.path.join(settings.output_dir, "tune", "best.json")
    safeio.atomic_write_bytes(best_path, json.dumps({"best": best, "trials": results}, indent=2).encode())
    best_trial = dataclasses.replace(trials[best["trial"] - 1], epochs=config.DEFAULTS.epochs, output_dir=settings.output_dir)
    console.log(f"best: trial {best['trial']} (mAP {best['map']:.4f}); train it fully with: {train_command(best_trial)}; "
                f"all trials in {best_path}")


def train_command(trial):
    """The train.py command line for a trial's settings: every train.py flag whose value is not the default."""
    import train

    words = ["python", "train.py"]
    for name in train.FIELDS:
        value, default = getattr(trial, name), getattr(config.DEFAULTS, name)
        if value == default:
            continue
        flag = cli.flag_name(name)
        if isinstance(value, bool):
            words.append(flag if value else "--no-" + flag[2:])
        else:
            words += [flag, *map(str, value if isinstance(value, tuple) else (value,))]
    return shlex.join(words)


def format_value(value):
    """A table cell: floats to 4 significant digits, lists space-separated."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


if __name__ == "__main__":
    main()
