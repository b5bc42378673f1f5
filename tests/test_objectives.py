"""The training objectives: random views with an invariance term (the default), and the design's reconstruction alone."""

import dataclasses
import json
import os

import cv2
import numpy as np

import train
import config
from imsearch import descriptors, image_folders, model, photo_sets
from imsearch.backend import keras


def test_two_views_of_an_image_differ_and_target_the_clean_image():
    import tensorflow as tf

    images = tf.constant(np.random.default_rng(0).uniform(size=(6, 16, 16, 3)).astype(np.float32))
    (first, second), targets = image_folders.view_pair(images, crop_area=0.6, invariance=True, histograms=True)
    first, second = first.numpy(), second.numpy()
    assert first.shape == second.shape == images.shape and 0 <= first.min() and first.max() <= 1
    for row in range(len(images)):
        assert not np.allclose(first[row], second[row], atol=0.01)
        assert not np.allclose(first[row], images[row], atol=0.01)
    assert np.array_equal(targets["reconstruction_1"].numpy(), images.numpy())
    assert np.array_equal(targets["reconstruction_2"].numpy(), images.numpy())
    assert targets["invariance"].shape == (6, 1)
    # Both views predict the clean image's histograms, the very ones the index appends to the features.
    assert np.allclose(targets["histograms_1"].numpy(), descriptors.histograms_of(images.numpy()))
    assert np.array_equal(targets["histograms_2"].numpy(), targets["histograms_1"].numpy())
    (clean_first, clean_second), _ = image_folders.view_pair(images, crop_area=None, invariance=False)  # Validation: no edits.
    assert np.array_equal(clean_first.numpy(), images.numpy()) and np.array_equal(clean_second.numpy(), images.numpy())


def photo_patches(folder, size=48):
    """folder/<photo>/<n>.png: four crops of each of scikit-image's colour photos, real pictures to train on."""
    paths = []
    for name, photo_path in sorted(photo_sets.skimage_photos().items()):
        photo = cv2.imread(photo_path)
        height, width = photo.shape[:2]
        side = min(height, width) // 2
        os.makedirs(folder / name, exist_ok=True)
        for number, (top, left) in enumerate(((0, 0), (0, width - side), (height - side, 0), (height - side, width - side))):
            patch = cv2.resize(photo[top : top + side, left : left + side], (size, size), interpolation=cv2.INTER_AREA)
            paths.append(str(folder / name / f"{number}.png"))
            cv2.imwrite(paths[-1], patch)
    return paths


def edited_copy(image):
    """A crop of 75% of each side, brightened, contrast raised and rotated a little: an edit people make."""
    size = image.shape[0]
    margin = size // 8
    crop = cv2.resize(image[margin : size - margin, margin : size - margin], (size, size), interpolation=cv2.INTER_LINEAR)
    rotation = cv2.getRotationMatrix2D(((size - 1) / 2, (size - 1) / 2), 6, 1.0)
    rotated = cv2.warpAffine(crop, rotation, (size, size), borderMode=cv2.BORDER_REFLECT)
    return np.clip(rotated.astype(np.float32) * 1.2 + 20, 0, 255) / 255


def mean_rank_of_copies(autoencoder, originals, copies):
    """Mean rank (1 is best) of each original's edited copy among all copies, by the encoder's cosine similarity."""
    encoder = model.encoder_of(autoencoder)
    unit = lambda rows: rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)  # noqa: E731
    similarities = unit(encoder(originals)) @ unit(encoder(copies)).T
    own = np.diag(similarities)[:, None]
    return float(np.mean(1 + np.sum(similarities > own, axis=1)))


def test_training_on_views_brings_edited_copies_nearer(tmp_path):
    paths = photo_patches(tmp_path / "photos")
    settings = config.DEFAULTS
    originals = np.stack([cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB) for path in paths]).astype(np.float32) / 255
    copies = np.stack([edited_copy(image * 255) for image in originals]).astype(np.float32)
    keras.utils.set_random_seed(settings.seed)  # train.py seeds its initial weights alike.
    untrained = model.build_autoencoder(48, 3, settings)
    train.main(["--dataset", str(tmp_path / "photos"), "--output", str(tmp_path / "run"), "--epochs", "12",
                "--batch-size", "16", "--validation-fraction", "0.2"])
    trained = model.load_autoencoder(str(tmp_path / "run" / config.MODEL_FILE))
    before, after = mean_rank_of_copies(untrained, originals, copies), mean_rank_of_copies(trained, originals, copies)
    assert after < before, (before, after)


def test_reconstruction_objective_still_trains_and_loads(gray_dataset, tmp_path):
    output_dir = tmp_path / "run"
    train.main(["--dataset", str(gray_dataset / "train"), "--output", str(output_dir), "--epochs", "1", "--batch-size", "16",
                "--latent-dim", "16", "--filters", "8", "16", "--objective", "reconstruction"])
    autoencoder = model.load_autoencoder(str(output_dir / config.MODEL_FILE))
    assert autoencoder.input_shape == (None, 28, 28, 1) and autoencoder.output_shape == (None, 28, 28, 1)
    assert not any(layer.name.startswith("projection") for layer in autoencoder.layers)
    with open(output_dir / "autoencoder.json") as file:
        assert json.load(file)["objective"] == "reconstruction"


def test_early_stopping_watches_the_views_objectives_reconstruction(gray_dataset, tmp_path):
    output_dir = tmp_path / "run"
    train.main(["--dataset", str(gray_dataset / "train"), "--output", str(output_dir), "--epochs", "2", "--batch-size", "16",
                "--latent-dim", "16", "--filters", "8", "16", "--early-stopping-patience", "1"])
    assert model.load_autoencoder(str(output_dir / config.MODEL_FILE)).output_shape == (None, 28, 28, 1)


def test_views_objective_saves_the_plain_autoencoder(gray_model):
    autoencoder = model.load_autoencoder(str(gray_model / config.MODEL_FILE))
    assert autoencoder.input_shape == (None, 28, 28, 1) and autoencoder.output_shape == (None, 28, 28, 1)
    assert not any(layer.name.startswith(("projection", "histogram")) for layer in autoencoder.layers)
    with open(gray_model / "autoencoder.json") as file:
        record = json.load(file)
    assert record["objective"] == "views" and record["invariance"] == config.DEFAULTS.invariance


def test_histogram_prediction_is_a_term_of_its_own():
    settings = dataclasses.replace(config.DEFAULTS, filters=(8, 16), latent_dim=16)
    autoencoder = model.build_autoencoder(16, 3, settings)
    with_term = model.build_view_trainer(autoencoder, settings)
    without = model.build_view_trainer(autoencoder, dataclasses.replace(settings, histogram_prediction_weight=0.0))
    assert with_term.get_layer("histogram_prediction").units == descriptors.histograms_length(3)
    assert {"histograms_1", "histograms_2"} <= set(with_term.output) and not {"histograms_1", "histograms_2"} & set(without.output)
