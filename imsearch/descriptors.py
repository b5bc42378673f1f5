"""Hand-made features appended to the encoder's: histograms of gradient orientations and of colours (numpy)."""

import numpy as np

# Two grids of cells whatever the image size, so the histogram length never depends on it: 7x7 cells for
# the layout of edges, 4x4 for the coarser shape, which survives shifts and small crops better.
GRID_CELLS = (7, 4)
ORIENTATION_BINS = 9
# Each block is 2x2 neighbouring cells, normalised on its own (as in HOG) against lighting changes.
HISTOGRAM_LENGTH = sum((cells - 1) ** 2 * 4 * ORIENTATION_BINS for cells in GRID_CELLS)


def unit_rows(features):
    """Rows scaled to unit L2 length, (B, D) -> (B, D) float32."""
    features = np.asarray(features, dtype=np.float32)
    return features / np.maximum(np.sqrt(np.einsum("ij,ij->i", features, features)), 1e-12)[:, None]


def gradient_histograms(images):
    """(B, S, S, C) float32 in [0, 1] -> (B, HISTOGRAM_LENGTH) unit-length orientation histograms, one per grid."""
    gray = images.mean(axis=-1, dtype=np.float32)
    # Central differences, with edge pixels repeated so the output keeps the image's size.
    padded = np.pad(gray, ((0, 0), (1, 1), (1, 1)), mode="symmetric")
    delta_y = (padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1]) / np.float32(2)
    delta_x = (padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2]) / np.float32(2)
    magnitude = np.sqrt(delta_x**2 + delta_y**2)
    # Unsigned orientations, bins of pi / ORIENTATION_BINS from 0: an edge counts the same whichever side is
    # brighter. The angle in [-pi, pi] is binned over the whole circle and folded: the modulo of the integer
    # bins, where np.mod of the float angles would cost a third of the histograms' time.
    turns = np.arctan2(delta_y, delta_x) * np.float32(ORIENTATION_BINS / np.pi)
    bins = np.floor(turns, out=turns).astype(np.int32)
    bins %= ORIENTATION_BINS
    # Each grid's histogram has unit length, and the whole as much as one: each grid counts equally.
    grids = [grid_histogram(magnitude, bins, cells) for cells in GRID_CELLS]
    return np.concatenate(grids, axis=1) / np.float32(len(GRID_CELLS) ** 0.5)


def grid_histogram(magnitude, bins, cells):
    """(B, S, S) gradient magnitudes and orientation bins -> (B, (cells - 1)^2 * 4 * bins) unit-length block histograms."""
    count, size = magnitude.shape[:2]
    cell = max(1, size // cells)
    used = cell * cells
    # Each pixel adds its magnitude to one (image, cell, bin) sum: one weighted bincount for the whole batch.
    cell_rows = np.arange(used) // cell
    cell_of_pixel = cell_rows[:, None] * cells + cell_rows[None, :]  # (used, used)
    slots = (np.arange(count)[:, None, None] * cells**2 + cell_of_pixel) * ORIENTATION_BINS + bins[:, :used, :used]
    sums = np.bincount(slots.ravel(), magnitude[:, :used, :used].ravel(), count * cells**2 * ORIENTATION_BINS)
    means = sums.astype(np.float32).reshape(count, cells, cells, ORIENTATION_BINS) / np.float32(cell * cell)
    blocks = np.concatenate([means[:, :-1, :-1], means[:, 1:, :-1], means[:, :-1, 1:], means[:, 1:, 1:]], axis=-1)
    blocks = blocks / (np.sqrt((blocks**2).sum(axis=-1, keepdims=True)) + np.float32(1e-6))
    # The square root damps the few strong edges, which otherwise dominate every distance.
    return unit_rows(np.sqrt(blocks.reshape(count, (cells - 1) ** 2 * 4 * ORIENTATION_BINS)))


# Hue is where colours differ most; saturation and value get coarse bins, so lighting edits move little.
HUE_BINS, SATURATION_BINS, VALUE_BINS = 16, 4, 4
COLOUR_HISTOGRAM_LENGTH = HUE_BINS * SATURATION_BINS * VALUE_BINS
# Each image's value (brightness) is stretched so this share of its pixels lies below 0 and as many above 1
# before binning: brightness and contrast edits then leave the value bins nearly as they were, which matters
# most for gray or muted photos, whose whole colour histogram is their value bins.
VALUE_STRETCH_SHARE = 0.01


def histograms_length(channels):
    """Length of the histograms that follow the encoder's features: gradients, and colours for colour images."""
    return HISTOGRAM_LENGTH + (COLOUR_HISTOGRAM_LENGTH if channels == 3 else 0)


def histograms_of(images):
    """The histogram parts of the features of (B, S, S, C) float32 images: gradients, and colours for colour images."""
    # A gray image's colour histogram is four brightness bins: too little to earn a third of every distance.
    if images.shape[-1] == 3:
        return np.concatenate([gradient_histograms(images), colour_histograms(images)], axis=1)
    return gradient_histograms(images)


def stretched_values(value):
    """(B, S, S) HSV values -> the same with each image's 1st and 99th percentiles moved to 0 and 1, clipped."""
    flat = value.reshape(len(value), -1)
    count = flat.shape[1]
    tail = int(np.float32(count) * np.float32(VALUE_STRETCH_SHARE))
    ordered = np.partition(flat, (tail, count - 1 - tail), axis=1)
    low, high = ordered[:, tail][:, None, None], ordered[:, count - 1 - tail][:, None, None]
    # An image of one brightness has nothing to stretch: its values stay where they are.
    stretched = np.clip((value - low) / np.maximum(high - low, np.float32(1e-3)), 0.0, 1.0)
    return np.where(high - low > 1e-3, stretched, value)


def rgb_to_hsv(images):
    """(..., 3) RGB float32 in [0, 1] -> hue, saturation, value, each in [0, 1], as TensorFlow's rgb_to_hsv computes them."""
    red, green, blue = images[..., 0], images[..., 1], images[..., 2]
    value = images.max(axis=-1)
    spread = value - images.min(axis=-1)
    saturation = np.where(value > 0, spread / np.where(value > 0, value, 1), 0).astype(np.float32)
    norm = (np.float32(1) / np.where(spread > 0, spread, 1)) * np.float32(1 / 6)  # In TensorFlow's order: hue bins match.
    hue = np.where(red == value, norm * (green - blue),
                   np.where(green == value, norm * (blue - red) + np.float32(2 / 6), norm * (red - green) + np.float32(4 / 6)))
    hue = np.where(spread > 0, hue, 0)
    return np.where(hue < 0, hue + 1, hue).astype(np.float32), saturation, value


def colour_histograms(images):
    """(B, S, S, 3) RGB float32 in [0, 1] -> (B, COLOUR_HISTOGRAM_LENGTH) unit-length square-rooted HSV histograms."""
    hue, saturation, value = rgb_to_hsv(images)

    def bin_of(channel, count):
        return np.minimum((channel * np.float32(count)).astype(np.int64), count - 1)

    bins = (bin_of(hue, HUE_BINS) * SATURATION_BINS + bin_of(saturation, SATURATION_BINS)) * VALUE_BINS \
        + bin_of(stretched_values(value), VALUE_BINS)
    slots = np.arange(len(images))[:, None, None] * COLOUR_HISTOGRAM_LENGTH + bins
    counts = np.bincount(slots.ravel(), minlength=len(images) * COLOUR_HISTOGRAM_LENGTH).astype(np.float32)
    # The square root (Hellinger's kernel) keeps one large flat area, sky or wall, from outweighing the rest.
    return unit_rows(np.sqrt(counts.reshape(len(images), COLOUR_HISTOGRAM_LENGTH)))
