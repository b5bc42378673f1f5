"""Indexing throughput: index_dataset.py on a folder of real images against the encoder's bare predict."""

import argparse
import os
import shutil
import tempfile
import time

import numpy as np

import common
import config
import index_dataset
from imsearch import data, encoding, model


def link_folder(paths, folder):
    """A folder of hard links to the given images: real files read from disk, without copying their bytes."""
    for number, path in enumerate(paths):
        target = os.path.join(folder, f"{number:06d}.png")
        try:
            os.link(path, target)
        except OSError:  # Another file system: copy instead.
            shutil.copyfile(path, target)
    return folder


def index_seconds(folder, model_path, flags):
    """Wall time of index_dataset.main on folder, after one warm-up run that fills the file cache."""
    # The diffusion graph is a separate O(N^2) stage after encoding; this measures the encoding pipeline.
    argv = ["--dataset", folder, "--model", model_path, "--index", os.path.join(folder, "features.pkl"), "--no-diffusion", *flags]
    index_dataset.main(argv)
    start = time.perf_counter()
    index_dataset.main(argv)
    return time.perf_counter() - start


def in_memory_seconds(function, images, batch_size):
    """Median wall time of function over images already in memory, batch by batch, after one traced call."""
    function(images[:batch_size])
    return common.median_seconds(lambda: [function(images[start : start + batch_size]) for start in range(0, len(images), batch_size)], 3)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--model", default=config.DEFAULTS.model_path, help="a trained model (run demo.sh first)")
    arguments = parser.parse_args()
    paths = common.real_image_paths(arguments.images)
    encoder = model.encoder_of(model.load_autoencoder(arguments.model))
    size, channels = model.image_shape_of(encoder)
    pixels = np.stack([data.read_image(path, size, channels) for path in paths])
    in_memory = pixels.astype(np.float32) / 255
    batch_size = config.DEFAULTS.encode_batch_size
    encoder.predict(in_memory[:batch_size], batch_size=batch_size, verbose=0)  # Trace once before timing.
    predict_seconds = common.median_seconds(lambda: encoder.predict(in_memory, batch_size=batch_size, verbose=0), 3)
    with_histograms_seconds = in_memory_seconds(encoding.make_encode_function(encoder, True), pixels, batch_size)
    with tempfile.TemporaryDirectory() as folder:
        link_folder(paths, folder)
        encoder_only_seconds = index_seconds(folder, arguments.model, ["--no-histograms"])
        default_seconds = index_seconds(folder, arguments.model, [])
    count = len(paths)
    common.report("bare_predict_images_per_s", count / predict_seconds, "img/s (encoder.predict, images already in memory)")
    common.report("index_dataset_encoder_only_images_per_s", count / encoder_only_seconds,
                  "img/s (--no-histograms: reading, decoding, encoding, writing)")
    common.report("index_over_predict", predict_seconds / encoder_only_seconds, "ratio (target >= 0.67)")
    common.report("in_memory_with_histograms_images_per_s", count / with_histograms_seconds,
                  "img/s (the encoder plus histograms, images already in memory)")
    common.report("index_dataset_default_images_per_s", count / default_seconds, "img/s (with histograms, the default)")
    common.report("index_default_over_in_memory", with_histograms_seconds / default_seconds, "ratio")


if __name__ == "__main__":
    main()
