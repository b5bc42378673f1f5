"""Fit the autoencoder on an image folder: splits, streaming input, callbacks, atomic artefacts."""

import contextlib
import csv
import dataclasses
import io
import json
import os
import shutil
import sys

from imsearch import InputError, console, figures, image_folders, locations, model, safeio
from imsearch.backend import keras, tf

HISTORY_FILE = "history.csv"
LOSS_PLOT_FILE = "training_loss.png"


def config_path_for(model_path):
    """The training config JSON saved beside a model: output/autoencoder.keras -> output/autoencoder.json."""
    return os.path.splitext(model_path)[0] + ".json"


def split_folder(dataset_dir, validation_fraction, seed):
    """Absolute train and validation paths of a folder, split the same way by every script."""
    relative_paths, _ = image_folders.list_images(dataset_dir)
    paths = image_folders.full_paths(dataset_dir, relative_paths)
    train_indices, validation_indices = image_folders.split_indices(len(paths), validation_fraction, seed)
    return [paths[i] for i in train_indices], [paths[i] for i in validation_indices]


def validation_paths_of(record):
    """The validation images a training config records, as paths; the folder split again for a config without them."""
    if "validation_paths" not in record:
        return split_folder(record["dataset_dir"], record["validation_fraction"], record["seed"])[1]
    paths = image_folders.full_paths(record["dataset_dir"], record["validation_paths"])
    if paths and not os.path.isdir(record["dataset_dir"]):
        raise InputError(f"{record['dataset_dir']}: the folder the model was trained on is gone; evaluate.py measures "
                         "the reconstruction of its validation images, so restore it or pass another with --dataset")
    return paths


def read_training_config(model_path):
    """The config train.py saved beside the model, checked to describe that very model file."""
    config_path = config_path_for(model_path)
    try:
        with open(config_path) as file:
            record = json.load(file)
    except (OSError, ValueError):
        raise InputError(f"{config_path}: training config missing or unreadable; run train.py to make it") from None
    if not isinstance(record, dict) or "model_sha256" not in record:
        raise InputError(f"{config_path}: written by an older train.py, which did not record the model's SHA-256; "
                         "train the model again with train.py")
    if record["model_sha256"] != safeio.sha256_of_file(model_path):
        raise InputError(f"{config_path}: does not describe {model_path} (a training run stopped midway?); "
                         "finish the run with train.py, which resumes it")
    return record


def checkpoint_metric(settings):
    """The logged loss the best checkpoint is chosen by: validation reconstruction, the one thing both objectives share.

    Under the views objective a validation image is its own two views, so the invariance term there measures only
    how varied a batch's features are, and it does not follow training; the reconstruction of held-out images does.
    """
    return "val_loss" if settings.objective == "reconstruction" else "val_reconstruction_1_loss"


class AtomicBestCheckpoint(keras.callbacks.Callback):
    """Save the model whenever the monitored validation loss improves, with its config JSON, each through a temporary file.

    The JSON records the model file's SHA-256 and is renamed into place first: a run killed between the two
    renames leaves a JSON that names a model file which is not there, and read_training_config says so.
    """

    def __init__(self, model_path, record, autoencoder, monitor, best=float("inf")):
        super().__init__()
        self.model_path, self.record, self.autoencoder, self.monitor = model_path, record, autoencoder, monitor
        self.best = best

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get(self.monitor, (logs or {}).get("loss"))
        if loss is not None and loss < self.best:
            self.best = loss
            with safeio.atomic_path(self.model_path) as temporary_path:
                self.autoencoder.save(temporary_path)
                record = self.record | {"model_sha256": safeio.sha256_of_file(temporary_path)}
                safeio.atomic_write_bytes(config_path_for(self.model_path), json.dumps(record, indent=2).encode())


class HistoryWriter(keras.callbacks.Callback):
    """Rewrite the loss history CSV and plot after every epoch, atomically; rows carry over on resume."""

    def __init__(self, csv_path, plot_path, monitor, rows=()):
        super().__init__()
        self.csv_path, self.plot_path, self.monitor = csv_path, plot_path, monitor
        self.rows = list(rows)

    def on_epoch_end(self, epoch, logs=None):
        self.rows = [row for row in self.rows if row["epoch"] <= epoch]
        self.rows.append({"epoch": epoch + 1, **{key: float(value) for key, value in (logs or {}).items()}})
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(self.rows[-1]))
        writer.writeheader()
        writer.writerows(self.rows)
        safeio.atomic_write_bytes(self.csv_path, buffer.getvalue().encode())
        # The loss the checkpoint is chosen by, on training and validation images alike.
        history = {key: [row.get(name) for row in self.rows] for key, name in (("loss", self.monitor[len("val_"):]), ("val_loss", self.monitor))}
        figures.plot_losses(history, self.plot_path, "reconstruction loss" if self.monitor != "val_loss" else "loss")


def resolve_image_shape(settings, paths):
    """Settings with image_size and channels filled in from the images where they are 0."""
    if settings.image_size and settings.channels:
        return settings
    inferred_size, inferred_channels = image_folders.infer_image_shape(paths)
    return dataclasses.replace(
        settings, image_size=settings.image_size or inferred_size, channels=settings.channels or inferred_channels
    )


class ResumeState(keras.callbacks.Callback):
    """After every epoch, save the whole model with its optimizer as resume/epoch-NNNN.keras, atomically."""

    def __init__(self, resume_dir):
        super().__init__()
        self.resume_dir = resume_dir

    def on_epoch_end(self, epoch, logs=None):
        with safeio.atomic_path(os.path.join(self.resume_dir, f"epoch-{epoch + 1:04d}.keras")) as temporary_path:
            self.model.save(temporary_path)
        for name in os.listdir(self.resume_dir):
            if name.startswith("epoch-") and name < f"epoch-{epoch + 1:04d}.keras":
                os.remove(os.path.join(self.resume_dir, name))


def load_resume_state(resume_dir, record):
    """(model being trained, completed epochs) saved by an interrupted run of the same settings, or (None, 0)."""
    settings_path = os.path.join(resume_dir, "settings.json")
    try:
        with open(settings_path) as file:
            same_run = json.load(file) == record
    except (OSError, ValueError):
        same_run = False
    if not same_run:
        describe_discarded_run(resume_dir, settings_path, record)
        shutil.rmtree(resume_dir, ignore_errors=True)
        safeio.atomic_write_bytes(settings_path, json.dumps(record, indent=2).encode())
        return None, 0
    for name in sorted((name for name in os.listdir(resume_dir) if name.startswith("epoch-")), reverse=True):
        try:
            autoencoder = keras.models.load_model(os.path.join(resume_dir, name), safe_mode=True)
        except Exception as error:  # A state file Keras cannot read is skipped for the one before it.
            console.warn(f"{os.path.join(resume_dir, name)}: unreadable resume state ({type(error).__name__}), trying an older one")
            continue
        return autoencoder, int(name[len("epoch-") : -len(".keras")])
    return None, 0


def describe_discarded_run(resume_dir, settings_path, record):
    """Say so when an interrupted run's state is dropped because this run's settings or images differ from it."""
    epochs = [name for name in os.listdir(resume_dir) if name.startswith("epoch-")] if os.path.isdir(resume_dir) else []
    if not epochs:
        return
    try:
        with open(settings_path) as file:
            earlier = json.load(file)
    except (OSError, ValueError):
        earlier = {}
    changed = sorted(key for key in record.keys() | earlier.keys() if record.get(key) != earlier.get(key))
    changed = [key.replace("validation_paths", "the images").replace("_", "-") for key in changed
               if key not in ("train_images", "validation_images")]
    console.warn(f"the interrupted run in {resume_dir} had other settings ({', '.join(changed) or 'unreadable'}), so it cannot "
                 "resume: its saved state is dropped and training starts afresh")


def read_history(csv_path, completed_epochs):
    """Rows of an earlier run's history CSV up to completed_epochs, as numbers."""
    try:
        with open(csv_path, newline="") as file:
            rows = [{key: float(value) for key, value in row.items()} for row in csv.DictReader(file)]
    except (OSError, ValueError):
        return []
    return [row | {"epoch": int(row["epoch"])} for row in rows if row["epoch"] <= completed_epochs]


def make_callbacks(settings, model_path, record, autoencoder, resume_dir, history_rows):
    """Best checkpoint, resume state, history CSV and plot, TensorBoard, and optional early stopping."""
    logs_dir = os.path.join(settings.output_dir, "logs")
    monitor = checkpoint_metric(settings)
    best = min((row[monitor] for row in history_rows if monitor in row), default=float("inf"))
    callbacks = [
        AtomicBestCheckpoint(model_path, record, autoencoder, monitor, best),
        HistoryWriter(os.path.join(logs_dir, HISTORY_FILE), os.path.join(settings.output_dir, LOSS_PLOT_FILE), monitor, history_rows),
        ResumeState(resume_dir),
        keras.callbacks.TerminateOnNaN(),
    ]
    if utf8_path(logs_dir):  # TensorFlow's summary writer takes only a UTF-8 path.
        callbacks.append(keras.callbacks.TensorBoard(log_dir=logs_dir, profile_batch=0))
    else:
        console.note(f"{logs_dir}: no TensorBoard logs, as TensorFlow cannot write to a path that is not UTF-8")
    if settings.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, mode="min", patience=settings.early_stopping_patience))
    return callbacks


def utf8_path(path):
    """Whether a path's bytes are valid UTF-8 (Python holds other bytes as surrogates)."""
    try:
        os.fsencode(path).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def build_compiled(shape, settings, steps_per_epoch):
    """The model fit trains for settings.objective, compiled: the autoencoder itself, or its view trainer."""
    autoencoder = model.build_autoencoder(*shape, settings)
    if settings.objective == "reconstruction":
        model.compile_autoencoder(autoencoder, settings, steps_per_epoch)
        return autoencoder
    trainer = model.build_view_trainer(autoencoder, settings)
    model.compile_view_trainer(trainer, settings, steps_per_epoch)
    return trainer


def input_pipeline(paths, shape, settings, shuffle_seed=None):
    """image_folders.training_dataset for settings.objective and its augmentation flags; shuffled and edited when given a seed."""
    augmentation = {"flip": settings.flip_augmentation, "noise_std": settings.denoise_std, "shift_pixels": settings.shift_pixels}
    views = {"view_crop_area": settings.view_crop_area, "invariance": settings.invariance != "none",
             "histograms": bool(settings.histogram_prediction_weight)} if settings.objective == "views" else {}
    return image_folders.training_dataset(paths, *shape, settings.batch_size, shuffle_seed, augmentation if shuffle_seed is not None else None, **views)


def distribution_strategy():
    """MultiWorkerMirrored when TF_CONFIG describes a cluster, Mirrored over several GPUs, else the default."""
    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def train(settings):
    """Train on settings.dataset_dir, resuming an interrupted run; write model, config JSON, history, plot.

    Returns the model path and the history rows (one dict per epoch).
    """
    strategy = distribution_strategy()  # Before any TensorFlow op: collective ops are configured at startup.
    # Grappler's remapper cannot fuse this network's gradient (LeakyReLU after a biased convolution) and logs
    # "remapper failed" for every training graph; the graph then runs unfused anyway, so turning the pass off
    # changes nothing but the error line.
    tf.config.optimizer.set_experimental_options({"remapping": False})
    train_paths, validation_paths = split_folder(settings.dataset_dir, settings.validation_fraction, settings.seed)
    settings = resolve_image_shape(settings, train_paths + validation_paths)
    multiple = model.size_multiple(settings.filters)
    if settings.image_size % multiple:
        settings = dataclasses.replace(settings, image_size=-(-settings.image_size // multiple) * multiple)
        console.warn(f"image size rounded up to {settings.image_size}: each of the {len(settings.filters)} --filters halves it")
    if settings.shift_pixels >= settings.image_size:
        raise InputError(f"--shift-pixels {settings.shift_pixels} must be below the image size ({settings.image_size} pixels); "
                         "shifts of a few pixels are what it is for")
    console.log(f"reading the {len(train_paths) + len(validation_paths)} images of {settings.dataset_dir}")
    train_paths = image_folders.keep_readable(train_paths, settings.image_size, settings.channels)
    validation_paths = image_folders.keep_readable(validation_paths, settings.image_size, settings.channels) if validation_paths else []
    if not validation_paths:
        raise InputError(f"{settings.dataset_dir}: {len(train_paths)} readable image(s), too few: training holds "
                         "some out for validation, so it needs at least 2; add images")
    keras.utils.set_random_seed(settings.seed)
    shape = (settings.image_size, settings.channels)
    train_data = input_pipeline(train_paths, shape, settings, shuffle_seed=settings.seed)
    validation_data = input_pipeline(validation_paths, shape, settings)
    model_path = os.path.join(settings.output_dir, locations.MODEL_FILE)
    # The folder absolute and the validation files themselves, so evaluate.py measures this very split from any
    # folder, even after images were added. JSON keeps a name that is not UTF-8 as its surrogate escapes.
    dataset_dir = os.path.abspath(settings.dataset_dir)
    record = json.loads(json.dumps(dataclasses.asdict(settings) | {
        "dataset_dir": dataset_dir, "model_path": model_path, "train_images": len(train_paths),
        "validation_images": len(validation_paths),
        "validation_paths": [os.path.relpath(path, dataset_dir) for path in validation_paths]}))
    resume_dir = os.path.join(settings.output_dir, "logs", "resume")
    steps_per_epoch = -(-len(train_paths) // settings.batch_size)
    with strategy.scope():  # Variables made here are mirrored across the strategy's devices and workers.
        trained, completed_epochs = load_resume_state(resume_dir, record)
        if trained is None:
            trained = build_compiled(shape, settings, steps_per_epoch)
        autoencoder = model.autoencoder_of_trainer(trained) if settings.objective == "views" else trained
    if strategy is not tf.distribute.get_strategy():
        console.log(f"training with {type(strategy).__name__} on {strategy.num_replicas_in_sync} replicas")
    if completed_epochs:
        console.log(f"resuming after epoch {completed_epochs} from {resume_dir}")
    elif os.path.isfile(model_path):
        console.note(f"{model_path} of an earlier run will be replaced by this run's best model (use another --output to keep it)")
    console.log(f"training on {len(train_paths)} images, validating on {len(validation_paths)}, "
                f"{settings.image_size}x{settings.image_size}x{settings.channels}")
    history_rows = read_history(os.path.join(settings.output_dir, "logs", HISTORY_FILE), completed_epochs)
    # Keras prints progress to stdout; the suite keeps stdout for results.
    callbacks = make_callbacks(settings, model_path, record, autoencoder, resume_dir, history_rows)
    with contextlib.redirect_stdout(sys.stderr):
        trained.fit(
            train_data, validation_data=validation_data, epochs=settings.epochs, initial_epoch=completed_epochs,
            callbacks=callbacks, verbose=1 if sys.stderr.isatty() else 2, shuffle=False,
        )
    shutil.rmtree(resume_dir, ignore_errors=True)  # The run is complete, or diverged: nothing to resume.
    if callbacks[0].best == float("inf"):  # No epoch of this run reached a finite loss, so none was saved.
        raise InputError(f"training diverged (loss NaN or infinite) before any epoch could be saved; no model written to "
                         f"{settings.output_dir}: try a lower --learning-rate")
    # The encoder of the best model as ONNX beside it, so indexing and search run without TensorFlow.
    model.export_encoder(model.load_autoencoder(model_path), model_path)
    return model_path, read_history(os.path.join(settings.output_dir, "logs", HISTORY_FILE), settings.epochs)
