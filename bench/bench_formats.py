"""Reading a 24-megapixel photo at the model's size from each format, against a JPEG of the same photo.

Writes one wallpaper photograph at 6000 x 4000 as a JPEG (quality 90, the suite's reduced decoding), a HEIC
as phones write it (with a 320-pixel thumbnail) and without one, an AVIF, a TIFF, and a 12-bit DNG camera RAW
(raw sensor data, no embedded preview: developed at half size), then reads each with the suite's reader at the
model's size (64 x 64 colour); prints ms per read (median of --repeats) and the ratio to the JPEG's.

    python bench/bench_formats.py [--repeats 5] [--image-size 64]
"""

import argparse
import os
import sys
import tempfile

import cv2
import numpy as np
import pillow_heif
from PIL import Image

import common
from imsearch import image_folders, photo_sets

sys.path.insert(0, os.path.join(common.REPOSITORY_DIR, "tests"))
from sample_files import write_dng  # noqa: E402 (the tests' DNG writer, once tests/ is on the path)

WIDTH, HEIGHT = 6000, 4000


def write_all(folder, bgr):
    """{format: path} of the photo in every format read here."""
    pillow_heif.register_heif_opener()
    rgb = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    paths = {name: os.path.join(folder, file) for name, file in (
        ("JPEG", "photo.jpg"), ("HEIC with thumbnail", "thumbnailed.heic"), ("HEIC", "photo.heic"), ("AVIF", "photo.avif"),
        ("TIFF", "photo.tiff"), ("DNG (RAW)", "photo.dng"))}
    cv2.imwrite(paths["JPEG"], bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
    rgb.save(paths["HEIC with thumbnail"], quality=90, thumbnails=[320])
    rgb.save(paths["HEIC"], quality=90, thumbnails=[])
    rgb.save(paths["AVIF"], quality=90)
    rgb.save(paths["TIFF"], compression="tiff_deflate")
    write_dng(paths["DNG (RAW)"], bgr)
    return paths


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=64)
    arguments = parser.parse_args()
    picture = sorted(photo_sets.find_photos().values())[0]
    bgr = cv2.resize(cv2.imread(picture), (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC)
    with tempfile.TemporaryDirectory() as folder:
        paths = write_all(folder, bgr)
        size = arguments.image_size
        reference = image_folders.read_image(paths["JPEG"], size, 3).astype(np.float32)
        print(f"| format ({WIDTH} x {HEIGHT}) | file MB | ms per read at {size} px | ratio to JPEG | mean abs. difference from the JPEG's read |")
        print("| --- | --- | --- | --- | --- |")
        jpeg_seconds = None
        for name, path in paths.items():
            seconds = common.median_seconds(lambda: image_folders.read_image(path, size, 3), arguments.repeats)
            jpeg_seconds = jpeg_seconds or seconds
            difference = np.abs(image_folders.read_image(path, size, 3).astype(np.float32) - reference).mean()
            print(f"| {name} | {os.path.getsize(path) / 1e6:.1f} | {seconds * 1000:.1f} | {seconds / jpeg_seconds:.2f} | "
                  f"{difference:.1f} |", flush=True)


if __name__ == "__main__":
    main()
