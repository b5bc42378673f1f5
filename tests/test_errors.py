"""Every bad input of the core suite ends in one stderr line naming the file, and a non-zero exit."""

import os
import pickle
import shutil
import subprocess
import sys

import pytest
from tensorflow import keras

import evaluate
import index_dataset
import search
import train
from conftest import fails_with, make_folder

REPOSITORY_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Hostile:
    """Pickles into a call of os.system: loading it with plain pickle would run a command."""

    def __init__(self, marker_path):
        self.marker_path = marker_path

    def __reduce__(self):
        return (os.system, (f"touch {self.marker_path}",))


def test_train_missing_dataset(tmp_path, capsys):
    line = fails_with(train, ["--dataset", str(tmp_path / "nope"), "--output", str(tmp_path)], capsys)
    assert "nope: no such folder" in line and "--dataset" in line


def test_train_folder_without_images(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not an image")
    line = fails_with(train, ["--dataset", str(tmp_path), "--output", str(tmp_path / "out")], capsys)
    assert "no images" in line and str(tmp_path) in line


def test_train_only_unreadable_images(tmp_path, capsys):
    for number in range(4):
        (tmp_path / f"{number}.jpg").write_text("this is text, not a JPEG")
    line = fails_with(train, ["--dataset", str(tmp_path), "--output", str(tmp_path / "out"), "--image-size", "8",
                              "--channels", "1"], capsys)
    assert "none of the" in line and "readable" in line


def test_unreadable_images_are_skipped_and_counted(tmp_path, capsys):
    dataset_dir = make_folder(tmp_path / "data", per_class=4, gray=True, sizes=((16, 16),))
    (tmp_path / "data" / "disc" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (tmp_path / "data" / "disc" / "empty.jpg").write_bytes(b"")
    train.main(["--dataset", dataset_dir, "--output", str(tmp_path / "out"), "--epochs", "1", "--latent-dim", "4",
                "--filters", "4", "4"])
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: skipped")]
    assert len(warnings) >= 1 and sum(int(line.split()[2]) for line in warnings) == 2


def test_missing_model(tmp_path, capsys):
    line = fails_with(index_dataset, ["--model", str(tmp_path / "absent.keras")], capsys)
    assert "absent.keras: no such model file; pass --model" in line
    line = fails_with(index_dataset, ["--output", str(tmp_path / "run")], capsys)  # The run folder's own model.
    assert f"autoencoder.keras: no model here; run train.py --output {tmp_path / 'run'} first" in line


def test_model_that_is_a_text_file(tmp_path, capsys):
    (tmp_path / "model.keras").write_text("hello")
    with pytest.raises(SystemExit):
        search.main(["--model", str(tmp_path / "model.keras"), "x.png"])
    err = capsys.readouterr().err  # One line: refused before an export is tried.
    assert err.count("\n") == 1 and "model.keras: not a loadable autoencoder" in err, err


def test_model_that_is_another_keras_model(tmp_path, capsys):
    inputs = keras.Input((8, 8, 1))
    keras.Model(inputs, keras.layers.Flatten()(inputs)).save(tmp_path / "other.keras")
    line = fails_with(evaluate, ["--model", str(tmp_path / "other.keras")], capsys)
    assert "other.keras: not this suite's autoencoder" in line


def test_missing_index(gray_model, tmp_path, capsys):
    line = fails_with(search, ["--model", str(gray_model / "autoencoder.keras"), "--index", str(tmp_path / "none.pkl"), "q.png"], capsys)
    assert f"none.pkl: no such index file; make it with index_dataset.py --index {tmp_path / 'none.pkl'}" in line


def test_truncated_index(gray_model, gray_index, tmp_path, capsys):
    (tmp_path / "cut.pkl").write_bytes(gray_index.read_bytes()[:300])
    line = fails_with(search, ["--model", str(gray_model / "autoencoder.keras"), "--index", str(tmp_path / "cut.pkl"), "q.png"], capsys)
    assert "cut.pkl" in line and ("truncated" in line or "not a safe pickle" in line)


def test_hostile_index_is_refused_without_running_it(gray_model, tmp_path, capsys):
    marker = tmp_path / "pwned"
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(Hostile(marker)))
    line = fails_with(search, ["--model", str(gray_model / "autoencoder.keras"), "--index", str(tmp_path / "evil.pkl"), "q.png"], capsys)
    assert "evil.pkl: not a safe pickle" in line and "posix.system" in line
    assert not marker.exists()


def test_index_made_with_another_model(gray_model, gray_index, gray_dataset, tmp_path, capsys):
    other_model = tmp_path / "autoencoder.keras"
    shutil.copy(gray_model / "autoencoder.keras", other_model)
    with open(other_model, "ab") as file:
        file.write(b"\0")  # Same network, other bytes: the SHA-256 differs.
    query = str(gray_dataset / "test" / "disc" / "000.png")
    line = fails_with(search, ["--model", str(other_model), "--index", str(gray_index), query], capsys)
    assert "features.pkl: made with another model" in line


def test_index_whose_features_do_not_fit_the_model(gray_model, gray_index, tmp_path, capsys):
    with open(gray_index, "rb") as file:
        saved = pickle.load(file)
    saved["features"] = saved["features"][:, :5]
    with open(tmp_path / "short.pkl", "wb") as file:
        pickle.dump(saved, file)
    line = fails_with(search, ["--model", str(gray_model / "autoencoder.keras"), "--index", str(tmp_path / "short.pkl"), "q.png"], capsys)
    assert "short.pkl: image size, channels, feature length" in line


def test_unreadable_query(gray_model, gray_index, tmp_path, capsys):
    (tmp_path / "query.png").write_text("not a picture")
    line = fails_with(search, ["--model", str(gray_model / "autoencoder.keras"), "--index", str(gray_index),
                               str(tmp_path / "query.png")], capsys)
    assert "query.png: not a readable image" in line


def test_no_queries_is_a_usage_error(capsys):
    line = fails_with(search, [], capsys)
    assert "no queries" in line


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "-1"], "--epochs must be positive"),
    (["--image-size", "3"], "--image-size must be 0"),
    (["--channels", "2"], "invalid choice"),
    (["--loss", "hinge"], "invalid choice"),
    (["--epo", "3"], "unrecognized arguments"),
    (["--learning-rate", "nan"], "--learning-rate must be a finite number, got nan"),
])
def test_nonsense_flags(flags, message, capsys):
    assert message in fails_with(train, flags, capsys)


def test_a_real_process_prints_one_line_and_no_traceback(tmp_path):
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(Hostile(tmp_path / "pwned")))
    (tmp_path / "model.keras").write_text("not a model")
    result = subprocess.run([sys.executable, "search.py", "--model", str(tmp_path / "model.keras"),
                             "--index", str(tmp_path / "evil.pkl"), "q.png"],
                            cwd=REPOSITORY_DIR, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("search.py: error: ")


def test_tune_needs_labelled_folder(tmp_path, capsys):
    import cv2
    import numpy as np

    import tune

    folder = tmp_path / "flat"
    folder.mkdir()
    for number in range(12):
        cv2.imwrite(str(folder / f"{number}.png"), np.full((16, 16), number * 20, np.uint8))
    flags = ["--output", str(tmp_path / "out"), "--tune-trials", "1", "--tune-epochs", "1", "--tune-latent-dims", "8",
             "--tune-first-filters", "4"]
    assert "needs two or more class subfolders" in fails_with(tune, ["--dataset", str(folder), *flags], capsys)
    (folder / "only").mkdir()
    for number in range(12):
        os.replace(folder / f"{number}.png", folder / "only" / f"{number}.png")
    # One class scores every trial perfect: no ranking to choose by.
    assert "needs two or more class subfolders" in fails_with(tune, ["--dataset", str(folder), *flags], capsys)


def test_model_that_is_a_folder(tmp_path, capsys):
    line = fails_with(index_dataset, ["--model", str(tmp_path)], capsys)
    assert f"{tmp_path}: is a folder; pass --model with the model file itself" in line
