"""Training throughput: train.py's stream from disk against fit on the same images held in memory."""

import argparse
import time

import numpy as np
from tensorflow import keras

import common
from imsearch import config, data, model


class EpochTimer(keras.callbacks.Callback):
    """Wall time of each epoch."""

    def on_train_begin(self, logs=None):
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.start)


def images_per_second(inputs, count, epochs, shape=(28, 1), **fit_arguments):
    """Fit a fresh default model for (image size, channels); images/s of the median epoch after the first (which traces)."""
    settings = config.DEFAULTS
    autoencoder = model.build_autoencoder(*shape, settings)
    model.compile_autoencoder(autoencoder, settings, steps_per_epoch=-(-count // settings.batch_size))
    timer = EpochTimer()
    autoencoder.fit(inputs, epochs=epochs, callbacks=[timer], verbose=0, **fit_arguments)
    return count / float(np.median(timer.times[1:]))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=3)
    arguments = parser.parse_args()
    paths = common.real_image_paths(arguments.images)
    batch_size = config.DEFAULTS.batch_size
    streamed = images_per_second(data.training_dataset(paths, 28, 1, batch_size, shuffle_seed=0), len(paths), arguments.epochs)
    in_memory = np.stack([data.read_image(path, 28, 1) for path in paths]).astype(np.float32) / 255
    memory = images_per_second(in_memory, len(paths), arguments.epochs, y=in_memory, batch_size=batch_size, shuffle=True)
    common.report("train_streamed_images_per_s", streamed, "img/s")
    common.report("train_in_memory_images_per_s", memory, "img/s")
    common.report("train_streamed_over_in_memory", streamed / memory, "ratio (target >= 0.9)")


if __name__ == "__main__":
    main()
