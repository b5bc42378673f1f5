"""Where the suite's files live: the files of a run folder and Debian's bundled benchmark data."""

import os

# The files a run folder (--output) holds, each written by one script and read by the later ones.
MODEL_FILE = "autoencoder.keras"
INDEX_FILE = "features.pkl"
# The metadata key of the encoder's ONNX export that names, by SHA-256, the model file it was made from.
EXPORT_MODEL_SHA256_KEY = "imsearch_model_sha256"


def export_path_of(model_path):
    """The encoder's ONNX export beside a model: output/autoencoder.keras -> output/autoencoder.encoder.onnx."""
    return os.path.splitext(model_path)[0] + ".encoder.onnx"
# Where Debian's packages put the bundled benchmark data (dataset-fashion-mnist, the wallpaper packages).
DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
DEBIAN_SHARE_DIR = "/usr/share"
