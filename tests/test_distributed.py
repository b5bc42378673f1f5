"""index_dataset.py --workers: Ray workers (real processes, a local cluster) encode shards; the merge equals a local index."""

import numpy as np

import index_dataset
from conftest import fails_with
from imsearch import graph, index


def test_ray_workers_build_the_same_index_as_one_process(gray_model, gray_dataset, gray_index, tmp_path):
    index_path = str(tmp_path / "ray.pkl")
    report = index_dataset.main(["--dataset", str(gray_dataset / "train"), "--model", str(gray_model / "autoencoder.keras"),
                                 "--index", index_path, "--workers", "2"])
    assert (report.images, report.encoded) == (48, 48)
    on_ray, local = index.load_index(index_path), index.load_index(str(gray_index))
    assert on_ray.paths == local.paths and on_ray.labels == local.labels and on_ray.shard is None
    assert np.allclose(on_ray.features, local.features, atol=1e-5)
    assert on_ray.neighbours.shape == local.neighbours.shape == (48, graph.GRAPH_NEIGHBOURS)


def test_a_user_mistake_on_a_worker_is_one_line(gray_model, tmp_path, capsys):
    line = fails_with(index_dataset, ["--dataset", str(tmp_path / "missing"), "--model", str(gray_model / "autoencoder.keras"),
                                      "--index", str(tmp_path / "x.pkl"), "--workers", "2"], capsys)
    assert "missing: no such folder" in line


def test_more_workers_than_images_index_every_image(gray_model, gray_dataset, tmp_path):
    import shutil

    folder = tmp_path / "one"
    folder.mkdir()
    shutil.copy(gray_dataset / "train" / "disc" / "000.png", folder / "only.png")
    report = index_dataset.main(["--dataset", str(folder), "--model", str(gray_model / "autoencoder.keras"),
                                 "--index", str(tmp_path / "x.pkl"), "--workers", "3"])
    assert (report.images, report.encoded) == (1, 1)


def test_local_workers_are_capped_at_the_cores(gray_model, gray_dataset, tmp_path, capsys):
    import os
    import shutil

    cores = os.cpu_count()
    folder = tmp_path / "more"
    folder.mkdir()
    for number, source in enumerate(sorted((gray_dataset / "train").rglob("*.png"))[: cores + 1]):
        shutil.copy(source, folder / f"{number}.png")
    report = index_dataset.main(["--dataset", str(folder), "--model", str(gray_model / "autoencoder.keras"),
                                 "--index", str(tmp_path / "x.pkl"), "--workers", str(cores + 1)])
    assert report.images == cores + 1
    assert f"--workers {cores + 1} on this machine's {cores} cores: starting {cores}" in capsys.readouterr().err


def test_worker_flags_that_cannot_work_are_refused(gray_model, tmp_path, capsys):
    flags = ["--model", str(gray_model / "autoencoder.keras"), "--index", str(tmp_path / "x.pkl")]
    assert "--workers must be zero or more, got -1" in fails_with(index_dataset, [*flags, "--workers", "-1"], capsys)
    line = fails_with(index_dataset, [*flags, "--ray-address", "auto"], capsys)
    assert "--ray-address is the cluster --workers runs on" in line


def test_ray_workers_project_their_shards_with_one_projection_fitted_in_the_driver(gray_model, gray_dataset, tmp_path):
    compact = ["--compact-above", "1", "--compact-length", "8"]
    flags = ["--dataset", str(gray_dataset / "train"), "--model", str(gray_model / "autoencoder.keras")]
    index_dataset.main([*flags, "--index", str(tmp_path / "ray.pkl"), "--workers", "2", *compact])
    index_dataset.main([*flags, "--index", str(tmp_path / "local.pkl"), *compact])
    on_ray, local = index.load_index(str(tmp_path / "ray.pkl")), index.load_index(str(tmp_path / "local.pkl"))
    # The driver's sample is the whole folder here, so the projection is the one a single process fits.
    assert on_ray.compact and on_ray.features.shape == (48, 8) and on_ray.paths == local.paths
    assert np.allclose(on_ray.projection_basis, local.projection_basis, atol=1e-3)
    assert np.allclose(on_ray.features, local.features, atol=2e-3)


def test_images_left_out_on_workers_are_counted_by_the_driver(gray_model, gray_dataset, tmp_path, capsys):
    import shutil

    folder = tmp_path / "images"
    shutil.copytree(gray_dataset / "train", folder)
    (folder / "disc" / "broken.png").write_bytes(b"not an image")
    report = index_dataset.main(["--dataset", str(folder), "--model", str(gray_model / "autoencoder.keras"),
                                 "--index", str(tmp_path / "x.pkl"), "--workers", "2"])
    assert (report.images, report.encoded) == (48, 48)
    assert "skipped 1 unreadable image(s) of 49" in capsys.readouterr().err
