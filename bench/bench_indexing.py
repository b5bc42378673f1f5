"""Indexing throughput: index_dataset.py on a folder of real images against the encoder's bare predict."""

import argparse
import os
import tempfile
import time

import numpy as np

import common
import config
import index_dataset
from imsearch import data, model


def link_folder(paths, folder):
    """A folder of symbolic links to the given images, so the suite reads real files from disk."""
    for number, path in enumerate(paths):
        os.symlink(os.path.abspath(path), os.path.join(folder, f"{number:06d}.png"))
    return folder


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--model", default=config.DEFAULTS.model_path, help="a trained model (run demo.sh first)")
    arguments = parser.parse_args()
    paths = common.real_image_paths(arguments.images)
    encoder = model.encoder_of(model.load_autoencoder(arguments.model))
    size, channels = encoder.input_shape[1], encoder.input_shape[3]
    in_memory = np.stack([data.read_image(path, size, channels) for path in paths]).astype(np.float32) / 255
    batch_size = config.DEFAULTS.encode_batch_size
    encoder.predict(in_memory[:batch_size], batch_size=batch_size, verbose=0)  # Trace once before timing.
    predict_seconds = common.median_seconds(lambda: encoder.predict(in_memory, batch_size=batch_size, verbose=0), 3)
    with tempfile.TemporaryDirectory() as folder:
        link_folder(paths, folder)
        # The diffusion graph is a separate O(N^2) stage after encoding; this measures the encoding pipeline.
        argv = ["--dataset", folder, "--model", arguments.model, "--index", os.path.join(folder, "features.pkl"), "--no-diffusion"]
        index_dataset.main(argv)  # Warm the file cache, as predict's images are warm in memory.
        start = time.perf_counter()
        index_dataset.main(argv)
        index_seconds = time.perf_counter() - start
    common.report("index_dataset_images_per_s", len(paths) / index_seconds, "img/s (reading, decoding, encoding, writing)")
    common.report("bare_predict_images_per_s", len(paths) / predict_seconds, "img/s (images already in memory)")
    common.report("index_over_predict", predict_seconds / index_seconds, "ratio (target >= 0.67)")


if __name__ == "__main__":
    main()
