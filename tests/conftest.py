"""Fixtures: tiny synthetic image folders, and a model trained on them once per session."""

import os

import cv2
import numpy as np
import pytest

import train

SHAPES = ("disc", "square", "cross")


def fails_with(script, argv, capsys):
    """Run a script's main, expect exit 2 and exactly one error line on stderr; return that line."""
    with pytest.raises(SystemExit) as raised:
        script.main(argv)
    assert raised.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1, errors
    return errors[0]


def draw(shape, size, colour, rng):
    """A BGR image of one shape on a dark background, at a random place and scale."""
    height, width = size
    image = np.full((height, width, 3), rng.integers(0, 40), dtype=np.uint8)
    centre = (int(rng.integers(width // 3, 2 * width // 3 + 1)), int(rng.integers(height // 3, 2 * height // 3 + 1)))
    radius = max(2, int(min(height, width) * rng.uniform(0.2, 0.35)))
    if shape == "disc":
        cv2.circle(image, centre, radius, colour, -1)
    elif shape == "square":
        cv2.rectangle(image, (centre[0] - radius, centre[1] - radius), (centre[0] + radius, centre[1] + radius), colour, -1)
    else:
        thickness = max(1, radius // 3)
        cv2.line(image, (centre[0] - radius, centre[1]), (centre[0] + radius, centre[1]), colour, thickness)
        cv2.line(image, (centre[0], centre[1] - radius), (centre[0], centre[1] + radius), colour, thickness)
    return image


def make_folder(root, per_class=12, gray=False, sizes=((24, 24),), seed=0, extension=".png"):
    """root/<shape>/<n><extension>: per_class images of each shape, gray or coloured by class."""
    rng = np.random.default_rng(seed)
    colours = {"disc": (40, 40, 230), "square": (40, 220, 40), "cross": (230, 60, 40)}  # BGR: red, green, blue
    for shape in SHAPES:
        os.makedirs(os.path.join(root, shape), exist_ok=True)
        for number in range(per_class):
            image = draw(shape, sizes[number % len(sizes)], colours[shape], rng)
            if gray:
                image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
            cv2.imwrite(os.path.join(root, shape, f"{number:03d}{extension}"), image)
    return str(root)


@pytest.fixture(scope="session")
def gray_dataset(tmp_path_factory):
    """A gray train/test pair of 28x28 images in three classes."""
    root = tmp_path_factory.mktemp("gray")
    make_folder(root / "train", per_class=16, gray=True, sizes=((28, 28),), seed=1)
    make_folder(root / "test", per_class=3, gray=True, sizes=((28, 28),), seed=2)
    return root


@pytest.fixture(scope="session")
def colour_dataset(tmp_path_factory):
    """A colour folder of odd, varied sizes, in three classes coloured red, green and blue."""
    root = tmp_path_factory.mktemp("colour")
    make_folder(root / "train", per_class=12, sizes=((37, 23), (50, 61), (32, 32)), seed=3, extension=".jpg")
    make_folder(root / "test", per_class=2, sizes=((45, 45),), seed=4)
    return root


@pytest.fixture(scope="session")
def gray_model(gray_dataset, tmp_path_factory):
    """Output folder of a one-epoch model trained on the gray dataset."""
    output_dir = tmp_path_factory.mktemp("gray_output")
    train.main(["--dataset", str(gray_dataset / "train"), "--output", str(output_dir), "--epochs", "1",
                "--batch-size", "16", "--latent-dim", "16", "--filters", "8", "16"])
    return output_dir


@pytest.fixture(scope="session")
def gray_index(gray_model, gray_dataset):
    """Path of an index of the gray train folder made with gray_model."""
    import index_dataset

    index_path = gray_model / "features.pkl"
    index_dataset.main(["--dataset", str(gray_dataset / "train"), "--model", str(gray_model / "autoencoder.keras"),
                        "--index", str(index_path)])
    return index_path
