"""search.py --duplicates on real photographs: edited copies are paired with their originals, unrelated photos are not."""

import itertools
import os

import cv2

import index_dataset
import search
import train
from imsearch import photos


def test_duplicates_pairs_every_copy_with_its_original_and_nothing_else(tmp_path, capsys):
    pictures = sorted(photos.skimage_photos().items())  # Real colour photographs bundled with scikit-image.
    assert len(pictures) >= 6
    folder = tmp_path / "folder"
    folder.mkdir()
    expected = set()
    for number, (name, path) in enumerate(pictures):
        original = photos.load_picture(path, 320)
        cv2.imwrite(str(folder / f"{name}.jpg"), original)
        if number % 2:
            continue  # Every other photograph stands alone: it must pair with nothing.
        copies = {copy: image for copy, image in photos.edited_copies(original).items() if copy != "mirrored"}
        for copy, (image, quality) in copies.items():
            photos.write_jpeg(str(folder / f"{name}-{copy}.jpg"), image, quality)
        members = [f"{name}.jpg"] + [f"{name}-{copy}.jpg" for copy in copies]
        expected |= {tuple(sorted(pair)) for pair in itertools.combinations(members, 2)}
    run = str(tmp_path / "run")
    train.main(["--dataset", str(folder), "--output", run, "--epochs", "2", "--batch-size", "4", "--latent-dim", "16",
                "--filters", "8", "16"])
    index_dataset.main(["--dataset", str(folder), "--output", run])
    capsys.readouterr()
    search.main(["--output", run, "--duplicates", "--html", str(tmp_path / "duplicates.html")])
    captured = capsys.readouterr()
    lines = [line.split("\t") for line in captured.out.splitlines()]
    found = {tuple(sorted(os.path.basename(path) for path in line[:2])) for line in lines}
    assert len(found) == len(lines)  # Each pair once.
    distances = [float(line[2]) for line in lines]
    assert distances == sorted(distances) and max(distances) <= 0.12
    assert len(found & expected) >= 0.95 * len(expected)
    assert len(found & expected) >= 0.95 * len(found)
    page = (tmp_path / "duplicates.html").read_text()
    assert page.count('<section class="query">') == len(pictures[::2])


def test_duplicate_sets_are_the_connected_groups_largest_first():
    import numpy as np

    from imsearch import duplicates

    pairs = np.array([[0, 1], [5, 6], [1, 2], [7, 8], [6, 8]])
    assert duplicates.duplicate_sets(pairs, 10) == [[5, 6, 7, 8], [0, 1, 2]]
    assert duplicates.duplicate_sets(np.zeros((0, 2), np.int64), 10) == []


def test_duplicates_of_an_index_without_histograms_is_refused_by_name(gray_model, gray_dataset, tmp_path, capsys):
    from conftest import fails_with

    index_path = str(tmp_path / "plain.pkl")
    index_dataset.main(["--dataset", str(gray_dataset / "train"), "--model", str(gray_model / "autoencoder.keras"),
                        "--index", index_path, "--no-histograms"])
    line = fails_with(search, ["--duplicates", "--index", index_path], capsys)
    assert "plain.pkl: holds no histograms (indexed with --no-histograms)" in line
