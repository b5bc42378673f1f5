"""Every photo a user has: HEIC, AVIF, TIFF, GIF, DNG, EXIF orientation, and OS clutter passed over in silence."""

import contextlib
import io
import os

import cv2
import numpy as np
import pytest

import index_dataset
import search
import train
from imsearch import image_folders, index, photo_sets
from sample_files import TURN_CLOCKWISE, write_dng, write_with_pillow

@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    """A folder of real photos in every format a phone, a camera or a scanner writes, with an OS's clutter beside them."""
    folder = tmp_path_factory.mktemp("formats") / "photos"
    folder.mkdir()
    pictures = {name: photo_sets.load_picture(path, 400) for name, path in photo_sets.skimage_photos().items()}
    write_with_pillow(str(folder / "astronaut.heic"), pictures["astronaut"])
    write_with_pillow(str(folder / "coffee.avif"), pictures["coffee"])
    write_with_pillow(str(folder / "chelsea.tiff"), pictures["chelsea"])
    write_with_pillow(str(folder / "rocket.gif"), pictures["rocket"])
    write_dng(str(folder / "motorcycle.dng"), pictures["motorcycle-left"])
    write_with_pillow(str(folder / "retina.jpg"), pictures["retina"])
    write_with_pillow(str(folder / "retina-sideways.jpg"), pictures["retina"], exif_orientation=TURN_CLOCKWISE)
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(64))
    (folder / "._retina.jpg").write_bytes(b"\x00\x05\x16\x07" + bytes(60))  # An AppleDouble resource fork.
    (folder / "clip.mov").write_bytes(b"\x00\x00\x00\x14ftypqt  " + bytes(32))
    (folder / "@eaDir").mkdir()
    cv2.imwrite(str(folder / "@eaDir" / "SYNOPHOTO_THUMB_S.jpg"), pictures["rocket"][:60, :60])
    return folder, pictures


@pytest.fixture(scope="module")
def indexed_run(photo_folder, tmp_path_factory):
    """(run folder, stderr of indexing): a colour model trained on the folder, and its index."""
    folder, _ = photo_folder
    run = str(tmp_path_factory.mktemp("formats_run"))
    train.main(["--dataset", str(folder), "--output", run, "--epochs", "1", "--batch-size", "4", "--latent-dim", "16",
                "--filters", "8", "16", "--image-size", "32", "--validation-fraction", "0.3"])
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        index_dataset.main(["--dataset", str(folder), "--output", run])
    return run, errors.getvalue()


EXPECTED = ["astronaut.heic", "chelsea.tiff", "coffee.avif", "motorcycle.dng", "retina-sideways.jpg", "retina.jpg", "rocket.gif"]


def test_every_format_is_listed_and_the_clutter_is_not(photo_folder, capsys):
    folder, _ = photo_folder
    paths, _ = image_folders.list_images(str(folder))
    assert paths == EXPECTED
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 1 and "skipped 1 file(s)" in warnings[0] and "(1 .mov)" in warnings[0], warnings


@pytest.mark.parametrize("name", EXPECTED)
def test_each_format_decodes_to_its_photo_upright(photo_folder, name):
    folder, pictures = photo_folder
    source = {"astronaut": "astronaut", "chelsea": "chelsea", "coffee": "coffee", "motorcycle": "motorcycle-left",
              "retina": "retina", "rocket": "rocket"}[name.split(".")[0].split("-")[0]]
    original = pictures[source]
    image = image_folders.read_display_image(str(folder / name), 400)
    # The sideways JPEG comes back upright; a DNG loses at most a column and a row to its 2x2 Bayer pattern.
    assert abs(image.shape[0] - original.shape[0]) <= 1 and abs(image.shape[1] - original.shape[1]) <= 1, image.shape
    small = cv2.resize(image, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    expected = cv2.resize(cv2.cvtColor(original, cv2.COLOR_BGR2RGB), (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    others = [cv2.resize(cv2.cvtColor(picture, cv2.COLOR_BGR2RGB), (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
              for key, picture in pictures.items() if key != source]
    # Nearer its own photo than any other: the right picture, the right way up, in roughly its colours.
    assert np.abs(small - expected).mean() < min(np.abs(small - other).mean() for other in others)
    assert np.abs(small - expected).mean() < 40


def test_indexing_reads_every_format_and_warns_once_with_counts(indexed_run):
    run, errors = indexed_run
    assert index.load_index(os.path.join(run, "features.pkl")).paths == EXPECTED
    assert "unreadable" not in errors and "DS_Store" not in errors and "._retina" not in errors and "@eaDir" not in errors
    assert errors.count("(1 .mov)") == 1, errors


def test_each_format_is_accepted_as_a_query(photo_folder, indexed_run):
    folder, _ = photo_folder
    run, _ = indexed_run
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        search.main(["--output", run, "--top-k", "1", "--no-images", *[str(folder / name) for name in EXPECTED]])
    queries = {line.split("\t")[0] for line in out.getvalue().splitlines()}
    assert queries == {str(folder / name) for name in EXPECTED}


def test_a_photo_stored_sideways_is_a_duplicate_of_its_upright_copy(indexed_run):
    run, _ = indexed_run
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        search.main(["--output", run, "--duplicates"])
    pairs = {tuple(sorted(os.path.basename(path) for path in line.split("\t")[:2])) for line in out.getvalue().splitlines()}
    assert pairs == {("retina-sideways.jpg", "retina.jpg")}
