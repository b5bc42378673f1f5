"""The photo formats OpenCV does not decode upright: HEIC/HEIF and AVIF with Pillow, camera RAW with rawpy.

Each decoder returns what OpenCV's imdecode would, BGR or gray uint8, turned upright by the file's orientation.
"""

import io
import os
import warnings

import cv2
import numpy as np

# Camera RAW formats LibRaw (rawpy) reads, by extension: their TIFF-like containers would otherwise let OpenCV
# decode the small thumbnail of their first directory as if it were the photo.
RAW_EXTENSIONS = (".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".orf", ".rw2", ".raf",
                  ".pef", ".srw", ".rwl", ".3fr", ".iiq", ".erf", ".kdc", ".mrw", ".x3f")
# HEIF containers (ISO base media): "ftyp" at byte 4, then the brand. AVIF is one; Pillow reads them upright.
HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis")
# OpenCV's rotations for LibRaw's flip codes (0: as stored).
RAW_ROTATIONS = {3: cv2.ROTATE_180, 5: cv2.ROTATE_90_COUNTERCLOCKWISE, 6: cv2.ROTATE_90_CLOCKWISE}


def is_raw(path):
    """Whether a file name is a camera RAW format's."""
    return path.lower().endswith(RAW_EXTENSIONS)


def is_heif(encoded):
    """Whether encoded bytes are a HEIF or AVIF container."""
    return encoded[4:8].tobytes() == b"ftyp" and encoded[8:12].tobytes() in HEIF_BRANDS


def decode_with_pillow(encoded, channels, shorter_side=0):
    """BGR or gray uint8 of an image Pillow reads (HEIC through pillow-heif), EXIF orientation applied; None if it cannot.

    shorter_side: where the file embeds a thumbnail at least this large on its shorter side (as phones' HEIC
    files do), that is decoded instead of the whole photo; 0 decodes the whole photo.
    """
    from PIL import Image, ImageOps

    register_heif()
    try:
        with warnings.catch_warnings():
            # Pillow warns of very large images on stderr; the suite refuses only what Pillow refuses.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(encoded.tobytes())) as image:
                if shorter_side:
                    image.draft(None, (shorter_side, shorter_side))
                image = ImageOps.exif_transpose(image)
                rgb = np.asarray(image.convert("L" if channels == 1 else "RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    return rgb if channels == 1 else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def register_heif():
    """Teach Pillow HEIC/HEIF, once, where pillow-heif is installed (Pillow reads AVIF itself)."""
    try:
        import pillow_heif
    except ImportError:
        return
    if not getattr(register_heif, "done", False):
        pillow_heif.register_heif_opener()
        register_heif.done = True


def decode_raw(encoded, channels, shorter_side):
    """BGR or gray uint8 of a camera RAW file, upright; None when rawpy cannot read it.

    The JPEG preview cameras embed is used when its shorter side reaches shorter_side: it decodes in
    milliseconds where developing the raw sensor data takes a second; otherwise the data is developed, at half
    size when that still reaches shorter_side.
    """
    try:
        import rawpy
    except ImportError:
        return None
    try:
        with rawpy.imread(io.BytesIO(encoded.tobytes())) as raw:
            image = embedded_preview(raw, shorter_side)
            if image is None:
                # Half size skips demosaicing (each 2x2 sensor block becomes a pixel): four times less work.
                half_size = min(raw.sizes.height, raw.sizes.width) // 2 >= shorter_side
                developed = raw.postprocess(half_size=half_size, use_camera_wb=True, output_bps=8)
                image = cv2.cvtColor(developed, cv2.COLOR_RGB2BGR)
    except (rawpy.LibRawError, OSError, ValueError):
        return None
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if channels == 1 else image


def embedded_preview(raw, shorter_side):
    """The RAW file's embedded preview as upright BGR when it has one at least shorter_side on its shorter side, else None."""
    import rawpy

    try:
        thumbnail = raw.extract_thumb()
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
        return None
    if thumbnail.format == rawpy.ThumbFormat.JPEG:
        # The preview is stored as the sensor sees it; the RAW's own flip code says how to turn it.
        image = cv2.imdecode(np.frombuffer(thumbnail.data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    else:
        image = cv2.cvtColor(np.ascontiguousarray(thumbnail.data), cv2.COLOR_RGB2BGR)
    if image is None or min(image.shape[:2]) < shorter_side:
        return None
    rotation = RAW_ROTATIONS.get(raw.sizes.flip)
    return image if rotation is None else cv2.rotate(image, rotation)


def extension_of(name):
    """A file name's extension in lower case, or '(none)'."""
    return os.path.splitext(name)[1].lower() or "(none)"
