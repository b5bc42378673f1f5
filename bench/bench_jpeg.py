"""Reading camera-size JPEGs: decoding at a reduced scale (the suite) against decoding at full size.

Writes camera-like JPEGs (4000 x 3000, quality 90) made from the wallpaper photographs into a temporary
folder, then reads each at the model's size (64 x 64 colour by default) both ways; prints ms per image
for each, the speed-up, and how far the two results are apart (mean absolute difference, 0-255).

    python bench/bench_jpeg.py [--images 20] [--image-size 64]
"""

import argparse
import os
import tempfile

import cv2
import numpy as np

import common
from imsearch import image_folders, photo_sets


def read_full_size(path, image_size):
    """The reader without reduced decoding: every JPEG decoded at full size, then resized."""
    original = image_folders.decode_flag
    image_folders.decode_flag = lambda encoded, size, channels: cv2.IMREAD_COLOR
    try:
        return image_folders.read_image(path, image_size, 3)
    finally:
        image_folders.decode_flag = original


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=20, help="camera-size JPEGs to write and read")
    parser.add_argument("--image-size", type=int, default=64, help="the model's image side")
    arguments = parser.parse_args()
    pictures = sorted(photo_sets.find_photos().values())[: arguments.images]
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for number, picture in enumerate(pictures):
            image = cv2.resize(cv2.imread(picture), (4000, 3000), interpolation=cv2.INTER_CUBIC)
            paths.append(os.path.join(folder, f"{number:03d}.jpg"))
            cv2.imwrite(paths[-1], image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        size = arguments.image_size
        reduced_seconds = common.median_seconds(lambda: [image_folders.read_image(path, size, 3) for path in paths], 3)
        full_seconds = common.median_seconds(lambda: [read_full_size(path, size) for path in paths], 3)
        difference = np.mean([np.abs(image_folders.read_image(path, size, 3).astype(float) - read_full_size(path, size)).mean()
                              for path in paths])
    common.report("jpeg_4000x3000_reduced_ms", reduced_seconds * 1000 / len(paths), f"ms/image (read at {size} px)")
    common.report("jpeg_4000x3000_full_ms", full_seconds * 1000 / len(paths), "ms/image")
    common.report("speedup", full_seconds / reduced_seconds, "x")
    common.report("mean_absolute_difference", difference, "of 255")


if __name__ == "__main__":
    main()
