"""Hand-made features appended to the encoder's: histograms of gradient orientations and of colours."""

from imsearch.backend import tf

# Two grids of cells whatever the image size, so the histogram length never depends on it: 7x7 cells for
# the layout of edges, 4x4 for the coarser shape, which survives shifts and small crops better.
GRID_CELLS = (7, 4)
ORIENTATION_BINS = 9
# Each block is 2x2 neighbouring cells, normalised on its own (as in HOG) against lighting changes.
HISTOGRAM_LENGTH = sum((cells - 1) ** 2 * 4 * ORIENTATION_BINS for cells in GRID_CELLS)


def unit_rows(features):
    """Rows scaled to unit L2 length, (B, D) -> (B, D)."""
    return features / tf.maximum(tf.norm(features, axis=1, keepdims=True), 1e-12)


def gradient_histograms(images):
    """(B, S, S, C) floats in [0, 1] -> (B, HISTOGRAM_LENGTH) unit-length orientation histograms, one per grid."""
    gray = tf.reduce_mean(images, axis=-1)
    # Central differences, with edge pixels repeated so the output keeps the image's size.
    padded = tf.pad(gray, [[0, 0], [1, 1], [1, 1]], mode="SYMMETRIC")
    delta_y = (padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1]) / 2
    delta_x = (padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2]) / 2
    magnitude = tf.sqrt(delta_x**2 + delta_y**2)
    # Unsigned orientations in [0, pi): an edge counts the same whichever side is brighter.
    angle = tf.math.floormod(tf.atan2(delta_y, delta_x), 3.141592653589793)
    bins = tf.minimum(tf.cast(angle / 3.141592653589793 * ORIENTATION_BINS, tf.int32), ORIENTATION_BINS - 1)
    # Each grid's histogram has unit length, and the whole as much as one: each grid counts equally.
    grids = [grid_histogram(magnitude, bins, cells) for cells in GRID_CELLS]
    return tf.concat(grids, axis=1) / len(GRID_CELLS) ** 0.5


def grid_histogram(magnitude, bins, cells):
    """(B, S, S) gradient magnitudes and orientation bins -> (B, (cells - 1)^2 * 4 * bins) unit-length block histograms."""
    size = magnitude.shape[1]
    cell = max(1, size // cells)
    used = cell * cells
    # Each pixel adds its magnitude to one (image, cell, bin) sum: one scatter-add, rather than one-hot votes
    # pooled per cell, which make nine values per pixel.
    cell_rows = tf.range(used) // cell
    cell_of_pixel = cell_rows[:, None] * cells + cell_rows[None, :]  # (used, used)
    batch = tf.shape(magnitude)[0]
    slots = (tf.range(batch)[:, None, None] * cells**2 + cell_of_pixel) * ORIENTATION_BINS + bins[:, :used, :used]
    sums = tf.math.unsorted_segment_sum(magnitude[:, :used, :used], slots, batch * cells**2 * ORIENTATION_BINS)
    means = tf.reshape(sums, (-1, cells, cells, ORIENTATION_BINS)) / (cell * cell)  # Cell means, (B, cells, cells, bins).
    blocks = tf.concat([means[:, :-1, :-1], means[:, 1:, :-1], means[:, :-1, 1:], means[:, 1:, 1:]], axis=-1)
    blocks = blocks / (tf.norm(blocks, axis=-1, keepdims=True) + 1e-6)
    # The square root damps the few strong edges, which otherwise dominate every distance.
    return unit_rows(tf.sqrt(tf.reshape(blocks, (-1, (cells - 1) ** 2 * 4 * ORIENTATION_BINS))))


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


def stretched_values(value):
    """(B, S, S) HSV values -> the same with each image's 1st and 99th percentiles moved to 0 and 1, clipped."""
    flat = tf.reshape(value, (tf.shape(value)[0], -1))
    ordered = tf.sort(flat, axis=1)
    count = tf.shape(flat)[1]
    tail = tf.cast(tf.cast(count, tf.float32) * VALUE_STRETCH_SHARE, tf.int32)
    low, high = ordered[:, tail][:, None, None], ordered[:, count - 1 - tail][:, None, None]
    # An image of one brightness has nothing to stretch: its values stay where they are.
    return tf.where(high - low > 1e-3, tf.clip_by_value((value - low) / tf.maximum(high - low, 1e-3), 0.0, 1.0), value)


def colour_histograms(images):
    """(B, S, S, 3) RGB floats in [0, 1] -> (B, COLOUR_HISTOGRAM_LENGTH) unit-length square-rooted HSV histograms."""
    hsv = tf.image.rgb_to_hsv(images)
    def bin_of(channel, count):
        return tf.minimum(tf.cast(channel * count, tf.int32), count - 1)
    value = stretched_values(hsv[..., 2])
    bins = (bin_of(hsv[..., 0], HUE_BINS) * SATURATION_BINS + bin_of(hsv[..., 1], SATURATION_BINS)) * VALUE_BINS + bin_of(value, VALUE_BINS)
    batch = tf.shape(images)[0]
    slots = tf.range(batch)[:, None, None] * COLOUR_HISTOGRAM_LENGTH + bins
    counts = tf.math.unsorted_segment_sum(tf.ones_like(value), slots, batch * COLOUR_HISTOGRAM_LENGTH)
    # The square root (Hellinger's kernel) keeps one large flat area, sky or wall, from outweighing the rest.
    return unit_rows(tf.sqrt(tf.reshape(counts, (-1, COLOUR_HISTOGRAM_LENGTH))))
