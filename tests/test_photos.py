"""Photo benchmarks and photo folders: seeded views, colour and mirror behaviour, and no hub among the hits."""

import collections
import filecmp
import os

import cv2
import numpy as np
import pytest

import index_dataset
import prepare_dataset
import search
import train

from imsearch import descriptors, index, photo_sets


def scenery(seed, size=(96, 128)):
    """A BGR picture of smooth random colours with a few shapes: different for every seed, photo-like in its histograms."""
    rng = np.random.default_rng(seed)
    height, width = size
    image = cv2.resize(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8), (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(3):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        colour = tuple(int(value) for value in rng.integers(0, 256, 3))
        cv2.circle(image, centre, int(rng.integers(8, 30)), colour, -1)
    cv2.rectangle(image, (int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))),
                  (int(rng.integers(width // 2, width)), int(rng.integers(height // 2, height))),
                  tuple(int(value) for value in rng.integers(0, 256, 3)), 3)
    return image


def write_sources(folder, count, seed=0):
    """count pictures in folder as {name: path}, as photo_sets.find_photos returns them."""
    os.makedirs(folder, exist_ok=True)
    sources = {}
    for number in range(count):
        sources[f"picture-{number}"] = os.path.join(folder, f"picture-{number}.png")
        cv2.imwrite(sources[f"picture-{number}"], scenery(seed + number, size=(240, 320)))
    return sources


def same_tree(first, second):
    """Whether two folders hold the same relative files with the same bytes."""
    listing = lambda root: sorted(os.path.relpath(os.path.join(folder, name), root)  # noqa: E731
                                  for folder, _, names in os.walk(root) for name in names)
    files = listing(first)
    return files == listing(second) and all(filecmp.cmp(os.path.join(first, name), os.path.join(second, name), shallow=False)
                                            for name in files)


def test_photo_benchmarks_are_the_same_files_every_time(tmp_path):
    sources = write_sources(tmp_path / "sources", 3)
    for name in ("first", "second"):
        assert photo_sets.build_views(sources, str(tmp_path / name / "photos"), train_views=4, test_views=2) == 18
        assert photo_sets.build_small_folder(sources, str(tmp_path / name / "small")) == 3 * (1 + len(photo_sets.SMALL_COPIES))
    assert same_tree(tmp_path / "first", tmp_path / "second")
    views = sorted(os.listdir(tmp_path / "first" / "photos" / "train" / "picture-0"))
    assert views == ["00.jpg", "01.jpg", "02.jpg", "03.jpg"]
    # The views of one picture are different edits of it, not one file four times.
    sizes = {cv2.imread(str(tmp_path / "first" / "photos" / "train" / "picture-0" / view)).shape for view in views}
    assert len(sizes) > 1
    copies = sorted(os.listdir(tmp_path / "first" / "small" / "test" / "picture-1"))
    assert copies == sorted(f"{copy}.jpg" for copy in photo_sets.SMALL_COPIES)
    assert os.listdir(tmp_path / "first" / "small" / "train" / "picture-1") == ["original.jpg"]


def test_prepare_photos_names_the_packages_to_install(tmp_path, capsys):
    with pytest.raises(SystemExit) as raised:
        prepare_dataset.main(["photos", "--source", str(tmp_path), "--dataset-root", str(tmp_path / "out")])
    assert raised.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "apt-get install" in error and "mate-backgrounds" in error and "plasma-workspace-wallpapers" in error
    assert not os.path.exists(tmp_path / "out" / "photos")


def test_find_photos_takes_one_file_per_picture(tmp_path, capsys):
    plasma = tmp_path / "wallpapers" / "Path" / "contents" / "images"
    plasma.mkdir(parents=True)
    for name, side in (("640x480.jpg", 64), ("2560x1600.jpg", 256)):
        cv2.imwrite(str(plasma / name), scenery(1, size=(side, side)))
    found = photo_sets.find_photos(str(tmp_path))
    assert found["path"] == str(plasma / "2560x1600.jpg")
    assert not [name for name in found if name in photo_sets.WALLPAPER_PHOTOS and name != "path"]
    # The other wallpaper photographs are missing: one warning says how many, and what to install.
    warning = capsys.readouterr().err.strip()
    assert warning.startswith(f"warning: {len(photo_sets.WALLPAPER_PHOTOS) - 1} of the {len(photo_sets.WALLPAPER_PHOTOS)} ")
    assert "mate-backgrounds" in warning and len(warning.splitlines()) == 1


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    """A folder of 12 pictures, each beside a resized and a re-encoded copy, and one collage of them all.

    The collage resembles every picture a little: in a neighbour graph it is linked to most of them, the kind
    of hub that diffusion used to rank first for most queries.
    """
    root = tmp_path_factory.mktemp("photo_folder")
    pictures = [scenery(100 + number) for number in range(12)]
    for number, picture in enumerate(pictures):
        folder = root / "folder" / f"picture-{number:02d}"
        folder.mkdir(parents=True)
        cv2.imwrite(str(folder / "original.png"), picture)
        cv2.imwrite(str(folder / "resized.png"), cv2.resize(picture, (64, 48), interpolation=cv2.INTER_AREA))
        cv2.imwrite(str(folder / "reencoded.jpg"), picture, [cv2.IMWRITE_JPEG_QUALITY, 40])
    # A 4 x 3 collage of small copies of all twelve: some of every picture's colours and edges.
    tiles = [cv2.resize(picture, (32, 32), interpolation=cv2.INTER_AREA) for picture in pictures]
    collage = np.vstack([np.hstack(tiles[row * 4 : row * 4 + 4]) for row in range(3)])
    (root / "folder" / "collage").mkdir()
    cv2.imwrite(str(root / "folder" / "collage" / "collage.png"), collage)
    output = root / "output"
    train.main(["--dataset", str(root / "folder"), "--output", str(output), "--epochs", "2", "--batch-size", "8",
                "--latent-dim", "16", "--filters", "8", "16", "--image-size", "32",
                "--objective", "reconstruction"])  # The design's features make the collage the hub this file tests against.
    index_dataset.main(["--dataset", str(root / "folder"), "--model", str(output / "autoencoder.keras"),
                        "--index", str(output / "features.pkl")])
    return root, pictures


def search_hits(root, queries, capsys, *flags):
    """{query: [hit paths in rank order]} from search.py on the photo folder's index."""
    capsys.readouterr()
    search.main(["--model", str(root / "output" / "autoencoder.keras"), "--index", str(root / "output" / "features.pkl"),
                 "--output", str(root / "output"), "--no-images", "--top-k", "40", *flags, *map(str, queries)])
    hits = collections.defaultdict(list)
    for line in capsys.readouterr().out.splitlines():
        query, _, distance, path = line.split("\t")
        hits[query].append((os.path.relpath(path, root / "folder"), float(distance)))
    return hits


def test_no_picture_is_the_top_hit_of_many_queries(photo_folder, capsys):
    root, _ = photo_folder
    queries = sorted((root / "folder").glob("*/*"))
    hits = search_hits(root, queries, capsys)
    assert len(hits) == len(queries) == 37
    top_hits = collections.Counter(ranked[0][0] for ranked in hits.values())
    assert max(top_hits.values()) <= 0.1 * len(queries), top_hits.most_common(3)
    # Every copy's own picture comes first: its original or its other copy.
    for query, ranked in hits.items():
        if "picture-" in query:
            assert ranked[0][0].split("/")[0] == os.path.basename(os.path.dirname(query)), (query, ranked[:3])
    # The folder does have a hub: the collage is linked to more pictures than any picture is.
    feature_index = index.load_index(str(root / "output" / "features.pkl"))
    links = np.bincount(feature_index.neighbours.ravel(), minlength=len(queries))
    assert np.argmax(links) == feature_index.paths.index("collage/collage.png") and links.max() > 0.8 * len(queries)


def test_a_mirrored_copy_ranks_near_and_a_colour_swapped_copy_far(photo_folder, capsys, tmp_path):
    root, pictures = photo_folder
    queries = []
    for number in (0, 5, 9):
        mirrored, swapped = tmp_path / f"mirrored-{number}.png", tmp_path / f"swapped-{number}.png"
        cv2.imwrite(str(mirrored), pictures[number][:, ::-1])
        cv2.imwrite(str(swapped), pictures[number][:, :, [1, 2, 0]])  # Blue, green, red become green, red, blue.
        queries += [mirrored, swapped]
    for flags in ((), ("--no-diffusion",)):
        hits = search_hits(root, queries, capsys, *flags)
        for number in (0, 5, 9):
            original = f"picture-{number:02d}/original.png"
            mirrored_hits, swapped_hits = hits[str(tmp_path / f"mirrored-{number}.png")], hits[str(tmp_path / f"swapped-{number}.png")]
            assert mirrored_hits[0][0] == original and mirrored_hits[0][1] < 0.05
            # The same shapes in other colours: far from the original by cosine, though no farther than unrelated
            # pictures; under diffusion, which may still rank it first, never shown as a near copy (under 0.05).
            swapped_distance = dict(swapped_hits)[original]
            if flags:
                assert swapped_distance > 4 * mirrored_hits[0][1] and swapped_distance > 0.1
            else:
                assert swapped_distance >= 0.05
            assert len({path for path, _ in swapped_hits}) == len(swapped_hits) == 37


def test_colour_histograms_tell_colours_apart_and_ignore_mirroring():
    picture = scenery(7)[None].astype(np.float32) / 255
    histograms = lambda images: descriptors.colour_histograms(images)[0]  # noqa: E731
    original = histograms(picture)
    assert np.allclose(histograms(picture[:, :, ::-1]), original, atol=1e-6)
    assert original @ histograms(picture[..., [1, 2, 0]]) < 0.5
    assert abs(np.linalg.norm(original) - 1) < 1e-6


def test_colour_histograms_of_a_gray_photo_survive_brightness_and_contrast_edits():
    """A gray picture's colour histogram is its value bins: brightness and contrast edits must not move them."""
    histograms = lambda image: descriptors.colour_histograms(image[None].astype(np.float32) / 255)[0]  # noqa: E731
    gray = cv2.cvtColor(cv2.cvtColor(scenery(3), cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2RGB)
    original = histograms(gray)
    for contrast, brightness in ((1.2, 25), (0.8, -20)):
        edited = histograms(cv2.convertScaleAbs(gray, alpha=contrast, beta=brightness))
        assert original @ edited > 0.95, (contrast, brightness, original @ edited)
    # The value bins still tell a mostly dark picture from a half-bright one.
    mostly_dark, half_bright = np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32, 3), np.uint8)
    mostly_dark[:1] = 255
    half_bright[:16] = 200
    assert histograms(mostly_dark) @ histograms(half_bright) < 0.9
    flat = histograms(np.full((32, 32, 3), 128, np.uint8))
    assert np.isclose(flat.max(), 1.0)  # One brightness: every pixel in one bin, nothing to stretch.
