"""Near-duplicate benchmarks from real photographs: seeded random views of each picture, one class per picture."""

import glob
import os
import zlib

import cv2
import numpy as np

from imsearch import InputError, console, locations, published_datasets

# The photographs among Debian's wallpapers, one entry per picture (never per file): plasma ships each
# picture at many resolutions, and the largest file of its folder is taken. Left out as drawings or
# renders: everything in gnome-backgrounds, sway-backgrounds, ukui-wallpapers, mate's abstract and desktop
# folders, and plasma's Altai, Autumn (a painting), Canopee, Cascade, Cluster, Elarun, Flow, FlyingKonqui,
# Honeywave, IceCold, Kay, Kokkini, MilkyWay, Opal, PastelHills, Patak, SafeLanding, Shell and Volna.
WALLPAPER_PHOTOS = {
    "aqua": ("mate-backgrounds", "backgrounds/mate/nature/Aqua.jpg"),
    "blinds": ("mate-backgrounds", "backgrounds/mate/nature/Blinds.jpg"),
    "dune": ("mate-backgrounds", "backgrounds/mate/nature/Dune.jpg"),
    "fresh-flower": ("mate-backgrounds", "backgrounds/mate/nature/FreshFlower.jpg"),
    "garden": ("mate-backgrounds", "backgrounds/mate/nature/Garden.jpg"),
    "green-meadow": ("mate-backgrounds", "backgrounds/mate/nature/GreenMeadow.jpg"),
    "lady-bird": ("mate-backgrounds", "backgrounds/mate/nature/LadyBird.jpg"),
    "rain-drops": ("mate-backgrounds", "backgrounds/mate/nature/RainDrops.jpg"),
    "storm": ("mate-backgrounds", "backgrounds/mate/nature/Storm.jpg"),
    "two-wings": ("mate-backgrounds", "backgrounds/mate/nature/TwoWings.jpg"),
    "wood": ("mate-backgrounds", "backgrounds/mate/nature/Wood.jpg"),
    "yellow-flower": ("mate-backgrounds", "backgrounds/mate/nature/YellowFlower.jpg"),
    "by-the-water": ("plasma-workspace-wallpapers", "wallpapers/BytheWater/contents/images"),
    "cold-ripple": ("plasma-workspace-wallpapers", "wallpapers/ColdRipple/contents/images"),
    "colorful-cups": ("plasma-workspace-wallpapers", "wallpapers/ColorfulCups/contents/images"),
    "darkest-hour": ("plasma-workspace-wallpapers", "wallpapers/DarkestHour/contents/images"),
    "evening-glow": ("plasma-workspace-wallpapers", "wallpapers/EveningGlow/contents/images"),
    "fallen-leaf": ("plasma-workspace-wallpapers", "wallpapers/FallenLeaf/contents/images"),
    "grey": ("plasma-workspace-wallpapers", "wallpapers/Grey/contents/images"),
    "kite": ("plasma-workspace-wallpapers", "wallpapers/Kite/contents/images"),
    "one-stands-out": ("plasma-workspace-wallpapers", "wallpapers/OneStandsOut/contents/images"),
    "path": ("plasma-workspace-wallpapers", "wallpapers/Path/contents/images"),
    "summer-1am": ("plasma-workspace-wallpapers", "wallpapers/summer_1am/contents/images"),
}
SHARE_DIR = locations.DEBIAN_SHARE_DIR
# scikit-image's bundled colour photographs, name: file stem (motorcycle_right is left out: the other half
# of a stereo pair).
SKIMAGE_PHOTOS = {"astronaut": "astronaut", "chelsea": "chelsea", "coffee": "coffee", "hubble-deep-field": "hubble_deep_field",
                  "immunohistochemistry": "ihc", "motorcycle-left": "motorcycle_left", "retina": "retina", "rocket": "rocket"}
# Longest side of a picture before views are cut from it: plenty for views of at most VIEW_SIDES[1].
WORKING_SIDE = 1600
# Views per picture in the database (train) and among the queries (test).
TRAIN_VIEWS, TEST_VIEWS = 20, 5
# Ranges of the random edits of a view.
AREA_RANGE = (0.35, 1.0)
ASPECT_RANGE = (3 / 4, 4 / 3)
ROTATION_DEGREES = 10
CONTRAST_RANGE = (0.75, 1.3)
BRIGHTNESS_RANGE = (-30, 30)
JPEG_QUALITY_RANGE = (40, 95)
VIEW_SIDES = (160, 800)
# The small folder: each original, and its edited copies as queries.
SMALL_ORIGINAL_SIDE = 1920
SMALL_COPIES = ("resized", "cropped", "reencoded", "mirrored")


def find_photos(share_dir=SHARE_DIR):
    """{name: path} of the photographs available: Debian's wallpapers and scikit-image's bundled photos.

    Raises InputError naming the packages to install when none of the wallpaper photographs is found.
    """
    photos, missing = {}, set()
    for name, (package, relative) in WALLPAPER_PHOTOS.items():
        path = os.path.join(share_dir, relative)
        if os.path.isdir(path):
            # The same picture at several resolutions: the largest file holds the most detail.
            files = sorted(glob.glob(os.path.join(path, "*.*")), key=lambda file: (os.path.getsize(file), file))
            path = files[-1] if files else None
        if path and os.path.isfile(path):
            photos[name] = path
        else:
            missing.add(package)
    install = f"apt-get install {' '.join(sorted(missing))}"
    if not photos:
        raise InputError(f"no wallpaper photographs under {share_dir}; install them with: {install}")
    extra = skimage_photos()
    if len(extra) < len(SKIMAGE_PHOTOS):
        console.warn(f"{len(SKIMAGE_PHOTOS) - len(extra)} of scikit-image's {len(SKIMAGE_PHOTOS)} photographs are missing, "
                     "so the benchmark differs from README's; install it with: bash install.sh")
    if missing:
        console.warn(f"{len(WALLPAPER_PHOTOS) - len(photos)} of the {len(WALLPAPER_PHOTOS)} wallpaper photographs are "
                     f"missing, so the benchmark differs from README's; install them with: {install}")
    return photos | extra


def skimage_photos():
    """{name: path} of scikit-image's bundled colour photographs, or {} without scikit-image."""
    try:
        import skimage.data
    except ImportError:
        return {}
    folder = os.path.dirname(skimage.data.__file__)
    found = {name: sorted(glob.glob(os.path.join(folder, stem + ".*"))) for name, stem in SKIMAGE_PHOTOS.items()}
    return {name: matches[0] for name, matches in found.items() if matches}


def load_picture(path, longest_side):
    """A picture as a BGR uint8 array scaled down so its longest side is at most longest_side."""
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"{path}: not a readable image; reinstall its package")
    scale = longest_side / max(image.shape[:2])
    if scale < 1:
        image = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    return image


def seed_of(*parts):
    """A stable seed for a view (Python's hash() changes between runs)."""
    return zlib.crc32("/".join(str(part) for part in parts).encode())


def random_view(image, rng):
    """One edited view of a BGR image and its JPEG quality: crop, aspect, mirror, rotation, tone and size, at random."""
    height, width = image.shape[:2]
    # Rotate about the centre, zoomed just enough that no corner of the frame falls outside the picture.
    angle = rng.uniform(-ROTATION_DEGREES, ROTATION_DEGREES)
    radians = np.deg2rad(abs(angle))
    zoom = max((width * np.cos(radians) + height * np.sin(radians)) / width,
               (width * np.sin(radians) + height * np.cos(radians)) / height)
    rotation = cv2.getRotationMatrix2D((width / 2, height / 2), angle, zoom)
    image = cv2.warpAffine(image, rotation, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    # A crop of a random share of the area with a random change of aspect, somewhere in the picture.
    area = rng.uniform(*AREA_RANGE) * height * width
    aspect = np.exp(rng.uniform(*np.log(ASPECT_RANGE))) * width / height
    crop_width = int(min(width, round(np.sqrt(area * aspect))))
    crop_height = int(min(height, round(area / crop_width)))
    top, left = rng.integers(0, height - crop_height + 1), rng.integers(0, width - crop_width + 1)
    image = image[top : top + crop_height, left : left + crop_width]
    if rng.random() < 0.5:
        image = image[:, ::-1]
    contrast, brightness = rng.uniform(*CONTRAST_RANGE), rng.uniform(*BRIGHTNESS_RANGE)
    image = cv2.convertScaleAbs(image, alpha=contrast, beta=brightness + (1 - contrast) * 128)
    scale = rng.uniform(*VIEW_SIDES) / max(image.shape[:2])
    size = (max(8, round(image.shape[1] * scale)), max(8, round(image.shape[0] * scale)))
    image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return image, int(rng.integers(JPEG_QUALITY_RANGE[0], JPEG_QUALITY_RANGE[1] + 1))


def edited_copies(image):
    """{name: (image, JPEG quality)}: the small folder's copies of an original, as users make them."""
    height, width = image.shape[:2]
    scale = 200 / max(height, width)
    resized = cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    # The centre 80% of each side: 64% of the picture.
    cropped = image[height // 10 : height - height // 10, width // 10 : width - width // 10]
    return {"resized": (resized, 90), "cropped": (cropped, 90), "reencoded": (image, 40), "mirrored": (image[:, ::-1], 90)}


def board_series(count, rng):
    """Gray photos of one checkerboard in different poses before one brick wall, as a camera calibration series is taken.

    Built from scikit-image's checkerboard and brick photos: a hard case for duplicate finders, whose every
    picture shares its histograms and most of its pixels with the others.
    """
    import skimage

    folder = os.path.join(os.path.dirname(skimage.__file__), "data")
    board = cv2.imread(os.path.join(folder, "chessboard_GRAY.png"), cv2.IMREAD_GRAYSCALE)
    wall = cv2.resize(cv2.imread(os.path.join(folder, "brick.png"), cv2.IMREAD_GRAYSCALE), (480, 360))
    corners = np.float32([[0, 0], [board.shape[1], 0], [board.shape[1], board.shape[0]], [0, board.shape[0]]])
    series = []
    for _ in range(count):
        centre, size = rng.uniform([170, 130], [310, 230]), rng.uniform(110, 190)
        pose = np.float32(centre + size / 2 * np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) + rng.normal(0, size * 0.12, (4, 2)))
        homography = cv2.getPerspectiveTransform(corners, pose)
        shown = cv2.warpPerspective(np.ones_like(board), homography, wall.shape[::-1]) > 0
        image = np.where(shown, cv2.warpPerspective(board, homography, wall.shape[::-1]), wall).astype(np.float32)
        series.append(np.clip(image * rng.uniform(0.85, 1.1) + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8))
    return series


def write_jpeg(path, image, quality):
    """Write a BGR image as a JPEG of the given quality; InputError when it cannot be written."""
    if not published_datasets.write_encoded(path, ".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality]):
        raise InputError(f"{path}: could not be written; check free space")


def build_views(photos, target_dir, train_views=TRAIN_VIEWS, test_views=TEST_VIEWS):
    """Write target_dir/{train,test}/<photo>/<view>.jpg: seeded random views of each photo, all or nothing."""
    def write(staging_dir):
        for name, path in sorted(photos.items()):
            picture = load_picture(path, WORKING_SIDE)
            for split, count in (("train", train_views), ("test", test_views)):
                os.makedirs(os.path.join(staging_dir, split, name), exist_ok=True)
                for view in range(count):
                    image, quality = random_view(picture, np.random.default_rng(seed_of(name, split, view)))
                    write_jpeg(os.path.join(staging_dir, split, name, f"{view:02d}.jpg"), image, quality)
        return len(photos) * (train_views + test_views)

    return published_datasets.write_folder(target_dir, write)


def build_small_folder(photos, target_dir):
    """Write target_dir/train/<photo>/original.jpg and target_dir/test/<photo>/<copy>.jpg, all or nothing."""
    def write(staging_dir):
        for name, path in sorted(photos.items()):
            original = load_picture(path, SMALL_ORIGINAL_SIDE)
            os.makedirs(os.path.join(staging_dir, "train", name))
            os.makedirs(os.path.join(staging_dir, "test", name))
            write_jpeg(os.path.join(staging_dir, "train", name, "original.jpg"), original, 95)
            for copy, (image, quality) in edited_copies(original).items():
                write_jpeg(os.path.join(staging_dir, "test", name, f"{copy}.jpg"), image, quality)
        return len(photos) * (1 + len(SMALL_COPIES))

    return published_datasets.write_folder(target_dir, write)
