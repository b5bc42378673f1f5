"""Messy folders and files: each is read, or skipped with a warning and a count, or refused in one line."""

import os
import pickle
import zipfile

import cv2
import numpy as np
import pytest
from PIL import Image
from tensorflow import keras

import index_dataset
import search
import train
from conftest import fails_with
from imsearch import image_folders, index

WRITERS = {
    "zero_byte.png": lambda path: open(path, "wb").close(),
    "truncated.png": lambda path: open(path, "wb").write(cv2.imencode(".png", np.full((20, 20), 99, np.uint8))[1].tobytes()[:60]),
    "text.jpg": lambda path: open(path, "w").write("plain text pretending to be a JPEG"),
    "dangling_link.png": lambda path: os.symlink("/nonexistent/target.png", path),
    "fifo.png": lambda path: os.mkfifo(path),
    "truncated.jpg": lambda path: open(path, "wb").write(cv2.imencode(".jpg", np.full((64, 64, 3), 80, np.uint8))[1].tobytes()[:400]),
}
READABLE = {
    "sixteen_bit.png": lambda path: cv2.imwrite(path, np.full((20, 30), 40000, np.uint16)),
    "alpha.png": lambda path: cv2.imwrite(path, np.full((20, 20, 4), (10, 200, 30, 128), np.uint8)),
    "cmyk.jpg": lambda path: Image.new("CMYK", (24, 24), (0, 255, 255, 0)).save(path),
    "one_pixel.png": lambda path: cv2.imwrite(path, np.full((1, 1), 200, np.uint8)),
    "gray_in_colour.png": lambda path: cv2.imwrite(path, np.full((20, 20), 120, np.uint8)),
    "name with spaces.png": lambda path: cv2.imwrite(path, np.zeros((9, 9), np.uint8)),
    "ünïcødé-名前.png": lambda path: open(path, "wb").write(cv2.imencode(".png", np.zeros((9, 9), np.uint8))[1].tobytes()),
    "new\nline.png": lambda path: open(path, "wb").write(cv2.imencode(".png", np.zeros((9, 9), np.uint8))[1].tobytes()),
}


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_unreadable_file_is_skipped_and_counted(name, gray_model, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "good.png"), np.full((28, 28), 200, np.uint8))
    WRITERS[name](str(folder / name))
    index_dataset.main(["--dataset", str(folder), "--model", str(gray_model / "autoencoder.keras"),
                        "--index", str(tmp_path / "features.pkl")])
    assert f"skipped 1 unreadable image(s) of 2, first: {folder / name}" in capsys.readouterr().err
    assert index.load_index(str(tmp_path / "features.pkl")).paths == ["good.png"]


@pytest.mark.parametrize("name", sorted(READABLE))
def test_odd_but_valid_image_is_read_in_both_modes(name, tmp_path):
    path = str(tmp_path / name)
    READABLE[name](path)
    for channels in (1, 3):
        image = image_folders.read_image(path, 16, channels)
        assert image.shape == (16, 16, channels) and image.dtype == np.uint8


def test_sixteen_bit_alpha_and_cmyk_colours_survive(tmp_path):
    for name in ("sixteen_bit.png", "alpha.png", "cmyk.jpg"):
        READABLE[name](str(tmp_path / name))
    assert image_folders.read_image(str(tmp_path / "sixteen_bit.png"), 8, 1).min() >= 150  # 40000/65535 of white.
    red, green, blue = image_folders.read_image(str(tmp_path / "alpha.png"), 8, 3)[4, 4]
    assert (red, green, blue) == (30, 200, 10)  # BGRA on disk, RGB in memory; alpha dropped.
    red, green, blue = image_folders.read_image(str(tmp_path / "cmyk.jpg"), 8, 3)[4, 4].astype(int)
    assert red > 200 and green < 60 and blue < 60  # CMYK (0, 255, 255, 0) is red.


def test_huge_image_is_read(tmp_path):
    cv2.imwrite(str(tmp_path / "huge.png"), np.zeros((10000, 10000), np.uint8))
    assert image_folders.read_image(str(tmp_path / "huge.png"), 28, 1).shape == (28, 28, 1)


def test_symlink_loop_is_not_followed(tmp_path):
    (tmp_path / "a").mkdir()
    cv2.imwrite(str(tmp_path / "a" / "x.png"), np.zeros((4, 4), np.uint8))
    os.symlink(tmp_path, tmp_path / "a" / "loop")
    assert image_folders.list_images(str(tmp_path)) == (["a/x.png"], ["a"])


def test_names_with_newlines_keep_one_line_per_hit(gray_model, tmp_path, capsys):
    folder = tmp_path / "odd names"
    folder.mkdir()
    for name in ("new\nline.png", "tab\there.png", "ünïcødé-名前.png", "name with spaces.png"):
        READABLE["new\nline.png"](str(folder / name))
    model_path = str(gray_model / "autoencoder.keras")
    index_dataset.main(["--dataset", str(folder), "--model", model_path, "--index", str(tmp_path / "f.pkl")])
    search.main(["--model", model_path, "--index", str(tmp_path / "f.pkl"), "--no-images", "--top-k", "4",
                 str(folder / "new\nline.png")])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(len(line.split("\t")) == 4 for line in lines)
    assert lines[0].startswith(str(folder) + "/new\\nline.png\t")
    assert {line.split("\t")[3].rsplit("/", 1)[-1] for line in lines} == {"tab\\there.png", "ünïcødé-名前.png", "name with spaces.png"}


def test_empty_folder(gray_model, tmp_path, capsys):
    line = fails_with(index_dataset, ["--dataset", str(tmp_path), "--model", str(gray_model / "autoencoder.keras"),
                                      "--index", str(tmp_path / "f.pkl")], capsys)
    assert f"{tmp_path}: no images" in line and not (tmp_path / "f.pkl").exists()


def test_dataset_that_is_a_file(tmp_path, capsys):
    (tmp_path / "file.png").write_bytes(b"")
    line = fails_with(train, ["--dataset", str(tmp_path / "file.png"), "--output", str(tmp_path / "out")], capsys)
    assert "file.png: no such folder" in line


def test_output_that_is_a_file(gray_dataset, tmp_path, capsys):
    (tmp_path / "taken").write_text("")
    line = fails_with(train, ["--dataset", str(gray_dataset / "train"), "--output", str(tmp_path / "taken"),
                              "--epochs", "1", "--latent-dim", "4", "--filters", "4", "4"], capsys)
    assert "taken" in line and "cannot write here" in line


def test_truncated_model_file(gray_model, tmp_path, capsys):
    (tmp_path / "cut.keras").write_bytes((gray_model / "autoencoder.keras").read_bytes()[:5000])
    line = fails_with(search, ["--model", str(tmp_path / "cut.keras"), "q.png"], capsys)
    assert "cut.keras: not a loadable autoencoder" in line


def test_model_with_a_lambda_layer_is_refused(tmp_path, capsys):
    inputs = keras.Input((8, 8, 1))
    outputs = keras.layers.Lambda(lambda x: x * 2, name="encoder")(inputs)
    keras.Model(inputs, outputs).save(tmp_path / "lambda.keras")
    line = fails_with(search, ["--model", str(tmp_path / "lambda.keras"), "q.png"], capsys)
    assert "lambda.keras: not a loadable autoencoder" in line and "safe_mode" in line


def test_keras_file_that_is_a_zip_of_junk(tmp_path, capsys):
    with zipfile.ZipFile(tmp_path / "junk.keras", "w") as archive:
        archive.writestr("config.json", "{not json")
    assert "junk.keras: not a loadable autoencoder" in fails_with(search, ["--model", str(tmp_path / "junk.keras"), "q"], capsys)


@pytest.mark.parametrize("change, message", [
    (lambda saved: saved | {"format_version": 0}, f"index format 0, expected {index.FORMAT_VERSION}"),
    (lambda saved: [saved], "not an index of this suite"),
    (lambda saved: {key: value for key, value in saved.items() if key != "paths"}, "not an index of this suite"),
    (lambda saved: saved | {"unknown": 1}, "not an index of this suite"),
    (lambda saved: saved | {"features": saved["features"][:3]}, "features do not match its paths"),
    (lambda saved: saved | {"labels": saved["labels"][:3]}, "labels do not match its paths"),
    (lambda saved: saved | {"stamps": saved["stamps"].tolist()}, "stamps do not match its paths"),
    (lambda saved: saved | {"neighbours": saved["neighbours"] + 100}, "neighbour graph does not match its paths"),
    (lambda saved: saved | {"approximate_metric": np.array(["cosine"])}, "unknown approximate_metric"),
    (lambda saved: saved | {"diffusion_basis": np.zeros((3, 4), np.float16), "diffusion_eigenvalues": np.ones(4, np.float32)},
     "the graph's spectrum does not match its graph"),
    (lambda saved: saved | {"diffusion_basis": np.zeros((len(saved["paths"]), 4), np.float16),
                            "diffusion_eigenvalues": np.full(4, np.nan, np.float32)}, "the graph's spectrum does not match"),
    (lambda saved: saved | {"diffusion_basis": np.zeros((len(saved["paths"]), 4), np.float16),
                            "diffusion_eigenvalues": np.full(4, 1.5, np.float32)}, "the graph's spectrum does not match"),
    (lambda saved: saved | {"paths": ["../../outside.png", *saved["paths"][1:]]}, "paths are not sorted, distinct and inside"),
    (lambda saved: saved | {"paths": ["/etc/passwd", *saved["paths"][1:]]}, "paths are not sorted, distinct and inside"),
    (lambda saved: saved | {"paths": saved["paths"][::-1]}, "paths are not sorted, distinct and inside"),
    (lambda saved: saved | {"dataset_dir": "relative/folder"}, "dataset_dir is not an absolute path"),
    (lambda saved: saved | {"dataset_dir": "/tmp/a\0b"}, "dataset_dir is not an absolute path"),
    (lambda saved: saved | {"features": np.full_like(saved["features"], np.nan)}, "features are not all finite"),
    (lambda saved: saved | {"features": np.full_like(saved["features"], np.inf)}, "features are not all finite"),
    (lambda saved: saved | {"neighbour_similarities": np.full_like(saved["neighbour_similarities"], np.nan)},
     "neighbour graph does not match its paths"),
    (lambda saved: saved | {"image_size": 10**6}, "bad image shape"),
    (lambda saved: saved | {"paths": list(range(len(saved["paths"])))}, "paths are not a list of strings"),
    (lambda saved: saved | {"features": saved["features"].astype(str)}, "features do not match its paths"),
    (lambda saved: saved | {"format_version": 10**5000}, f"index format of another kind, expected {index.FORMAT_VERSION}"),
])
def test_malformed_index(change, message, gray_model, gray_index, tmp_path, capsys):
    with open(gray_index, "rb") as file:
        saved = pickle.load(file)
    (tmp_path / "bad.pkl").write_bytes(pickle.dumps(change(saved)))
    line = fails_with(search, ["--model", str(gray_model / "autoencoder.keras"), "--index", str(tmp_path / "bad.pkl"), "q"], capsys)
    assert "bad.pkl" in line and message in line


def test_index_that_is_a_folder(gray_model, tmp_path, capsys):
    line = fails_with(search, ["--model", str(gray_model / "autoencoder.keras"), "--index", str(tmp_path), "q"], capsys)
    assert f"{tmp_path}: is a folder; pass --index with the index file itself" in line


def test_query_of_another_size_and_mode_is_converted(gray_model, gray_index, tmp_path, capsys):
    cv2.imwrite(str(tmp_path / "big colour.jpg"), np.random.default_rng(0).integers(0, 255, (300, 170, 3), dtype=np.uint8))
    search.main(["--model", str(gray_model / "autoencoder.keras"), "--index", str(gray_index), "--no-images",
                 "--top-k", "5", str(tmp_path / "big colour.jpg")])
    assert len(capsys.readouterr().out.splitlines()) == 5


def test_one_bad_query_among_good_ones_is_counted(gray_model, gray_index, gray_dataset, tmp_path, capsys):
    good = str(gray_dataset / "test" / "disc" / "000.png")
    search.main(["--model", str(gray_model / "autoencoder.keras"), "--index", str(gray_index), "--no-images",
                 "--top-k", "2", good, str(tmp_path / "missing.png")])
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 2
    assert f"skipped 1 unreadable query image(s), first: {tmp_path / 'missing.png'}" in captured.err


@pytest.mark.parametrize("flags, message", [
    (["--validation-fraction", "1.5"], "--validation-fraction must be between 0 and 1"),
    (["--batch-size", "0"], "--batch-size must be positive"),
    (["--learning-rate", "-0.1"], "--learning-rate must be positive"),
    (["--filters", "8", "-1"], "--filters must all be positive"),
    (["--epochs", "many"], "invalid int value"),
])
def test_more_nonsense_flags(flags, message, capsys):
    assert message in fails_with(train, flags, capsys)
