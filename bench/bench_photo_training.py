"""Training time on folders of colour photos: seconds per epoch of the default model at its photo defaults.

Builds folders of 1,000 and 10,000 photo views (prepare_dataset.py photos's edits, 160-800 px JPEGs) under
output/bench/photo-training/, then fits the default model as train.py does (64x64 colour, batch 32,
streamed from disk), with the default views objective and with reconstruction alone, for --epochs epochs,
and reports the median epoch after the first (which traces) and what a 60-epoch run takes at that rate.

    python bench/bench_photo_training.py [--images 1000 10000] [--epochs 3]
"""

import argparse
import os

import common
from bench_training import streamed_images_per_second
import config
from imsearch import image_folders, photo_sets

OUTPUT_DIR = os.path.join(common.REPOSITORY_DIR, "output", "bench", "photo-training")
# What train.py infers for a folder of photos of varied sizes (image_folders.VARIED_IMAGE_SIZE, colour).
IMAGE_SIZE, CHANNELS = image_folders.VARIED_IMAGE_SIZE, 3


def photo_folder(count):
    """A folder of count photo views, built once."""
    folder = os.path.join(OUTPUT_DIR, str(count))
    if not os.path.isdir(folder):
        pictures = photo_sets.find_photos()
        photo_sets.build_views(pictures, folder, train_views=-(-count // len(pictures)), test_views=0)
    relative_paths, _ = image_folders.list_images(folder)
    return image_folders.full_paths(folder, relative_paths)[:count]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--epochs", type=int, default=3)
    arguments = parser.parse_args()
    settings = config.DEFAULTS
    for count in arguments.images:
        paths = photo_folder(count)
        for objective in ("views", "reconstruction"):
            rate = streamed_images_per_second(paths, arguments.epochs, (IMAGE_SIZE, CHANNELS), objective)
            common.report(f"train_{count}_photos_{objective}_images_per_s", rate, "img/s")
            common.report(f"train_{count}_photos_{objective}_seconds_per_epoch", len(paths) / rate, "s")
            common.report(f"train_{count}_photos_{objective}_60_epochs_minutes", settings.epochs * len(paths) / rate / 60, "min")


if __name__ == "__main__":
    main()
