"""Indexing and search run the ONNX export with onnxruntime: the same features as Keras, and no TensorFlow."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import config
from imsearch import encoding, image_folders, locations, model, photo_sets, runtime

REPOSITORY_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Runs a script as `python script.py ...` would, with TensorFlow and Keras impossible to import.
WITHOUT_TENSORFLOW = ("import runpy, sys; sys.modules['tensorflow'] = sys.modules['keras'] = None; "
                      "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")


# The search-only install (bash install.sh --search-only), which CI makes in a venv of its own.
SEARCH_ONLY_PYTHON = os.path.join(REPOSITORY_DIR, ".venv-search", "bin", "python")


def run_without_tensorflow(script, *argv):
    """A script run as a real process without TensorFlow: in the search-only venv where there is one (CI makes it),
    else in this one with `import tensorflow` made to fail."""
    command = [SEARCH_ONLY_PYTHON] if os.path.exists(SEARCH_ONLY_PYTHON) else [sys.executable, "-c", WITHOUT_TENSORFLOW]
    return subprocess.run([*command, script, *argv], cwd=REPOSITORY_DIR, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def colour_model(tmp_path_factory):
    """A run folder with a colour model trained on a few real photos, and that folder of photos."""
    import train

    folder = tmp_path_factory.mktemp("photos")
    for name, path in sorted(photo_sets.skimage_photos().items()):
        photo_sets.write_jpeg(str(folder / f"{name}.jpg"), photo_sets.load_picture(path, 200), 90)
    run = tmp_path_factory.mktemp("colour_run")
    train.main(["--dataset", str(folder), "--output", str(run), "--epochs", "1", "--batch-size", "4", "--latent-dim", "16",
                "--filters", "8", "16", "--image-size", "32", "--validation-fraction", "0.25"])
    return run, folder


def test_training_writes_the_export_and_its_features_match_keras_on_gray_and_colour_images(colour_model, gray_model,
                                                                                           gray_dataset):
    colour_run, photo_folder = colour_model
    for run, folder in ((colour_run, photo_folder), (gray_model, gray_dataset / "train")):
        model_path = str(run / config.MODEL_FILE)
        assert os.path.isfile(locations.export_path_of(model_path))
        paths = image_folders.full_paths(str(folder), image_folders.list_images(str(folder))[0])
        with_keras, _ = encoding.encode_paths(model.encoder_of(model.load_autoencoder(model_path)), paths, 64, histograms=True)
        with_onnx, _ = encoding.encode_paths(runtime.open_encoder(model_path), paths, 64, histograms=True)
        assert with_keras.shape == with_onnx.shape and np.abs(with_keras - with_onnx).max() <= 1e-4


def test_indexing_and_search_run_without_tensorflow(colour_model, tmp_path):
    run, folder = colour_model
    index_path = str(tmp_path / "features.pkl")
    indexed = run_without_tensorflow("index_dataset.py", "--dataset", str(folder), "--output", str(run), "--index", index_path)
    assert indexed.returncode == 0, indexed.stderr[-2000:]
    searched = run_without_tensorflow("search.py", str(folder / "coffee.jpg"), "--output", str(run), "--index", index_path,
                                      "--no-images", "--top-k", "3")
    assert searched.returncode == 0, searched.stderr[-2000:]
    assert len(searched.stdout.splitlines()) == 3 and "Traceback" not in searched.stderr


def test_a_missing_export_is_made_again_with_tensorflow_and_refused_in_one_line_without(colour_model, tmp_path):
    run, folder = colour_model
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    export_path = locations.export_path_of(str(copy / config.MODEL_FILE))
    os.remove(export_path)
    refused = run_without_tensorflow("index_dataset.py", "--dataset", str(folder), "--output", str(copy))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines()[-1] == (
        f"index_dataset.py: error: {export_path}: missing, and this install has no TensorFlow to make it: copy it from "
        f"where autoencoder.keras was trained, or run index_dataset.py once where TensorFlow is installed")
    remade = subprocess.run([sys.executable, "index_dataset.py", "--dataset", str(folder), "--output", str(copy)],
                            cwd=REPOSITORY_DIR, capture_output=True, text=True, timeout=300)
    assert remade.returncode == 0 and f"exporting the encoder of {copy / config.MODEL_FILE}" in remade.stderr
    assert os.path.isfile(export_path)


def test_an_export_of_another_model_is_made_again(colour_model, gray_model, tmp_path):
    run, _ = colour_model
    model_path = str(tmp_path / config.MODEL_FILE)
    shutil.copy(run / config.MODEL_FILE, model_path)
    shutil.copy(locations.export_path_of(str(gray_model / config.MODEL_FILE)), locations.export_path_of(model_path))
    encoder = runtime.open_encoder(model_path)
    assert (encoder.image_size, encoder.channels) == (32, 3)  # The colour model's, not the gray export's.


def test_a_broken_export_is_made_again_or_one_clear_error_without_tensorflow(colour_model, tmp_path, capsys):
    import index_dataset
    import search

    run, folder = colour_model
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    index_dataset.main(["--dataset", str(folder), "--output", str(copy)])
    with open(locations.export_path_of(str(copy / config.MODEL_FILE)), "wb") as file:
        file.write(b"not an onnx model")  # As an interrupted copy leaves it.
    # A search-only install cannot make it again: one line that says what to do.
    process = run_without_tensorflow("search.py", str(folder / "coffee.jpg"), "--output", str(copy), "--no-images")
    assert process.returncode == 2 and "autoencoder.encoder.onnx: not a loadable ONNX encoder" in process.stderr, process.stderr
    capsys.readouterr()
    search.main([str(folder / "coffee.jpg"), "--output", str(copy), "--no-images", "--top-k", "3"])
    captured = capsys.readouterr()
    assert "not loadable (truncated or damaged)" in captured.err and len(captured.out.splitlines()) == 3