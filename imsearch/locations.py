"""Where the suite's files live: the files of a run folder and Debian's bundled benchmark data."""

# The files a run folder (--output) holds, each written by one script and read by the later ones.
MODEL_FILE = "autoencoder.keras"
INDEX_FILE = "features.pkl"
# Where Debian's packages put the bundled benchmark data (dataset-fashion-mnist, the wallpaper packages).
DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
DEBIAN_SHARE_DIR = "/usr/share"
