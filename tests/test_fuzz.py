"""Property-based fuzzing of the image reader, the index loader and the dataset loaders: only the suite's own clear errors.

Runs briefly here; set FUZZ_EXAMPLES=5000 for a longer run.
"""

import os
import pickle

import cv2
import hypothesis
import numpy as np
from hypothesis import strategies

from imsearch import InputError, image_folders, index, published_datasets

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
FUZZ = hypothesis.settings(max_examples=EXAMPLES, deadline=None, database=None,
                           suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
VALID_PNG = cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (12, 9, 3), dtype=np.uint8))[1].tobytes()
VALID_JPEG = cv2.imencode(".jpg", np.random.default_rng(1).integers(0, 255, (12, 9, 3), dtype=np.uint8))[1].tobytes()
VALID_INDEX = pickle.dumps({"format_version": 4, "histograms": False, "neighbours": np.array([[1], [0]], np.int32),
                            "neighbour_similarities": np.ones((2, 1), np.float32), "dataset_dir": "/d", "paths": ["a.png", "b.png"], "labels": ["x", "y"], "stamps": np.array([[1, 2], [3, 4]]),
                            "features": np.ones((2, 3), np.float32), "model_sha256": "0" * 64, "image_size": 8, "channels": 1},
                           protocol=5)
VALID_IDX = bytes([0, 0, 0x08, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 3]) + bytes(range(18))
VALID_CIFAR_BATCH = pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [0, 1]}, protocol=4)


def mutated(valid):
    """Bytes derived from a valid file: cut short, with bytes overwritten, or with junk appended."""
    return strategies.tuples(
        strategies.integers(0, len(valid)), strategies.lists(strategies.tuples(strategies.integers(0, len(valid) - 1),
                                                                               strategies.integers(0, 255)), max_size=8),
        strategies.binary(max_size=16),
    ).map(lambda change: apply_change(valid, *change))


def loaded_or_refused(place, load):
    """What load() returns, or None when it refused the input with the suite's own error naming place."""
    try:
        return load()
    except InputError as error:
        assert str(place) in str(error)
        return None


def apply_change(valid, length, replacements, tail):
    """valid truncated to length, bytes replaced at positions, tail appended."""
    result = bytearray(valid[:length])
    for position, value in replacements:
        if position < len(result):
            result[position] = value
    return bytes(result) + tail


@FUZZ
@hypothesis.given(content=strategies.one_of(strategies.binary(max_size=512), mutated(VALID_PNG), mutated(VALID_JPEG)),
                  channels=strategies.sampled_from([1, 3]))
def test_image_reader_returns_an_image_or_a_clear_error(tmp_path, content, channels):
    path = tmp_path / "fuzz.png"
    path.write_bytes(content)
    try:
        image = image_folders.read_image(str(path), 8, channels)
    except image_folders.UnreadableImage as error:
        assert str(path) in str(error)
    else:
        assert image.shape == (8, 8, channels) and image.dtype == np.uint8


@FUZZ
@hypothesis.given(content=strategies.one_of(strategies.binary(max_size=512), mutated(VALID_INDEX)))
def test_index_loader_returns_an_index_or_a_clear_error(tmp_path, content):
    path = tmp_path / "fuzz.pkl"
    path.write_bytes(content)
    loaded = loaded_or_refused(path, lambda: index.load_index(str(path)))
    if loaded is not None:
        assert loaded.features.dtype == np.float32 and len(loaded.paths) == len(loaded.features)


@FUZZ
@hypothesis.given(content=strategies.one_of(strategies.binary(max_size=64), mutated(VALID_IDX)))
def test_idx_reader_returns_an_array_or_a_clear_error(tmp_path, content):
    path = tmp_path / "fuzz-idx3-ubyte"
    path.write_bytes(content)
    array = loaded_or_refused(path, lambda: published_datasets.read_idx(str(path)))
    if array is not None:
        assert array.dtype == np.uint8 and array.size == len(content) - 4 - 4 * content[3]


@FUZZ
@hypothesis.given(content=strategies.one_of(strategies.binary(max_size=256), mutated(VALID_CIFAR_BATCH)))
def test_cifar_loader_returns_splits_or_a_clear_error(tmp_path, content):
    (tmp_path / "meta").write_bytes(pickle.dumps({b"fine_label_names": [b"a", b"b"]}, protocol=4))
    (tmp_path / "train").write_bytes(content)
    (tmp_path / "test").write_bytes(VALID_CIFAR_BATCH)
    loaded = loaded_or_refused(tmp_path, lambda: published_datasets.load_cifar_splits(str(tmp_path)))
    if loaded is not None:
        splits, names = loaded
        images, labels = splits["train"]
        assert images.shape[1:] == (32, 32, 3) and len(images) == len(labels) and names == ("a", "b")
