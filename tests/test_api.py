"""The Python API: a run folder opened once, searched with paths and in-memory images, duplicates, update."""

import os
import shutil

import cv2
import numpy as np
import pytest

import imsearch
import index_dataset
import search
import train
from imsearch import photo_sets


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A run folder trained and indexed on real photos and their edited copies, and the photo folder."""
    folder = tmp_path_factory.mktemp("api") / "photos"
    folder.mkdir()
    for name, path in sorted(photo_sets.skimage_photos().items()):
        picture = photo_sets.load_picture(path, 240)
        photo_sets.write_jpeg(str(folder / f"{name}.jpg"), picture, 92)
        photo_sets.write_jpeg(str(folder / f"{name}-smaller.jpg"), cv2.resize(picture, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA), 85)
    run = str(tmp_path_factory.mktemp("api_run"))
    train.main(["--dataset", str(folder), "--output", run, "--epochs", "1", "--batch-size", "4", "--latent-dim", "16",
                "--filters", "8", "16", "--image-size", "32", "--validation-fraction", "0.25"])
    index_dataset.main(["--dataset", str(folder), "--output", run])
    return run, folder


def test_search_by_path_matches_search_py(run_folder, capsys):
    run, folder = run_folder
    query = str(folder / "coffee.jpg")
    search.main([query, "--output", run, "--no-images", "--top-k", "4"])
    printed = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    hits = imsearch.open_run(run).search(query, top_k=4)[0]
    assert [os.path.abspath(hit.path) for hit in hits] == [os.path.abspath(line[3]) for line in printed]
    assert [round(hit.distance, 6) for hit in hits] == [float(line[2]) for line in printed]
    assert hits[0].path.endswith("coffee-smaller.jpg")  # Its smaller copy first; the indexed query never finds itself.


def test_search_with_in_memory_images_in_the_order_given(run_folder):
    run, folder = run_folder
    opened = imsearch.open_run(run)
    astronaut = cv2.cvtColor(cv2.imread(str(folder / "astronaut.jpg")), cv2.COLOR_BGR2RGB)
    mirrored_rocket = cv2.cvtColor(cv2.imread(str(folder / "rocket.jpg")), cv2.COLOR_BGR2RGB)[:, ::-1]
    results = opened.search([astronaut, str(folder / "chelsea.jpg"), np.ascontiguousarray(mirrored_rocket)], top_k=2)
    assert [os.path.basename(hits[0].path) for hits in results] == ["astronaut.jpg", "chelsea-smaller.jpg", "rocket.jpg"]
    # An array is never a file of the index, so it finds its own photo: decoded from the file at a reduced scale, nearly 0.
    assert results[0][0].distance < 0.02


def test_a_bad_query_is_one_clear_error(run_folder):
    run, folder = run_folder
    opened = imsearch.open_run(run)
    with pytest.raises(imsearch.InputError, match="missing.jpg: does not exist"):
        opened.search(str(folder / "missing.jpg"))
    with pytest.raises(imsearch.InputError, match="image 0: expected a uint8 array"):
        opened.search(np.zeros((4, 4), np.float64))


def test_duplicates_and_update(run_folder, tmp_path):
    run, folder = run_folder
    copy_run, copy_folder = tmp_path / "run", tmp_path / "photos"
    shutil.copytree(run, copy_run)
    shutil.copytree(folder, copy_folder)
    index_dataset.main(["--dataset", str(copy_folder), "--output", str(copy_run)])
    opened = imsearch.open_run(str(copy_run))
    pairs = {(os.path.basename(pair.keep), os.path.basename(pair.copy)) for pair in opened.duplicates()}
    assert pairs == {(f"{name}.jpg", f"{name}-smaller.jpg") for name in photo_sets.skimage_photos()}
    shutil.copy(copy_folder / "retina.jpg", copy_folder / "retina-again.jpg")
    os.remove(copy_folder / "coffee-smaller.jpg")
    report = opened.update()
    assert (report.images, report.encoded) == (16, 1)
    assert opened.search(str(copy_folder / "retina.jpg"), top_k=1)[0][0].path == str(copy_folder / "retina-again.jpg")
    shutil.move(copy_folder, tmp_path / "moved")
    with pytest.raises(imsearch.InputError, match="pass its new place: update"):
        opened.update()
    assert opened.update(tmp_path / "moved").encoded == 0 and opened.index.dataset_dir == str(tmp_path / "moved")


def test_update_keeps_a_shard_a_shard(run_folder, tmp_path):
    run, folder = run_folder
    shard_run = tmp_path / "run"
    shutil.copytree(run, shard_run)
    index_path = str(shard_run / "shard0.pkl")
    index_dataset.main(["--dataset", str(folder), "--output", str(shard_run), "--index", index_path, "--shard", "0/2"])
    opened = imsearch.open_run(str(shard_run), index_path=index_path)
    before = len(opened.index.paths)
    report = opened.update()
    assert opened.index.shard == "0/2" and report.images == before == len(opened.index.paths)
    report = index_dataset.main(["--output", str(shard_run), "--index", index_path, "--update"])  # No --shard given again.
    assert report.images == before and imsearch.open_run(str(shard_run), index_path=index_path).index.shard == "0/2"
