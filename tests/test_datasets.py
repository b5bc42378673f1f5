"""Converting idx files and CIFAR batches into image folders, and a run on real Fashion-MNIST."""

import gzip
import os
import stat
import pickle

import cv2
import numpy as np
import pytest

import index_dataset
import prepare_dataset
import search
import train
from imsearch import InputError, published_datasets


def write_idx(path, array):
    """Write a uint8 array as a gzipped idx file."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(size).to_bytes(4, "big") for size in array.shape)
    with gzip.open(path, "wb") as file:
        file.write(header + array.tobytes())


def test_idx_round_trip_and_truncation(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    write_idx(str(tmp_path / "x.gz"), images)
    assert np.array_equal(published_datasets.read_idx(str(tmp_path / "x.gz")), images)
    with gzip.open(tmp_path / "x.gz", "rb") as file:
        raw = file.read()
    with gzip.open(tmp_path / "cut.gz", "wb") as file:
        file.write(raw[:-10])
    with pytest.raises(InputError, match="truncated"):
        published_datasets.read_idx(str(tmp_path / "cut.gz"))
    with gzip.open(tmp_path / "header.gz", "wb") as file:
        file.write(raw[:9])  # Three dimensions declared, the second one's size cut short.
    with pytest.raises(InputError, match="header declares 3 dimensions but the file ends first"):
        published_datasets.read_idx(str(tmp_path / "header.gz"))


def test_prepare_mnist_from_idx_files(tmp_path):
    rng = np.random.default_rng(1)
    for split, count in (("train", 6), ("t10k", 2)):
        write_idx(str(tmp_path / f"{split}-images-idx3-ubyte.gz"), rng.integers(0, 256, (count, 28, 28), dtype=np.uint8))
        write_idx(str(tmp_path / f"{split}-labels-idx1-ubyte.gz"), np.arange(count, dtype=np.uint8))
    prepare_dataset.main(["mnist", "--source", str(tmp_path), "--dataset-root", str(tmp_path / "out")])
    assert sorted(os.listdir(tmp_path / "out" / "mnist" / "train")) == [str(digit) for digit in range(10)]
    assert os.listdir(tmp_path / "out" / "mnist" / "train" / "5") == ["5.png"]
    assert os.listdir(tmp_path / "out" / "mnist" / "test" / "1") == ["1.png"]


def test_prepare_cifar10_batches_keeps_colours(tmp_path):
    def batch(count, red):
        planes = np.zeros((count, 3, 32, 32), dtype=np.uint8)
        planes[:, 0] = red  # The first 1024 bytes of a row are the red plane.
        return {b"data": planes.reshape(count, 3072), b"labels": [index % 2 for index in range(count)]}

    for number in range(1, 6):
        (tmp_path / f"data_batch_{number}").write_bytes(pickle.dumps(batch(2, 200), protocol=4))
    (tmp_path / "test_batch").write_bytes(pickle.dumps(batch(2, 200), protocol=4))
    (tmp_path / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"cat", b"dog"]}, protocol=4))
    prepare_dataset.main(["cifar10", "--source", str(tmp_path), "--dataset-root", str(tmp_path / "out")])
    cat_dir = tmp_path / "out" / "cifar10" / "train" / "cat"
    assert len(os.listdir(cat_dir)) == 5
    blue, green, red = cv2.imread(str(cat_dir / os.listdir(cat_dir)[0])).reshape(-1, 3).mean(axis=0)
    assert red == 200 and blue == 0


@pytest.mark.parametrize("meta, message", [
    ({b"names": [b"cat"]}, "batches.meta: not a CIFAR python batch (no 'label_names' entry)"),
    ([b"cat", b"dog"], "batches.meta: not a CIFAR python batch (no 'label_names' entry)"),
    ({b"label_names": [b"cat", b"dog"]}, "data_batch_1: its data is not rows of 3,072 bytes"),
])
def test_prepare_refuses_files_that_are_no_cifar_batches_in_one_line(meta, message, tmp_path, capsys):
    from conftest import fails_with

    for name in [f"data_batch_{number}" for number in range(1, 6)] + ["test_batch"]:
        (tmp_path / name).write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, protocol=4))
    (tmp_path / "batches.meta").write_bytes(pickle.dumps(meta, protocol=4))
    line = fails_with(prepare_dataset, ["cifar10", "--source", str(tmp_path), "--dataset-root", str(tmp_path / "out")], capsys)
    assert message in line


@pytest.mark.skipif(not os.path.isdir(published_datasets.DEBIAN_FASHION_MNIST_DIR),
                    reason="Debian package dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_subset_end_to_end(tmp_path, capsys):
    splits = published_datasets.load_fashion_mnist()
    assert splits["train"][0].shape == (60000, 28, 28) and splits["test"][0].shape == (10000, 28, 28)
    subset = {"train": (splits["train"][0][:600], splits["train"][1][:600]),
              "test": (splits["test"][0][:20], splits["test"][1][:20])}
    published_datasets.write_image_folders(subset, published_datasets.FASHION_MNIST_CLASSES, str(tmp_path / "fashion"))
    train_dir, output_dir = str(tmp_path / "fashion" / "train"), str(tmp_path / "output")
    train.main(["--dataset", train_dir, "--output", output_dir, "--epochs", "2"])
    model_path, index_path = os.path.join(output_dir, "autoencoder.keras"), os.path.join(output_dir, "features.pkl")
    index_dataset.main(["--dataset", train_dir, "--model", model_path, "--index", index_path])
    capsys.readouterr()
    search.main(["--model", model_path, "--index", index_path, "--output", output_dir,
                 "--sample", "20", "--top-k", "10", "--no-images"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 200
    # Chance is 10%: the bar asks six times that, well below what even a two-epoch model on 600 images reaches.
    same_class = [line.split("\t")[0].split("/")[-2] == line.split("\t")[3].split("/")[-2] for line in lines]
    assert sum(same_class) / len(same_class) > 0.6


def test_prepare_digits_writes_the_bundled_scikit_learn_digits(tmp_path):
    prepare_dataset.main(["digits", "--dataset-root", str(tmp_path)])
    train_dir, test_dir = tmp_path / "digits" / "train", tmp_path / "digits" / "test"
    assert sorted(os.listdir(train_dir)) == [str(digit) for digit in range(10)]
    counts = [len(os.listdir(split / str(digit))) for split in (train_dir, test_dir) for digit in range(10)]
    assert sum(counts) == 1797 and sum(counts[10:]) == 359
    image = cv2.imread(str(train_dir / "0" / sorted(os.listdir(train_dir / "0"))[0]), cv2.IMREAD_UNCHANGED)
    assert image.shape == (32, 32) and image.max() > 200  # Gray, scaled up, ink at full strength.
    assert stat.S_IMODE((tmp_path / "digits").stat().st_mode) == 0o755  # Readable by all, like any folder made with umask 022.


def test_prepare_refuses_labels_out_of_range_and_a_root_that_is_a_file_in_one_line(tmp_path, capsys):
    from conftest import fails_with

    rng = np.random.default_rng(2)
    for split, count in (("train", 4), ("t10k", 2)):
        write_idx(str(tmp_path / f"{split}-images-idx3-ubyte.gz"), rng.integers(0, 256, (count, 28, 28), dtype=np.uint8))
        write_idx(str(tmp_path / f"{split}-labels-idx1-ubyte.gz"), np.full(count, 3, np.uint8))
    (tmp_path / "a_file").write_text("")
    line = fails_with(prepare_dataset, ["mnist", "--source", str(tmp_path), "--dataset-root", str(tmp_path / "a_file")], capsys)
    assert "a_file: cannot create the dataset's folder there" in line
    write_idx(str(tmp_path / "t10k-labels-idx1-ubyte.gz"), np.array([3, 12], np.uint8))
    line = fails_with(prepare_dataset, ["mnist", "--source", str(tmp_path), "--dataset-root", str(tmp_path / "out")], capsys)
    assert "t10k-labels-idx1-ubyte.gz: not a list of labels 0 to 9" in line


def test_a_root_whose_name_is_not_utf8_is_written_and_trained_in(tmp_path):
    root = os.path.join(os.fsdecode(bytes(tmp_path)), os.fsdecode(b"caf\xe9"))  # As an old Latin-1 disk names it.
    prepare_dataset.main(["digits", "--dataset-root", root])
    folder = os.path.join(root, "digits", "train", "3")
    assert len(os.listdir(folder)) > 100
    train.main(["--dataset", folder, "--output", os.path.join(root, "run"), "--epochs", "1", "--latent-dim", "8", "--filters", "4", "8"])
    assert os.path.isfile(os.path.join(root, "run", "autoencoder.keras"))


def test_staging_folders_an_interrupted_preparation_left_are_named(tmp_path, capsys):
    (tmp_path / ".preparing-k1ll3d").mkdir()  # As a kill -9 during prepare_dataset.py leaves it.
    prepare_dataset.main(["digits", "--dataset-root", str(tmp_path)])
    assert f"1 staging folder(s) of an interrupted preparation in {tmp_path}, first: {tmp_path / '.preparing-k1ll3d'}" \
        in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == [".preparing-k1ll3d", "digits"]
