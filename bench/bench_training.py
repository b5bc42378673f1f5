"""Training throughput: train.py's stream from disk against fit on the same images in memory, and each objective's cost."""

import argparse
import dataclasses
import time

import numpy as np
from tensorflow import keras

import common
import config
from imsearch import image_folders, training


class EpochTimer(keras.callbacks.Callback):
    """Wall time of each epoch."""

    def on_train_begin(self, logs=None):
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.start)


def images_per_second(inputs, count, epochs, shape=(28, 1), objective="reconstruction", **fit_arguments):
    """Fit a fresh default model for (image size, channels) and objective; images/s of the median epoch after the first (which traces)."""
    settings = dataclasses.replace(config.DEFAULTS, objective=objective)
    trained = training.build_compiled(shape, settings, steps_per_epoch=-(-count // settings.batch_size))
    timer = EpochTimer()
    trained.fit(inputs, epochs=epochs, callbacks=[timer], verbose=0, **fit_arguments)
    return count / float(np.median(timer.times[1:]))


def streamed_images_per_second(paths, epochs, shape, objective):
    """images_per_second streamed from disk as train.py streams, for objective."""
    settings = dataclasses.replace(config.DEFAULTS, objective=objective)
    dataset = training.input_pipeline(paths, shape, settings, shuffle_seed=0)
    return images_per_second(dataset, len(paths), epochs, shape, objective)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=3)
    arguments = parser.parse_args()
    paths = common.real_image_paths(arguments.images)
    batch_size = config.DEFAULTS.batch_size
    streamed = streamed_images_per_second(paths, arguments.epochs, (28, 1), "reconstruction")
    in_memory = np.stack([image_folders.read_image(path, 28, 1) for path in paths]).astype(np.float32) / 255
    memory = images_per_second(in_memory, len(paths), arguments.epochs, y=in_memory, batch_size=batch_size, shuffle=True)
    views = streamed_images_per_second(paths, arguments.epochs, (28, 1), "views")
    common.report("train_streamed_images_per_s", streamed, "img/s")
    common.report("train_in_memory_images_per_s", memory, "img/s")
    common.report("train_streamed_over_in_memory", streamed / memory, "ratio (target >= 0.9)")
    common.report("train_views_objective_images_per_s", views, "img/s")
    common.report("train_views_over_reconstruction_time", streamed / views, "ratio (target <= 2)")
    common.report("fashion_mnist_60_epochs_views_minutes", 60 * 54_000 / views / 60, "min")
    common.report("fashion_mnist_60_epochs_reconstruction_minutes", 60 * 54_000 / streamed / 60, "min")


if __name__ == "__main__":
    main()
