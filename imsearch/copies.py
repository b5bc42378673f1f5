"""Whether two image files show the same picture: one aligned onto the other, then compared pixel by pixel.

Two copies of a picture (resized, re-encoded, brightened, mirrored, cropped) line up under a similarity
transform and then agree pixel for pixel; two photos of one scene, a burst's frames or a series of one
pattern in different poses do not. The transform is either the whole frame (same aspect, maybe mirrored)
or one found by matching ORB features with RANSAC; the verdict is the correlation of the overlap.
"""

import dataclasses

import cv2
import numpy as np

from imsearch import image_folders

# Pictures are compared at this longest side: enough for ORB to find a few hundred features on a photo.
COMPARE_SIDE = 320
# Below this shorter side ORB finds too little to align by (its patches are 31 px): whole frames only.
SMALLEST_FEATURE_SIDE = 64
ORB_FEATURES = 1000
FAST_THRESHOLD = 5
ECC_ITERATIONS = 30
# Lowe's ratio test; RANSAC's reprojection error in compare-side pixels.
MATCH_RATIO = 0.8
RANSAC_PIXELS = 4.0
# Fewest RANSAC inliers that count as an alignment: a handful of accidental matches never reaches it.
FEWEST_INLIERS = 15
# A copy is at most this much smaller or larger (after both are brought to COMPARE_SIDE), turned at most this far.
LARGEST_SCALE_CHANGE = 4.0
LARGEST_ROTATION_DEGREES = 15.0
# Pictures too small to align by features are screened many pairs at once on thumbnails of this side: a
# pair is compared in full only if, with tones fitted by a line, at most SCREEN_SHARE of its cells differ.
THUMBNAIL_SIDE = 16
SCREEN_SHARE = 0.15
# Whole frames are compared only when their aspect ratios agree this closely (a resize keeps it).
ASPECT_TOLERANCE = 0.03
# One picture must lie mostly within the other (a crop), and the crop keep at least half of the larger picture.
CONTAINED_SHARE = 0.75
LEAST_OVERLAP_SHARE = 0.5
# A border is told from cropped-away picture beyond this share of the shorter side from the overlap's edge.
BORDER_MARGIN_SHARE = 0.03
# The most gray levels a border's pixels may span (2nd to 98th percentile, JPEG noise included).
BORDER_SPREAD = 8.0
# Pixels are compared blurred by this sigma, so resampling and JPEG blocks do not count as differences.
BLUR_SIGMA = 1.0
# Side of a cell of the local comparison as a share of the shorter side, the mean gray difference from
# which a cell differs, and the largest share of differing cells a copy may have; with the correlation of all pixels.
CELL_SIDE_SHARE = 1 / 24
CELL_DIFFERENCE = 12.0
CELL_DIFFERENCE_SPREAD, SMALLEST_CELL_DIFFERENCE = 0.25, 4.0
CLIPPED_LEVELS = 6
# The most a copy's contrast (spread of its unclipped gray levels) may differ from the other's.
LARGEST_CONTRAST_CHANGE = 1.6
DIFFERING_SHARE = 0.03
COPY_CORRELATION = 0.9


@dataclasses.dataclass
class Picture:
    """One image prepared for comparison: gray at COMPARE_SIDE at most, its ORB features, its size on disk."""

    gray: np.ndarray  # float32 (H, W), blurred by BLUR_SIGMA
    sharp: np.ndarray  # uint8 (H, W), unblurred, for ORB
    thumbnail: np.ndarray  # float32 (THUMBNAIL_SIDE ** 2,): the whole frame squeezed, for screening many pairs at once
    blur: float  # the Gaussian sigma gray was blurred by, in its own pixels
    pixels: int  # width x height as stored: the keeper is the largest
    file_bytes: int
    modified_ns: int
    features: dict = dataclasses.field(default_factory=dict)  # {mirrored: (points (K, 2), descriptors (K, 32))}

    @property
    def aspect(self):
        return self.gray.shape[1] / self.gray.shape[0]

    @property
    def small(self):
        """Too small to align by features: compared by whole frame only."""
        return min(self.gray.shape) < SMALLEST_FEATURE_SIDE


@dataclasses.dataclass(frozen=True)
class Verdict:
    """Whether two pictures are copies, how their aligned pixels agree, and how they were aligned."""

    copy: bool
    correlation: float
    differing: float  # share of cells that differ
    alignment: str  # "frame", "mirrored frame", "features", "mirrored features" or "none"
    coverage: tuple = (1.0, 1.0)  # share of each picture (in compare's order) inside the overlap: below 1 where cropped away


# The verdict on a pair nothing could align (or one that cannot be read).
NO_COPY = Verdict(False, 0.0, 1.0, "none")


def read_picture(path):
    """A Picture of an image file; image_folders.UnreadableImage when it cannot be decoded."""
    stamp = np.zeros(2, np.int64)
    encoded = image_folders.read_regular_file(path, stamp)
    if encoded is None or not encoded.size:
        raise image_folders.UnreadableImage(f"{path}: not a readable image")
    # Large JPEGs are decoded reduced: a copy is judged at COMPARE_SIDE anyway.
    image, reduction = image_folders.decode_bytes(encoded, path, COMPARE_SIDE // 2, 1)
    height, width = image.shape[:2]
    scale = COMPARE_SIDE / max(height, width)
    if scale < 1:
        image = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
    sharp, gray = image, image.astype(np.float32)
    sigma = BLUR_SIGMA * max(gray.shape) / COMPARE_SIDE  # The same share of the picture at every size.
    if sigma >= 0.3:
        gray = cv2.GaussianBlur(gray, (0, 0), sigma)
    else:
        sigma = 0.0
    thumbnail = cv2.resize(gray, (THUMBNAIL_SIDE, THUMBNAIL_SIDE), interpolation=cv2.INTER_AREA).ravel()
    return Picture(gray, sharp, thumbnail, sigma, height * width * reduction * reduction, int(stamp[0]), int(stamp[1]))


def orb_features(picture, mirrored):
    """(points (K, 2), descriptors (K, 32)) of a picture or of its mirror image, computed once."""
    if mirrored not in picture.features:
        image = picture.sharp[:, ::-1].copy() if mirrored else picture.sharp
        # A low FAST threshold: smooth photos (sky, sand) have few strong corners.
        keypoints, descriptors = cv2.ORB_create(ORB_FEATURES, fastThreshold=FAST_THRESHOLD).detectAndCompute(image, None)
        points = np.array([keypoint.pt for keypoint in keypoints], np.float32).reshape(-1, 2)
        picture.features[mirrored] = (points, descriptors)
    return picture.features[mirrored]


def aligned_difference(first, second, transform):
    """(correlation, share of differing cells, (first's share, second's share) inside the overlap) of first's pixels
    and second's mapped into first's frame, or None.

    None unless one picture lies mostly within the other (CONTAINED_SHARE) and the overlap keeps
    LEAST_OVERLAP_SHARE of the larger. The transform is refined by ECC first: a feature match is only
    accurate to a pixel or two, which a sharp edge shows as a difference.
    """
    height, width = first.gray.shape
    scale = np.sqrt(abs(np.linalg.det(transform[:, :2])))
    # second, brought up by scale, is that much blurrier (a pixel itself blurs by about half a pixel): blur
    # first alike, so detail a smaller copy never had is no difference.
    first_gray = first.gray
    extra = np.sqrt(max(0.0, (scale * max(second.blur, 0.5)) ** 2 - max(first.blur, 0.5) ** 2))
    if extra >= 0.3:
        first_gray = cv2.GaussianBlur(first_gray, (0, 0), extra)
    transform = refined(first_gray, second.gray, transform)
    warped = cv2.warpAffine(second.gray, transform, (width, height), flags=cv2.INTER_LINEAR)
    inside = cv2.warpAffine(np.ones_like(second.gray), transform, (width, height), flags=cv2.INTER_LINEAR) > 0.999
    overlap = int(inside.sum())
    second_area = second.gray.size * abs(np.linalg.det(transform[:, :2]))  # In first's pixels, by the refined transform.
    coverage = [min(1.0, overlap / first.gray.size), min(1.0, overlap / second_area)]
    shares = sorted(coverage)
    if shares[1] < CONTAINED_SHARE or shares[0] < LEAST_OVERLAP_SHARE or overlap < 16:
        return None
    # A border of one colour outside the overlap holds no picture: a framed copy does not make the original a crop.
    second_inside = cv2.warpAffine(np.ones_like(first.gray), cv2.invertAffineTransform(transform), second.gray.shape[::-1],
                                   flags=cv2.INTER_LINEAR) > 0.999
    for number, (gray, kept) in enumerate(((first.gray, inside), (second.gray, second_inside))):
        # The overlap's edge blurs into the border: a margin of BORDER_MARGIN_SHARE of the shorter side is left out.
        margin = max(3, round(min(gray.shape) * BORDER_MARGIN_SHARE))
        beyond = cv2.dilate(kept.astype(np.uint8), np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)) == 0
        if coverage[number] < 1 and beyond.any():
            low, high = np.percentile(gray[beyond], [2, 98])
            if high - low <= BORDER_SPREAD:  # Nearly one level: a border; a sky's gradient spans far more.
                coverage[number] = 1.0
    # Cells of at least two of the smaller picture's pixels: finer ones would judge its resampling.
    return (*tone_matched(first_gray, warped, inside, smallest_cell=max(2, round(2 * scale))), tuple(coverage))


def refined(first, second, transform):
    """transform (second onto first) refined by OpenCV's ECC, or unchanged where ECC does not converge."""
    if min(*first.shape, *second.shape) < SMALLEST_FEATURE_SIDE:
        return transform
    inverse = cv2.invertAffineTransform(transform).astype(np.float32)  # ECC maps first's pixels into second.
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, ECC_ITERATIONS, 1e-4)
    try:
        _, inverse = cv2.findTransformECC(first, second, inverse, cv2.MOTION_AFFINE, criteria, None, 5)
    except cv2.error:  # Did not converge: keep the feature match.
        return transform
    improved = cv2.invertAffineTransform(inverse).astype(np.float64)
    # ECC may wander off on a flat or repetitive picture: keep only a small correction.
    corner_moves = np.abs(np.hstack([improved[:, :2] - transform[:, :2], improved[:, 2:] - transform[:, 2:]]) @ [[first.shape[1]], [first.shape[0]], [1]])
    return improved if corner_moves.max() < 0.05 * max(first.shape) else transform


def tone_matched(first, second, inside, smallest_cell=2):
    """(correlation, share of differing cells) of two aligned gray images over inside, second's tones matched to first's.

    Second's tones are mapped onto first's by the best increasing curve fitted to cell means (isotonic
    regression), so a brightened, contrast-stretched or clipped copy matches; a cell (CELL_SIDE_SHARE of the
    shorter side) differs where its mean still differs by more than CELL_DIFFERENCE, as where an arm moved
    or a board turned, which re-encoding and resampling never do.
    """
    from scipy.optimize import isotonic_regression

    height, width = first.shape
    cell = max(smallest_cell, round(min(height, width) * CELL_SIDE_SHARE))
    rows, columns = height // cell, width // cell
    def cell_means(values):
        return values[: rows * cell, : columns * cell].reshape(rows, cell, columns, cell).mean(axis=(1, 3))
    # Pixels clipped to white in either (a brightened sky) hold no evidence either way; a cell counts when it
    # lies wholly in the overlap and at least half its pixels are unclipped. Black is kept: it is the
    # background of many product shots and drawings, whose differences would hide there.
    unclipped = inside & (first < 255 - CLIPPED_LEVELS) & (second < 255 - CLIPPED_LEVELS)
    counts = cell_means(unclipped.astype(np.float32))
    full = (cell_means(inside.astype(np.float32)) > 0.999) & (counts >= 0.5)
    if not full.any():
        return 0.0, 1.0
    first_means = cell_means(np.where(unclipped, first, 0))[full] / counts[full]
    second_means = cell_means(np.where(unclipped, second, 0))[full] / counts[full]
    order = np.argsort(second_means, kind="stable")
    curve_x, curve_y = second_means[order], isotonic_regression(first_means[order]).x
    # A cell differs by CELL_DIFFERENCE gray levels, or less in a low-contrast picture, where that would be most of its range.
    threshold = min(CELL_DIFFERENCE, max(SMALLEST_CELL_DIFFERENCE, CELL_DIFFERENCE_SPREAD * first[unclipped].std()))
    differs = np.zeros(full.shape, bool)
    differs.reshape(-1)[np.flatnonzero(full)[order]] = np.abs(first_means[order] - curve_y) > threshold
    # White in one picture only is evidence where the other is darker than the brightest tones they share:
    # brightening clips bright pixels, never dark ones, while ink, a stamp or a caption added on white shows here.
    first_white, second_white = first >= 255 - CLIPPED_LEVELS, second >= 255 - CLIPPED_LEVELS
    second_in_first_tones = np.interp(second, curve_x, curve_y)
    shortfall = np.where(inside & second_white & ~first_white, np.maximum(curve_y[-1] - first, 0), 0) \
        + np.where(inside & first_white & ~second_white, np.maximum(curve_y[-1] - second_in_first_tones, 0), 0)
    added = (cell_means(inside.astype(np.float32)) > 0.999) & (cell_means(shortfall) > threshold)
    differing = float((differs | added)[full | added].mean())
    # An edit stretches or squeezes contrast a little: two pictures of a few flat regions laid out alike
    # (a wall and a door) map onto each other by some increasing curve, but only by a strong one.
    spreads = first[unclipped].std(), second[unclipped].std()
    if min(spreads) * LARGEST_CONTRAST_CHANGE < max(spreads):
        return 0.0, differing
    a, b = first[inside], np.interp(second[inside], curve_x, curve_y)
    a, b = a - a.mean(), b - b.mean()
    a_energy, b_energy = float(a @ a), float(b @ b)
    # A flat overlap (a blank page) has no correlation: flat against flat is perfect, flat against texture none.
    flat = 1e-2 * len(a)
    if a_energy < flat or b_energy < flat:
        return float(a_energy < flat and b_energy < flat), differing
    return float(a @ b) / np.sqrt(a_energy * b_energy), differing


def frame_transforms(first, second):
    """The whole-frame transforms of second onto first, plain and mirrored: a resize, when the aspects agree."""
    if abs(np.log(first.aspect / second.aspect)) > ASPECT_TOLERANCE:
        return []
    (height, width), (second_height, second_width) = first.gray.shape, second.gray.shape
    sx, sy = width / second_width, height / second_height
    # Pixel centres map onto pixel centres.
    plain = np.array([[sx, 0, (sx - 1) / 2], [0, sy, (sy - 1) / 2]], np.float64)
    mirrored = np.array([[-sx, 0, width - 1 - (sx - 1) / 2], [0, sy, (sy - 1) / 2]], np.float64)
    return [("frame", plain), ("mirrored frame", mirrored)]


def feature_transforms(first, second):
    """Similarity transforms of second onto first found from matched ORB features, plain and mirrored."""
    if first.small or second.small:
        return []
    first_points, first_descriptors = orb_features(first, False)
    found = []
    for mirrored in (False, True):
        second_points, second_descriptors = orb_features(second, mirrored)
        if first_descriptors is None or second_descriptors is None or min(len(first_points), len(second_points)) < FEWEST_INLIERS:
            continue
        pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(second_descriptors, first_descriptors, k=2)
        good = [pair[0] for pair in pairs if len(pair) == 2 and pair[0].distance < MATCH_RATIO * pair[1].distance]
        if len(good) < FEWEST_INLIERS:
            continue
        source = second_points[[match.queryIdx for match in good]]
        target = first_points[[match.trainIdx for match in good]]
        transform, inliers = cv2.estimateAffinePartial2D(source, target, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PIXELS,
                                                         maxIters=2000, confidence=0.995)
        if transform is None or int(inliers.sum()) < FEWEST_INLIERS:
            continue
        scale = np.sqrt(abs(np.linalg.det(transform[:, :2])))
        rotation = np.degrees(np.arctan2(transform[1, 0], transform[0, 0]))
        if not 1 / LARGEST_SCALE_CHANGE <= scale <= LARGEST_SCALE_CHANGE or abs(rotation) > LARGEST_ROTATION_DEGREES:
            continue
        if mirrored:  # The transform maps the mirror image: compose it with the mirroring.
            width = second.gray.shape[1]
            transform = np.hstack([transform[:, :2] @ np.diag([-1.0, 1.0]), transform[:, :2] @ [[width - 1.0], [0.0]] + transform[:, 2:]])
        found.append(("mirrored features" if mirrored else "features", transform))
    return found


def frame_screen(first, second, first_aspects, second_aspects):
    """(P,) bool: which pairs of pictures too small for features might still be copies frame to frame.

    first, second: (P, THUMBNAIL_SIDE ** 2) thumbnails of each pair's pictures; the aspects: (P,) width / height.
    A vectorized, looser form of compare's frame test for many pairs at once (60,000 images give 600,000
    candidate pairs): second's thumbnail, plain and mirrored, is fitted to first's by gain and offset, and a
    pair passes when at most SCREEN_SHARE of the thumbnail's cells still differ by CELL_DIFFERENCE.
    """
    mirrored = second.reshape(-1, THUMBNAIL_SIDE, THUMBNAIL_SIDE)[:, :, ::-1].reshape(len(second), -1)
    aspects = np.abs(np.log(first_aspects / second_aspects)) <= ASPECT_TOLERANCE
    passes = np.zeros(len(first), bool)
    for candidate in (second, mirrored):
        # Cells clipped to white in either are left out, as in tone_matched.
        kept = ((first < 255 - CLIPPED_LEVELS) & (candidate < 255 - CLIPPED_LEVELS)).astype(np.float32)
        counts = np.maximum(kept.sum(axis=1, keepdims=True), 1)
        first_centred = (first - (first * kept).sum(axis=1, keepdims=True) / counts) * kept
        centred = (candidate - (candidate * kept).sum(axis=1, keepdims=True) / counts) * kept
        gain = (first_centred * centred).sum(axis=1, keepdims=True) / np.maximum((centred * centred).sum(axis=1, keepdims=True), 1e-6)
        differing = ((np.abs(first_centred - gain * centred) > CELL_DIFFERENCE) * kept).sum(axis=1) / counts[:, 0]
        passes |= differing <= SCREEN_SHARE
    return passes & aspects


def compare(first, second):
    """The Verdict on two Pictures: the best correlation over the frame and feature alignments."""
    best = NO_COPY
    for transforms in (frame_transforms, feature_transforms):
        for alignment, transform in transforms(first, second):
            # The smaller picture is brought up to the larger: shrinking by warpAffine would alias.
            swapped = abs(np.linalg.det(transform[:, :2])) < 1
            if swapped:
                compared = aligned_difference(second, first, cv2.invertAffineTransform(transform))
            else:
                compared = aligned_difference(first, second, transform)
            if compared is None:
                continue
            correlation, differing, coverage = compared
            copy = correlation >= COPY_CORRELATION and differing <= DIFFERING_SHARE
            if (copy, -differing, correlation) > (best.copy, -best.differing, best.correlation):
                best = Verdict(copy, correlation, differing, alignment, coverage[::-1] if swapped else coverage)
        if best.copy:  # The whole frame agrees: no need to match features.
            return best
    return best
