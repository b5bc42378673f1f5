"""Behaviour a user expects off the main paths (issue 22): each test failed before its fix."""

import os
import subprocess
import sys

import cv2

import config
import search

REPOSITORY_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_reader_that_stops_early_ends_search_quietly(gray_index, gray_model, gray_dataset):
    query = str(next((gray_dataset / "test" / "disc").iterdir()))
    process = subprocess.Popen(
        [sys.executable, "search.py", "--model", str(gray_model / config.MODEL_FILE), "--index", str(gray_index),
         "--no-images", "-"], cwd=REPOSITORY_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdin.write((query + "\n").encode() * 3000)  # 30,000 hit lines: far more than a pipe buffers.
    process.stdin.close()
    first_line = process.stdout.readline()
    process.stdout.close()  # As head -1 does once it has its line.
    stderr = process.stderr.read().decode()
    process.wait(timeout=120)
    assert first_line.count(b"\t") == 3
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
    assert process.returncode == 141


def test_a_query_without_hits_still_gets_its_pictures(tmp_path, capsys):
    import index_dataset
    import train

    folder = tmp_path / "one"
    folder.mkdir()
    image = cv2.circle(cv2.UMat(64, 64, cv2.CV_8UC1, 0).get(), (32, 32), 20, 255, -1)
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(folder / name), image)
    run = tmp_path / "run"
    train.main(["--dataset", str(folder), "--output", str(run), "--epochs", "1", "--latent-dim", "8", "--filters", "4", "8"])
    os.remove(folder / "b.png")
    index_dataset.main(["--dataset", str(folder), "--output", str(run)])
    search.main([str(folder / "a.png"), "--output", str(run)])  # The index holds only the query itself.
    err = capsys.readouterr().err
    assert "1 query(ies) got no hits" in err and "Traceback" not in err
    assert cv2.imread(str(run / "results_1.jpg")) is not None and cv2.imread(str(run / "query_1.jpg")) is not None


def test_euclidean_ranking_says_it_turns_diffusion_off(gray_index, gray_model, gray_dataset, capsys):
    query = str(next((gray_dataset / "test" / "disc").iterdir()))
    search.main([query, "--model", str(gray_model / config.MODEL_FILE), "--index", str(gray_index), "--no-images",
                 "--metric", "euclidean"])
    assert "--metric euclidean ranks without diffusion" in capsys.readouterr().err


def test_training_that_diverges_says_no_model_was_written(gray_model, gray_dataset, tmp_path, capsys):
    import shutil

    import train
    from conftest import fails_with

    run = tmp_path / "run"
    shutil.copytree(gray_model, run)  # A reused folder: its older model must not be reported as this run's.
    before = (run / config.MODEL_FILE).read_bytes()
    line = fails_with(train, ["--dataset", str(gray_dataset / "test"), "--output", str(run), "--epochs", "2",
                              "--learning-rate", "1e30", "--latent-dim", "8", "--filters", "4", "8"], capsys)
    assert "training diverged" in line and "--learning-rate" in line
    assert (run / config.MODEL_FILE).read_bytes() == before


def test_control_characters_in_file_names_are_printed_escaped(gray_model, gray_dataset, tmp_path, capsys):
    import shutil

    import index_dataset

    folder = tmp_path / "odd"
    folder.mkdir()
    source = sorted((gray_dataset / "test" / "disc").iterdir())[0]
    names = ("carriage\rreturn.png", "escape\x1b[31mred.png", "plain.png")
    for name in names:
        shutil.copy(source, folder / name)
    index_path = tmp_path / "odd.pkl"
    index_dataset.main(["--dataset", str(folder), "--model", str(gray_model / config.MODEL_FILE), "--index", str(index_path)])
    capsys.readouterr()
    search.main([str(source), "--model", str(gray_model / config.MODEL_FILE), "--index", str(index_path), "--no-images"])
    out = capsys.readouterr().out
    assert "\r" not in out and "\x1b" not in out
    assert "carriage\\rreturn.png" in out and "escape\\x1b[31mred.png" in out and len(out.splitlines()) == 3


def test_a_huge_top_k_costs_no_more_memory_than_the_index_holds(gray_model, gray_dataset, tmp_path, capsys):
    import tracemalloc

    import index_dataset

    index_path = str(tmp_path / "approximate.pkl")
    index_dataset.main(["--dataset", str(gray_dataset / "train"), "--model", str(gray_model / config.MODEL_FILE),
                        "--index", index_path, "--approximate", "always"])
    query = str(sorted((gray_dataset / "test" / "disc").iterdir())[0])
    capsys.readouterr()
    tracemalloc.start()
    search.main([query, "--model", str(gray_model / config.MODEL_FILE), "--index", index_path, "--no-images",
                 "--top-k", "3000000"])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(capsys.readouterr().out.splitlines()) > 0
    assert peak < 50 * 2**20  # 3,000,000 rows of int64 and float32 alone would take 34 MiB per array.


def test_a_validation_share_near_one_still_leaves_an_image_to_train_on():
    from imsearch import data

    train_rows, validation_rows = data.split_indices(40, 0.99, seed=0)
    assert len(train_rows) == 1 and len(validation_rows) == 39
    assert sorted([*train_rows, *validation_rows]) == list(range(40))


def test_shifts_as_large_as_the_image_are_refused_before_training(gray_dataset, tmp_path, capsys):
    import train
    from conftest import fails_with

    line = fails_with(train, ["--dataset", str(gray_dataset / "test"), "--output", str(tmp_path / "run"),
                              "--shift-pixels", "28"], capsys)
    assert "--shift-pixels 28 must be below the image size (28 pixels)" in line
    assert not (tmp_path / "run" / config.MODEL_FILE).exists()


def test_an_index_with_a_negative_image_size_is_refused_in_one_line(gray_model, gray_index, tmp_path, capsys):
    import pickle

    from conftest import fails_with

    with open(gray_index, "rb") as file:
        saved = pickle.load(file)
    saved["image_size"] = -5
    with open(tmp_path / "odd.pkl", "wb") as file:
        pickle.dump(saved, file)
    line = fails_with(search, ["--model", str(gray_model / config.MODEL_FILE), "--index", str(tmp_path / "odd.pkl"),
                               "--duplicates"], capsys)
    assert "odd.pkl" in line and "bad image shape" in line
