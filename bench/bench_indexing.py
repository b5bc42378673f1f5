"""Indexing throughput: index_dataset.py on a folder of real images against the encoder's bare predict.

Also times the encoder alone on the same in-memory batches in both runtimes, Keras (a traced tf.function) and
onnxruntime on the ONNX export, which indexing and search use.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

import common
import index_dataset
import config
from imsearch import encoding, image_folders, model, runtime


def link_folder(paths, folder):
    """A folder of hard links to the given images: real files read from disk, without copying their bytes."""
    for number, path in enumerate(paths):
        target = os.path.join(folder, f"{number:06d}.png")
        try:
            os.link(path, target)
        except OSError:  # Another file system: copy instead.
            shutil.copyfile(path, target)
    return folder


def timed(function):
    """Wall time of one call."""
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5, help="rounds; each times every variant once, side by side")
    parser.add_argument("--model", default=config.DEFAULTS.in_run_folder().model_path, help="a trained model (run demo.sh first)")
    arguments = parser.parse_args()
    paths = common.real_image_paths(arguments.images)
    autoencoder = model.load_autoencoder(arguments.model)
    network, keras_encoder, onnx_encoder = model.encoder_network(autoencoder), model.encoder_of(autoencoder), runtime.open_encoder(arguments.model)
    size, channels = onnx_encoder.image_size, onnx_encoder.channels
    pixels = np.stack([image_folders.read_image(path, size, channels) for path in paths])
    in_memory = pixels.astype(np.float32) / 255
    batch_size = config.DEFAULTS.encode_batch_size
    encode = encoding.make_encode_function(onnx_encoder, True)
    batches = lambda function: [function(in_memory[start : start + batch_size]) for start in range(0, len(in_memory), batch_size)]  # noqa: E731
    variants = {
        "predict": lambda: network.predict(in_memory, batch_size=batch_size, verbose=0),
        "keras_batches": lambda: batches(keras_encoder),
        "onnx_batches": lambda: batches(onnx_encoder),
        "in_memory_with_histograms": lambda: [encode(pixels[start : start + batch_size]) for start in range(0, len(pixels), batch_size)],
    }
    with tempfile.TemporaryDirectory() as folder:
        link_folder(paths, folder)
        # The diffusion graph is a separate O(N^2) stage after encoding; this measures the encoding pipeline.
        argv = ["--dataset", folder, "--model", arguments.model, "--index", os.path.join(folder, "features.pkl"), "--no-diffusion"]
        variants["index_encoder_only"] = lambda: index_dataset.main([*argv, "--no-histograms"])
        variants["index_default"] = lambda: index_dataset.main(argv)
        for function in variants.values():
            function()  # Trace the functions and fill the file cache before timing.
        times = {name: [] for name in variants}
        for _ in range(arguments.repeats):
            for name, function in variants.items():
                times[name].append(timed(function))
    for name, values in times.items():
        print(f"{name}: {', '.join(f'{value:.2f}' for value in values)} s", file=sys.stderr)
    seconds = {name: statistics.median(values) for name, values in times.items()}
    # predict sometimes stalls for seconds in its tf.data pipeline (2.6 s against 5.3 s here): its fastest
    # round is the encoder's real capacity, and the stricter reference for the suite's median.
    seconds["predict"] = min(times["predict"])
    rate = {name: len(paths) / value for name, value in seconds.items()}
    common.report("bare_predict_images_per_s", rate["predict"], "img/s (encoder.predict, images already in memory, fastest round)")
    common.report("index_dataset_encoder_only_images_per_s", rate["index_encoder_only"],
                  "img/s (--no-histograms: reading, decoding, encoding, writing)")
    common.report("index_over_predict", rate["index_encoder_only"] / rate["predict"], "ratio (target >= 0.67)")
    common.report("keras_encoder_images_per_s", rate["keras_batches"], f"img/s (Keras, batches of {batch_size} in memory)")
    common.report("onnx_encoder_images_per_s", rate["onnx_batches"], "img/s (onnxruntime, the same batches)")
    common.report("onnx_over_keras", rate["onnx_batches"] / rate["keras_batches"], "ratio")
    common.report("in_memory_with_histograms_images_per_s", rate["in_memory_with_histograms"],
                  "img/s (the encoder plus histograms, images already in memory)")
    common.report("index_dataset_default_images_per_s", rate["index_default"], "img/s (with histograms, the default)")
    common.report("index_default_over_in_memory", rate["index_default"] / rate["in_memory_with_histograms"], "ratio")


if __name__ == "__main__":
    main()
