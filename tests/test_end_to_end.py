"""Each script's main(argv) end to end on tiny folders: train, evaluate, index, search."""

import json
import os
import pickle

import cv2
import numpy as np
import pytest

import evaluate
import index_dataset
import search
import train
import tune
from imsearch import descriptors, graph, metrics


def test_train_writes_model_config_history_and_plot(gray_model):
    for name in ("autoencoder.keras", "autoencoder.json", "training_loss.png", "logs/history.csv"):
        assert os.path.getsize(gray_model / name) > 0, name
    saved = json.loads((gray_model / "autoencoder.json").read_text())
    assert (saved["image_size"], saved["channels"]) == (28, 1)  # inferred from the images
    assert saved["train_images"] + saved["validation_images"] == 48
    assert not [name for name in os.listdir(gray_model) if name.startswith(".")]  # no temporary files left


def test_evaluate_prints_validation_and_other_folder_mse(gray_model, gray_dataset, capsys):
    evaluate.main(["--model", str(gray_model / "autoencoder.keras"), "--output", str(gray_model),
                   "--dataset", str(gray_dataset / "test")])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split("\t") == ["split", "images", "reconstruction_mse"]
    validation = lines[1].split("\t")
    assert validation[0] == "validation" and int(validation[1]) == 5 and 0 < float(validation[2]) < 1
    assert lines[2].split("\t")[1] == "9"
    grid = cv2.imread(str(gray_model / "reconstructions.png"))
    assert grid.shape[0] == 2 * 128 and grid.shape[1] == 5 * 128  # 5 validation images, originals above


def test_index_holds_paths_labels_and_features(gray_index, gray_model):
    with open(gray_index, "rb") as file:
        saved = pickle.load(file)  # Our own file, written just now by the test.
    assert saved["paths"][0] == "cross/000.png" and saved["paths"] == sorted(saved["paths"])
    assert saved["labels"][:1] == ["cross"] and len(saved["labels"]) == 48
    assert saved["features"].dtype == np.float16 and saved["features"].shape == (48, 16 + descriptors.HISTOGRAM_LENGTH)  # Gray: no colour histograms.
    assert saved["histograms"] is True and saved["neighbours"].shape == saved["neighbour_similarities"].shape == (48, graph.GRAPH_NEIGHBOURS)
    assert (saved["image_size"], saved["channels"]) == (28, 1)
    assert len(saved["model_sha256"]) == 64


def test_search_sample_prints_tab_separated_hits_only(gray_index, gray_model, gray_dataset, capsys):
    search.main(["--model", str(gray_model / "autoencoder.keras"), "--index", str(gray_index), "--no-diffusion",
                 "--output", str(gray_model), "--sample", "3"])
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 30
    for line in lines:
        query, rank, distance, path = line.split("\t")
        assert query.startswith(str(gray_dataset / "test")) and 1 <= int(rank) <= 10
        assert float(distance) >= 0 and os.path.isfile(path)
    distances = [float(line.split("\t")[2]) for line in lines[:10]]
    assert distances == sorted(distances)
    for number in (1, 2, 3):
        assert cv2.imread(str(gray_model / f"results_{number}.jpg")).shape == (256, 640, 3)
        assert cv2.imread(str(gray_model / f"query_{number}.jpg")) is not None


def test_search_never_returns_the_query_itself(gray_index, gray_model, gray_dataset, capsys, monkeypatch):
    query = str(gray_dataset / "train" / "disc" / "004.png")
    monkeypatch.setattr("sys.stdin", __import__("io").TextIOWrapper(__import__("io").BytesIO((query + "\n").encode())))
    search.main(["--model", str(gray_model / "autoencoder.keras"), "--index", str(gray_index), "--no-images",
                 "--top-k", "47", "-"])
    paths = [line.split("\t")[3] for line in capsys.readouterr().out.splitlines()]
    assert len(paths) == 47 and not any(path.endswith("disc/004.png") for path in paths)


def test_colour_folder_of_odd_sizes_keeps_colours(colour_dataset, tmp_path, capsys):
    train.main(["--dataset", str(colour_dataset / "train"), "--output", str(tmp_path), "--epochs", "1",
                "--latent-dim", "8", "--filters", "4", "8"])
    saved = json.loads((tmp_path / "autoencoder.json").read_text())
    assert (saved["image_size"], saved["channels"]) == (64, 3)  # varied sizes: the documented default
    model_path, index_path = str(tmp_path / "autoencoder.keras"), str(tmp_path / "features.pkl")
    index_dataset.main(["--dataset", str(colour_dataset / "train"), "--model", model_path, "--index", index_path])
    red_query = str(colour_dataset / "test" / "disc" / "000.png")
    search.main(["--model", model_path, "--index", index_path, "--output", str(tmp_path), "--top-k", "3", red_query])
    assert len(capsys.readouterr().out.splitlines()) == 3
    blue, green, red = cv2.imread(str(tmp_path / "query_1.jpg")).reshape(-1, 3).max(axis=0)
    assert red > 200 and blue < 100  # a red disc stays red on disk: RGB and BGR are not swapped


def test_evaluate_with_queries_scores_features_and_pixel_baselines(gray_model, gray_index, gray_dataset, capsys):
    evaluate.main(["--model", str(gray_model / "autoencoder.keras"), "--output", str(gray_model),
                   "--index", str(gray_index), "--queries", str(gray_dataset / "test")])
    assert "pixels_cosine" in capsys.readouterr().out
    scores = json.loads((gray_model / "metrics.json").read_text())
    assert (scores["queries"], scores["database"]) == (9, 48)
    for method in ("autoencoder", "pixels_euclidean", "pixels_cosine"):
        assert set(scores[method]) == set(metrics.METRIC_NAMES)
        # 48 images, 16 per class: AP@100 sees every rank, and the top 100 hold all 16 relevant of 48 shown.
        assert scores[method]["map_at_100"] == pytest.approx(scores[method]["map"])
        assert scores[method]["precision_at_100"] == pytest.approx(16 / 48)
        assert scores[method]["top_hit_share"] * 9 == pytest.approx(round(scores[method]["top_hit_share"] * 9))
    assert scores["pixels_euclidean"]["map"] > 1 / 3  # Shapes are easier than chance even for raw pixels.
    # The suite's features (encoder and shape histograms) tell the shapes apart better than raw pixels.
    assert scores["autoencoder"]["map"] > max(scores["pixels_euclidean"]["map"], scores["pixels_cosine"]["map"])
    assert cv2.imread(str(gray_model / "feature_map.png")) is not None


def test_tune_scores_trials_by_validation_retrieval(gray_dataset, tmp_path, capsys):
    tune.main(["--dataset", str(gray_dataset / "train"), "--output", str(tmp_path), "--tune-trials", "2",
               "--tune-epochs", "1", "--batch-size", "16", "--tune-latent-dims", "8", "16", "--tune-first-filters", "4",
               "--tune-learning-rates", "0.001", "--tune-l1-activities", "0"])
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert lines[0].split("\t") == list(tune.COLUMNS) and len(lines) == 3
    # The command printed trains on the folder tuned on, with the settings given, not the defaults.
    assert f"python train.py --dataset {gray_dataset / 'train'} --output {tmp_path} " in captured.err
    assert "--batch-size 16" in captured.err and "--l1-activity 0.0 " in captured.err
    rows = [dict(zip(tune.COLUMNS, line.split("\t"))) for line in lines[1:]]
    assert sorted(row["latent_dim"] for row in rows) == ["16", "8"]
    assert all(0 < float(row["map"]) <= 1 and 0 <= float(row["precision_at_10"]) <= 1 for row in rows)
    saved = json.loads((tmp_path / "tune" / "best.json").read_text())
    assert saved["best"]["map"] == max(trial["map"] for trial in saved["trials"])
    assert os.path.isfile(saved["best"]["model_path"])


def test_one_run_folder_serves_every_script(gray_dataset, tmp_path, capsys):
    from conftest import fails_with

    run, dataset = str(tmp_path / "run"), str(gray_dataset / "train")
    train.main(["--dataset", dataset, "--output", run, "--epochs", "1", "--latent-dim", "8", "--filters", "4", "8"])
    index_dataset.main(["--dataset", dataset, "--output", run])
    assert os.path.isfile(os.path.join(run, "features.pkl"))
    capsys.readouterr()
    search.main(["--output", run, "--top-k", "2", str(gray_dataset / "test" / "disc" / "000.png")])
    assert len(capsys.readouterr().out.splitlines()) == 2 and os.path.isfile(os.path.join(run, "results_1.jpg"))
    evaluate.main(["--output", run, "--queries", str(gray_dataset / "test")])
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["queries"] == 9
    assert json.loads((tmp_path / "run" / "autoencoder.json").read_text())["index_path"] == os.path.join(run, "features.pkl")
    line = fails_with(search, ["--output", str(tmp_path / "empty"), str(gray_dataset / "test" / "disc" / "000.png")], capsys)
    assert f"{tmp_path / 'empty' / 'autoencoder.keras'}: no model here; run train.py --output {tmp_path / 'empty'} first" in line
