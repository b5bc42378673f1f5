"""search.py --duplicates on real photographs: edited copies pair with their originals; look-alikes, series and chains do not."""

import os

import cv2
import numpy as np
import pytest
import sklearn

import index_dataset
import search
import train
import config
from imsearch import photo_sets


def edited(image):
    """{name: (image, JPEG quality)}: the copies a user makes, among them a mirror image and a 15% crop off one corner."""
    height, width = image.shape[:2]
    return {
        "resized": (cv2.resize(image, (width // 2, height // 2), interpolation=cv2.INTER_AREA), 90),
        "cropped": (image[round(height * 0.15):, : round(width * 0.85)], 90),
        "reencoded": (image, 40),
        "mirrored": (image[:, ::-1], 90),
        "brighter": (cv2.convertScaleAbs(image, alpha=1.15, beta=20), 90),
    }


def duplicate_lines(folder, run, training_flags, search_flags=()):
    """search.py --duplicates's output lines, split at tabs, for a folder trained on briefly and indexed into run."""
    import contextlib
    import io

    train.main(["--dataset", str(folder), "--output", run, "--epochs", "1", *training_flags, "--filters", "8", "16",
                "--image-size", "32"])
    index_dataset.main(["--dataset", str(folder), "--output", run])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        search.main(["--output", run, "--duplicates", *search_flags])
    return [line.split("\t") for line in out.getvalue().splitlines()]


@pytest.fixture(scope="module")
def duplicates_run(tmp_path_factory):
    """A folder of photos, their edited copies, a checkerboard series and a chain; trained, indexed, and searched for duplicates.

    Returns (expected pairs of file names, found pairs, output lines, the HTML page).
    """
    root = tmp_path_factory.mktemp("duplicates")
    folder = root / "folder"
    folder.mkdir()
    expected = set()
    for number, (name, path) in enumerate(sorted(photo_sets.skimage_photos().items())):
        original = photo_sets.load_picture(path, 480)
        cv2.imwrite(str(folder / f"{name}.jpg"), original, [cv2.IMWRITE_JPEG_QUALITY, 95])
        if number % 2:
            continue  # Every other photograph stands alone: it must pair with nothing.
        for copy, (image, quality) in edited(original).items():
            photo_sets.write_jpeg(str(folder / f"{name}-{copy}.jpg"), image, quality)
            expected.add(tuple(sorted((f"{name}.jpg", f"{name}-{copy}.jpg"))))
    for number, image in enumerate(photo_sets.board_series(8, np.random.default_rng(0))):
        cv2.imwrite(str(folder / f"board-{number}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
    # A chain: two crops of one larger picture, each a copy of it, that overlap too little to be copies of each other.
    whole = photo_sets.load_picture(os.path.join(os.path.dirname(sklearn.__file__), "datasets", "images", "china.jpg"), 600)
    height, width = whole.shape[:2]
    cv2.imwrite(str(folder / "chain-whole.jpg"), whole, [cv2.IMWRITE_JPEG_QUALITY, 95])
    cv2.imwrite(str(folder / "chain-top-left.jpg"), whole[: round(height * 0.85), : round(width * 0.85)])
    cv2.imwrite(str(folder / "chain-bottom-right.jpg"), whole[round(height * 0.15):, round(width * 0.15):])
    lines = duplicate_lines(folder, str(root / "run"), ["--batch-size", "8", "--latent-dim", "16"],
                            ["--html", str(root / "duplicates.html")])
    found = {tuple(sorted(os.path.basename(path) for path in line[:2])) for line in lines}
    return expected, found, lines, (root / "duplicates.html").read_text()


def test_every_edited_copy_pairs_with_its_original(duplicates_run):
    expected, found, lines, _ = duplicates_run
    assert expected <= found  # Mirrored, 15%-cropped, JPEG-40, resized and brightened copies each.
    copies = [os.path.basename(line[1]) for line in lines]
    assert len(copies) == len(set(copies)) and not set(copies) & {os.path.basename(line[0]) for line in lines}


def test_no_pair_joins_different_pictures(duplicates_run):
    _, found, _, _ = duplicates_run
    def picture(name):
        return name.split("-")[0].removesuffix(".jpg")
    assert [pair for pair in found if picture(pair[0]) != picture(pair[1]) and not pair[0].startswith("chain")] == []
    assert not [pair for pair in found if pair[0].startswith("board")]  # A series of different poses is no copy.


def test_two_crops_of_one_picture_join_its_set_and_never_keep_each_other(duplicates_run):
    _, found, lines, page = duplicates_run
    # Both crops are copies of the whole, not of each other: both are listed beside the whole, which holds them both.
    chain = sorted([os.path.basename(path) for path in line[:2]] for line in lines if "chain-" in line[0])
    assert chain == [["chain-whole.jpg", "chain-bottom-right.jpg"], ["chain-whole.jpg", "chain-top-left.jpg"]]
    assert ("chain-bottom-right.jpg", "chain-top-left.jpg") not in found
    sets = [section for section in page.split("<section")[1:] if "chain-" in section]
    assert len(sets) == 1 and "chain-whole.jpg: 2 copies</h2>" in sets[0]


def test_each_line_puts_the_file_to_keep_first_with_its_evidence(duplicates_run):
    expected, _, lines, page = duplicates_run
    originals = {name for pair in expected for name in pair if name.removesuffix(".jpg") in photo_sets.SKIMAGE_PHOTOS}
    assert all(len(line) == 6 for line in lines)
    for _, copy, distance, correlation, differing, alignment in lines:
        assert os.path.basename(copy) not in originals  # An original is the largest, least compressed file of its pair.
        assert float(distance) <= config.DEFAULTS.duplicate_distance and float(correlation) >= 0.9 and float(differing) <= 0.03
        assert alignment in ("frame", "mirrored frame", "features", "mirrored features")
    mirrored = [line for line in lines if line[1].endswith("-mirrored.jpg")]
    assert mirrored and all("mirrored" in line[5] for line in mirrored)
    assert "<title>Duplicates</title>" in page and "keep " in page


def test_duplicates_of_an_index_without_histograms_is_refused_by_name(gray_model, gray_dataset, tmp_path, capsys):
    from conftest import fails_with

    index_path = str(tmp_path / "plain.pkl")
    index_dataset.main(["--dataset", str(gray_dataset / "train"), "--model", str(gray_model / "autoencoder.keras"),
                        "--index", index_path, "--no-histograms"])
    line = fails_with(search, ["--duplicates", "--index", index_path], capsys)
    assert "plain.pkl: holds no histograms (indexed with --no-histograms)" in line


def test_what_is_kept_and_what_is_no_copy(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    page = np.full((480, 640, 3), 255, np.uint8)
    for line in range(8):
        cv2.putText(page, f"Invoice line {line}: 12 items at 3.50", (40, 60 + 45 * line), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (20, 20, 20), 2)
    cv2.imwrite(str(folder / "page.png"), page)
    cv2.imwrite(str(folder / "page-export.jpg"), page, [cv2.IMWRITE_JPEG_QUALITY, 98])  # More bytes, yet lossy.
    signed = page.copy()
    cv2.polylines(signed, [np.array([[420, 430], [450, 400], [480, 440], [520, 395], [560, 435]], np.int32)], False, (30, 30, 120), 3)
    cv2.putText(signed, "PAID", (470, 470), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (30, 30, 160), 2)
    cv2.imwrite(str(folder / "page-signed.jpg"), signed, [cv2.IMWRITE_JPEG_QUALITY, 95])
    scene = photo_sets.load_picture(photo_sets.skimage_photos()["coffee"], 400)
    height, width = scene.shape[:2]
    detail = cv2.resize(scene[: round(height * 0.8), round(width * 0.2):], None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    photo_sets.write_jpeg(str(folder / "scene.jpg"), scene, 90)
    photo_sets.write_jpeg(str(folder / "scene-detail.jpg"), detail, 90)  # Four times the pixels, but a crop.
    thumbnail = cv2.resize(scene, (width // 3, height // 3), interpolation=cv2.INTER_AREA)
    framed = cv2.copyMakeBorder(thumbnail, 14, 14, 14, 14, cv2.BORDER_CONSTANT, value=(255, 255, 255))
    photo_sets.write_jpeg(str(folder / "scene-framed.jpg"), framed, 85)  # Its white border makes the scene no crop.
    os.symlink("scene.jpg", folder / "a-link.jpg")
    lines = duplicate_lines(folder, str(tmp_path / "run"), ["--batch-size", "4", "--latent-dim", "8"])
    pairs = [tuple(os.path.basename(path) for path in line[:2]) for line in lines]
    assert sorted(pairs) == [("page.png", "page-export.jpg"), ("scene.jpg", "scene-detail.jpg"), ("scene.jpg", "scene-framed.jpg")]
