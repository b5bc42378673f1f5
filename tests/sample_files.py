"""Photo files as phones and cameras write them, made with real encoders: Pillow, pillow-heif, and pidng for DNG."""

import os

import cv2
import numpy as np
import pillow_heif
from PIL import Image
from pidng.core import RAW2DNG, DNGTags, Tag
from pidng.defs import CalibrationIlluminant, CFAPattern, DNGVersion, Orientation, PhotometricInterpretation

# EXIF orientation 6: the pixels are stored turned a quarter anticlockwise; viewers turn them clockwise.
TURN_CLOCKWISE = 6
# XYZ to linear sRGB, as the DNG's colour matrix: the written Bayer data is then read back as sRGB.
XYZ_TO_SRGB = ((3.2406, -1.5372, -0.4986), (-0.9689, 1.8758, 0.0415), (0.0557, -0.2040, 1.0570))


def write_dng(path, bgr):
    """A 12-bit RGGB Bayer DNG of a BGR image, as a camera writes its raw sensor data (pidng)."""
    # Sensors record linear light: the photo's sRGB gamma undone, on a 12-bit scale.
    srgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) / 255.0
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    rgb = np.round(linear * 4095).astype(np.uint16)
    height, width = (side - side % 2 for side in rgb.shape[:2])
    bayer = np.zeros((height, width), np.uint16)
    bayer[0::2, 0::2], bayer[0::2, 1::2] = rgb[0:height:2, 0:width:2, 0], rgb[0:height:2, 1:width:2, 1]
    bayer[1::2, 0::2], bayer[1::2, 1::2] = rgb[1:height:2, 0:width:2, 1], rgb[1:height:2, 1:width:2, 2]
    tags = DNGTags()
    for tag, value in (
        (Tag.ImageWidth, width), (Tag.ImageLength, height), (Tag.TileWidth, width), (Tag.TileLength, height),
        (Tag.Orientation, Orientation.Horizontal), (Tag.PhotometricInterpretation, PhotometricInterpretation.Color_Filter_Array),
        (Tag.SamplesPerPixel, 1), (Tag.BitsPerSample, 12), (Tag.CFARepeatPatternDim, [2, 2]), (Tag.CFAPattern, CFAPattern.RGGB),
        (Tag.BlackLevel, 0), (Tag.WhiteLevel, 4095), (Tag.CalibrationIlluminant1, CalibrationIlluminant.D65),
        (Tag.ColorMatrix1, [[round(value * 10000), 10000] for row in XYZ_TO_SRGB for value in row]),
        (Tag.AsShotNeutral, [[1, 1], [1, 1], [1, 1]]), (Tag.Make, "imsearch"), (Tag.Model, "test"),
        (Tag.DNGVersion, DNGVersion.V1_4), (Tag.DNGBackwardVersion, DNGVersion.V1_2),
    ):
        tags.set(tag, value)
    writer = RAW2DNG()
    writer.options(tags, path=os.path.dirname(path), compress=False)
    writer.convert(bayer, filename=os.path.splitext(os.path.basename(path))[0])


def write_with_pillow(path, bgr, exif_orientation=None):
    """Save a BGR image with Pillow (HEIC through pillow-heif), optionally stored turned with the EXIF tag that undoes it."""
    pillow_heif.register_heif_opener()
    image = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    options = {}
    if exif_orientation:
        image = image.transpose(Image.Transpose.ROTATE_90)
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        options["exif"] = exif.tobytes()
    image.save(path, **options)
