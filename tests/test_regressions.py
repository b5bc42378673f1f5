"""Regression tests for bugs found by reading the code (issue 14): each failed before its fix."""

import json
import os
import shutil
import stat

import cv2
import pytest
import numpy as np

import evaluate
import index_dataset
import train
from imsearch import figures, index, metrics, model, safeio


def test_three_filters_round_the_image_size_to_what_three_halvings_need(gray_dataset, tmp_path, capsys):
    train.main(["--dataset", str(gray_dataset / "train"), "--output", str(tmp_path), "--epochs", "1",
                "--batch-size", "16", "--latent-dim", "8", "--filters", "4", "8", "8"])
    assert "image size rounded up to 32" in capsys.readouterr().err
    autoencoder = model.load_autoencoder(str(tmp_path / "autoencoder.keras"))
    assert model.image_shape_of(autoencoder) == (32, 1)
    assert autoencoder.output_shape[1:3] == (32, 32)


def test_retrieval_metrics_take_unlabelled_images_as_relevant_to_nothing():
    features = np.eye(4, dtype=np.float32)
    scores = metrics.retrieval_metrics(features[:2], ["a", None], features, ["a", None, "b", None])
    # Query "a" finds its one relevant image first (AP 1); the unlabelled query has nothing relevant (AP 0).
    assert scores["map"] == 0.5
    assert scores["precision_at_1"] == 0.5


def test_feature_map_draws_unlabelled_images(tmp_path):
    features = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    figures.plot_feature_map(features, ["a", "b", None, "a", None, "b"], str(tmp_path / "map.png"))
    assert cv2.imread(str(tmp_path / "map.png")) is not None


def test_evaluate_skips_queries_at_the_root_of_a_labelled_folder(gray_model, gray_dataset, tmp_path, capsys):
    database, queries = tmp_path / "database", tmp_path / "queries"
    shutil.copytree(gray_dataset / "train", database)
    shutil.copytree(gray_dataset / "test", queries)
    shutil.copy(gray_dataset / "train" / "disc" / "000.png", database / "loose.png")
    shutil.copy(gray_dataset / "test" / "disc" / "000.png", queries / "loose.png")
    model_path, index_path = str(gray_model / "autoencoder.keras"), str(tmp_path / "features.pkl")
    index_dataset.main(["--dataset", str(database), "--model", model_path, "--index", index_path])
    evaluate.main(["--model", model_path, "--output", str(tmp_path), "--index", index_path, "--queries", str(queries)])
    assert "skipped 1 queries" in capsys.readouterr().err
    scores = json.loads((tmp_path / "metrics.json").read_text())
    assert (scores["queries"], scores["database"]) == (9, 49)


def test_evaluate_refuses_a_training_config_written_for_another_model(gray_model, gray_dataset, tmp_path, capsys):
    from conftest import fails_with

    run = tmp_path / "run"
    shutil.copytree(gray_model, run)
    saved = json.loads((run / "autoencoder.json").read_text())
    assert saved["model_sha256"] == safeio.sha256_of_file(str(run / "autoencoder.keras"))
    # What a new run killed after its first checkpoint left before: its model beside the old run's JSON.
    train.main(["--dataset", str(gray_dataset / "test"), "--output", str(tmp_path / "other"), "--epochs", "1",
                "--batch-size", "4", "--latent-dim", "8", "--filters", "4", "8"])
    shutil.copy(tmp_path / "other" / "autoencoder.keras", run / "autoencoder.keras")
    line = fails_with(evaluate, ["--model", str(run / "autoencoder.keras"), "--output", str(run)], capsys)
    assert "autoencoder.json: does not describe" in line
    (run / "autoencoder.json").write_text(json.dumps({key: value for key, value in saved.items() if key != "model_sha256"}))
    line = fails_with(evaluate, ["--model", str(run / "autoencoder.keras"), "--output", str(run)], capsys)
    assert "autoencoder.json: written by an older train.py" in line


def test_shards_indexed_with_and_without_histograms_are_refused_by_name(gray_model, gray_dataset, tmp_path, capsys):
    from conftest import fails_with

    import search

    model_path = str(gray_model / "autoencoder.keras")
    shards = [str(tmp_path / f"shard{number}.pkl") for number in range(2)]
    index_dataset.main(["--dataset", str(gray_dataset / "train"), "--model", model_path, "--index", shards[0], "--shard", "0/2"])
    index_dataset.main(["--dataset", str(gray_dataset / "train"), "--model", model_path, "--index", shards[1], "--shard", "1/2",
                        "--no-histograms"])
    query = str(gray_dataset / "test" / "disc" / "000.png")
    line = fails_with(search, ["--model", model_path, "--index", shards[0], "--index", shards[1], "--no-images", query], capsys)
    assert "shard1.pkl: indexed without histograms" in line


def test_hits_deleted_after_indexing_still_print_and_get_blank_cells(gray_model, gray_dataset, tmp_path, capsys):
    import search

    folder, index_path = tmp_path / "images", str(tmp_path / "features.pkl")
    shutil.copytree(gray_dataset / "train", folder)
    model_path = str(gray_model / "autoencoder.keras")
    index_dataset.main(["--dataset", str(folder), "--model", model_path, "--index", index_path])
    shutil.rmtree(folder / "disc")
    capsys.readouterr()
    search.main(["--model", model_path, "--index", index_path, "--output", str(tmp_path), "--top-k", "48",
                 "--no-diffusion", str(gray_dataset / "test" / "disc" / "000.png")])
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 48  # Every indexed image, the 16 deleted discs among them.
    assert "16 image(s) shown blank" in captured.err
    assert cv2.imread(str(tmp_path / "results_1.jpg")) is not None


def test_gallery_captions_are_escaped_once():
    from imsearch import gallery

    image = np.zeros((8, 8, 3), np.uint8)
    section = gallery.query_section(1, "q&a.png", image, [("cats & dogs.png", 0.5, image)])
    assert 'alt="#1 · 0.5000 cats &amp; dogs.png"' in section
    assert "<figcaption>#1 · 0.5000<br>cats &amp; dogs.png</figcaption>" in section
    assert "&amp;amp;" not in section and "&lt;br&gt;" not in section


def test_a_query_that_is_an_indexed_symlink_is_not_its_own_hit(gray_model, gray_dataset, tmp_path):
    from imsearch import ranking

    folder = tmp_path / "images"
    shutil.copytree(gray_dataset / "train", folder)
    elsewhere = tmp_path / "elsewhere.png"
    shutil.move(folder / "disc" / "000.png", elsewhere)
    (folder / "disc" / "000.png").symlink_to(elsewhere)
    (tmp_path / "shortcut.png").symlink_to(folder / "disc" / "001.png")
    paths = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*.png"))
    feature_index = index.FeatureIndex(dataset_dir=str(folder), paths=paths, labels=None, stamps=np.zeros((len(paths), 2), np.int64),
                                       features=np.zeros((len(paths), 4), np.float32), model_sha256="", image_size=28,
                                       channels=1, histograms=False)
    queries = [str(folder / "disc" / "000.png"), str(tmp_path / "shortcut.png"), str(gray_dataset / "test" / "disc" / "000.png")]
    rows = ranking.rows_of_queries(feature_index, queries)
    assert rows.tolist() == [paths.index("disc/000.png"), paths.index("disc/001.png"), -1]


def test_query_block_threads_are_bounded_by_memory_not_only_by_cores(monkeypatch):
    from imsearch import vectors

    gigabyte = 2**30
    assert vectors.block_workers(gigabyte // 2, memory=8 * gigabyte, cores=64) == 8
    assert vectors.block_workers(gigabyte // 2, memory=8 * gigabyte, cores=2) == 2
    assert vectors.block_workers(4 * gigabyte, memory=gigabyte, cores=64) == 1
    assert 0 < vectors.available_memory() < 2**50
    # The metrics' thread pool follows it: 64 cores and memory for one block give one thread.
    pools = []
    monkeypatch.setattr(vectors, "available_memory", lambda: 3 * metrics.METRICS_BLOCK * 50 * 64 // 2)
    monkeypatch.setattr("os.cpu_count", lambda: 64)
    real_pool = metrics.concurrent.futures.ThreadPoolExecutor
    monkeypatch.setattr(metrics.concurrent.futures, "ThreadPoolExecutor", lambda workers: pools.append(workers) or real_pool(workers))
    features = np.eye(50, dtype=np.float32)
    metrics.retrieval_metrics(features[:3], ["a", "b", "a"], features, ["a", "b"] * 25)
    assert pools == [1]


def test_written_files_follow_the_umask_in_force_when_written(tmp_path):
    previous = os.umask(0o077)
    try:
        safeio.atomic_write_bytes(str(tmp_path / "private.bin"), b"x")
    finally:
        os.umask(previous)
    safeio.atomic_write_bytes(str(tmp_path / "shared.bin"), b"x")
    assert stat.S_IMODE((tmp_path / "private.bin").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "shared.bin").stat().st_mode) == 0o666 & ~previous
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []


def test_precision_at_10_of_a_perfect_ranking_in_a_small_database_is_one():
    features = np.random.default_rng(1).normal(size=(6, 4)).astype(np.float32)
    scores = metrics.retrieval_metrics(features[:1], ["a"], features, ["a"] * 6, exclude=[0])
    assert scores["precision_at_10"] == 1.0 and scores["precision_at_100"] == 1.0


def test_evaluate_measures_a_dataset_given_by_the_default_training_path(gray_model, gray_dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(gray_dataset / "test", tmp_path / "dataset" / "fashion-mnist" / "train")
    evaluate.main(["--model", str(gray_model / "autoencoder.keras"), "--output", str(tmp_path),
                   "--dataset", "dataset/fashion-mnist/train"])
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [row[:2] for row in rows[1:]] == [["validation", "5"], ["dataset/fashion-mnist/train", "9"]]


def test_a_query_with_few_approximate_results_does_not_shorten_the_others():
    from imsearch import ranking

    rows = np.array([[3, 5, 7], [2, -1, -1]])
    distances = np.array([[0.1, 0.2, 0.3], [0.4, np.inf, np.inf]], dtype=np.float32)
    kept_rows, kept_distances = ranking.drop_excluded(rows, distances, np.array([5, -1]), 2)
    assert kept_rows.tolist() == [[3, 7], [2, -1]]
    assert kept_distances[0].tolist() == [np.float32(0.1), np.float32(0.3)] and np.isinf(kept_distances[1, 1])


def test_messages_say_why_a_query_cannot_be_read(gray_model, gray_index, tmp_path, capsys):
    from conftest import fails_with

    import search

    flags = ["--model", str(gray_model / "autoencoder.keras"), "--index", str(gray_index), "--no-images"]
    assert "missing.png: does not exist" in fails_with(search, [*flags, str(tmp_path / "missing.png")], capsys)
    assert f"{tmp_path}: is a folder; pass image files" in fails_with(search, [*flags, str(tmp_path)], capsys)


def test_training_on_one_image_says_how_many_it_found(tmp_path, capsys):
    from conftest import fails_with, make_folder

    folder = make_folder(tmp_path / "one", per_class=1, sizes=((16, 16),))
    for extra in ("square", "cross"):
        shutil.rmtree(os.path.join(folder, extra))
    line = fails_with(train, ["--dataset", folder, "--output", str(tmp_path / "run"), "--epochs", "1"], capsys)
    assert "1 readable image(s), too few" in line


def test_an_index_of_only_the_query_warns_that_nothing_is_left_to_rank(gray_model, gray_dataset, tmp_path, capsys):
    import search

    folder = tmp_path / "alone"
    folder.mkdir()
    shutil.copy(gray_dataset / "train" / "disc" / "000.png", folder / "only.png")
    model_path, index_path = str(gray_model / "autoencoder.keras"), str(tmp_path / "features.pkl")
    index_dataset.main(["--dataset", str(folder), "--model", model_path, "--index", index_path])
    capsys.readouterr()
    other = str(gray_dataset / "test" / "cross" / "000.png")
    search.main(["--model", model_path, "--index", index_path, "--no-images", str(folder / "only.png"), other])
    captured = capsys.readouterr()
    # The query that is not indexed still gets the one image; only the indexed one is left without hits.
    assert [line.split("\t")[0] for line in captured.out.splitlines()] == [search.display_path(other)]
    assert "1 query(ies) got no hits" in captured.err and "neighbour graph" not in captured.err


def test_hit_lines_show_both_paths_alike_and_never_a_negative_zero(tmp_path, monkeypatch):
    import search

    monkeypatch.chdir(tmp_path)
    line = search.format_hit(str(tmp_path / "q.png"), 1, -1e-9, str(tmp_path / "images" / "a.png"))
    assert line == "q.png\t1\t0.000000\timages/a.png"
    outside = search.format_hit("/elsewhere/q.png", 2, 0.5, "/elsewhere/a\tb.png")
    assert outside == "/elsewhere/q.png\t2\t0.500000\t/elsewhere/a\\tb.png"


def test_search_help_names_only_flags_search_takes(capsys):
    import search

    with pytest.raises(SystemExit):
        search.main(["--help"])
    assert "--approximate-above" not in capsys.readouterr().out


def test_update_of_an_index_in_an_older_format_indexes_everything_anew(gray_model, gray_dataset, gray_index, tmp_path, capsys):
    import pickle

    saved = pickle.loads(gray_index.read_bytes())  # Our own file, written by the fixture.
    (tmp_path / "features.pkl").write_bytes(pickle.dumps(saved | {"format_version": 3}))
    report = index_dataset.main(["--dataset", str(gray_dataset / "train"), "--model", str(gray_model / "autoencoder.keras"),
                                 "--index", str(tmp_path / "features.pkl"), "--update"])
    assert (report.images, report.encoded) == (48, 48)
    assert f"index format 3, expected {index.FORMAT_VERSION}; encoding every image anew" in capsys.readouterr().err
    assert index.load_index(str(tmp_path / "features.pkl")).count == 48
