"""Unit tests of image listing, reading, resizing, splitting and shape inference."""

import os

import cv2
import numpy as np
import pytest

from imsearch import InputError, image_folders


def test_resize_and_crop_keeps_aspect_and_takes_the_centre():
    image = np.zeros((40, 80), dtype=np.uint8)
    image[:, 20:60] = 255  # A white centre band as wide as the crop that should remain.
    cropped = image_folders.resize_and_crop(image, 20)
    assert cropped.shape == (20, 20)
    assert cropped.min() == 255  # Only the centre 40x40, now 20x20, survives: all white.


@pytest.mark.parametrize("height, width", [(7, 31), (100, 30), (28, 28), (1, 1)])
def test_resize_and_crop_always_gives_the_size(height, width):
    assert image_folders.resize_and_crop(np.ones((height, width, 3), np.uint8), 16).shape == (16, 16, 3)


def test_read_image_returns_rgb_and_gray(tmp_path):
    bgr = np.zeros((10, 14, 3), dtype=np.uint8)
    bgr[..., 2] = 200  # Red in OpenCV's BGR order.
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    rgb = image_folders.read_image(str(tmp_path / "red.png"), 8, 3)
    assert rgb.shape == (8, 8, 3) and rgb[..., 0].min() == 200 and rgb[..., 2].max() == 0
    gray = image_folders.read_image(str(tmp_path / "red.png"), 8, 1)
    assert gray.shape == (8, 8, 1) and 50 < gray.mean() < 70  # 0.299 * 200


def test_read_image_refuses_non_images(tmp_path):
    (tmp_path / "fake.jpg").write_text("text")
    with pytest.raises(image_folders.UnreadableImage, match="fake.jpg: not a readable image"):
        image_folders.read_image(str(tmp_path / "fake.jpg"), 8, 3)


def test_list_images_is_sorted_recursive_and_labelled(tmp_path):
    for relative in ("b/2.png", "b/10.PNG", "a/x/1.jpg", "top.bmp", "c/readme.txt"):
        os.makedirs(tmp_path / os.path.dirname(relative), exist_ok=True)
        (tmp_path / relative).write_bytes(b"")
    paths, labels = image_folders.list_images(str(tmp_path))
    assert paths == ["a/x/1.jpg", "b/10.PNG", "b/2.png", "top.bmp"]
    assert labels == ["a", "b", "b", None]


def test_list_images_without_subfolders_has_no_labels(tmp_path):
    (tmp_path / "one.png").write_bytes(b"")
    assert image_folders.list_images(str(tmp_path)) == (["one.png"], None)


def test_list_images_skips_run_folders_inside_the_images(tmp_path, capsys):
    for relative in ("cats/1.png", "output/autoencoder.keras", "output/result.png", "output/plots/loss.png",
                     "old/features.pkl", "old/query.png"):
        os.makedirs(tmp_path / os.path.dirname(relative), exist_ok=True)
        (tmp_path / relative).write_bytes(b"")
    assert image_folders.list_images(str(tmp_path)) == (["cats/1.png"], ["cats"])
    assert "skipped 2 run folder(s)" in capsys.readouterr().err
    (tmp_path / "features.pkl").write_bytes(b"")  # The folder asked for is listed even if an index lies in it.
    assert image_folders.list_images(str(tmp_path))[0] == ["cats/1.png"]


def test_list_images_errors(tmp_path):
    with pytest.raises(InputError, match="no such folder"):
        image_folders.list_images(str(tmp_path / "missing"))
    with pytest.raises(InputError, match="no images"):
        image_folders.list_images(str(tmp_path))


def test_split_is_seeded_disjoint_and_complete():
    train, validation = image_folders.split_indices(100, 0.1, seed=7)
    again_train, again_validation = image_folders.split_indices(100, 0.1, seed=7)
    assert np.array_equal(train, again_train) and np.array_equal(validation, again_validation)
    assert len(validation) == 10 and not set(train) & set(validation)
    assert sorted(set(train) | set(validation)) == list(range(100))
    assert not np.array_equal(validation, image_folders.split_indices(100, 0.1, seed=8)[1])


def test_infer_image_shape(tmp_path):
    cv2.imwrite(str(tmp_path / "gray.png"), np.zeros((30, 30), np.uint8))
    assert image_folders.infer_image_shape([str(tmp_path / "gray.png")]) == (32, 1)  # Rounded up to a multiple of 4.
    colour = np.zeros((30, 50, 3), np.uint8)
    colour[..., 1] = 99
    cv2.imwrite(str(tmp_path / "colour.png"), colour)
    assert image_folders.infer_image_shape([str(tmp_path / "gray.png"), str(tmp_path / "colour.png")]) == (image_folders.VARIED_IMAGE_SIZE, 3)


def test_iterate_batches_marks_unreadable_files(tmp_path):
    cv2.imwrite(str(tmp_path / "good.png"), np.full((5, 5), 255, np.uint8))
    (tmp_path / "bad.png").write_text("x")
    paths = [str(tmp_path / "good.png"), str(tmp_path / "bad.png"), str(tmp_path / "good.png")]
    batches = list(image_folders.iterate_batches(paths, 4, 1, batch_size=2))
    assert [start for start, _, _ in batches] == [0, 2]
    assert batches[0][2].tolist() == [True, False] and batches[0][1].shape == (1, 4, 4, 1)
    assert batches[0][1].dtype == np.uint8 and batches[0][1].max() == 255


def test_training_dataset_streams_batches_of_pairs(tmp_path):
    for number in range(5):
        cv2.imwrite(str(tmp_path / f"{number}.png"), np.full((9, 9), number * 50, np.uint8))
    dataset = image_folders.training_dataset([str(tmp_path / f"{n}.png") for n in range(5)], 8, 1, batch_size=2)
    batches = [(inputs.numpy(), targets.numpy()) for inputs, targets in dataset]
    assert [len(inputs) for inputs, _ in batches] == [2, 2, 1]
    assert all(np.array_equal(inputs, targets) for inputs, targets in batches)
    assert np.isclose(batches[2][0].max(), 200 / 255)


def test_augment_corrupts_inputs_only_and_flips_both():
    import tensorflow as tf

    images = tf.constant(np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype(np.float32))
    inputs, targets = image_folders.augment(images, noise_std=0.3, shift_pixels=2)
    assert np.array_equal(targets.numpy(), images.numpy()) and not np.array_equal(inputs.numpy(), images.numpy())
    assert inputs.shape == images.shape and 0 <= float(tf.reduce_min(inputs)) and float(tf.reduce_max(inputs)) <= 1
    flipped_inputs, flipped_targets = image_folders.augment(images, flip=True)
    assert np.array_equal(flipped_inputs.numpy(), flipped_targets.numpy())
    originals, mirrored = images.numpy(), flipped_targets.numpy()
    assert all(np.array_equal(m, o) or np.array_equal(m, o[:, ::-1]) for m, o in zip(mirrored, originals))


def test_gradient_histograms_are_unit_length_and_see_orientation():
    from imsearch import descriptors

    vertical = np.zeros((1, 28, 28, 1), np.float32)
    vertical[:, :, 14:] = 1.0  # One vertical edge: all its gradient points along x.
    horizontal = np.transpose(vertical, (0, 2, 1, 3))
    histograms = descriptors.gradient_histograms(np.concatenate([vertical, horizontal, 1.0 - vertical]))
    assert histograms.shape == (3, descriptors.HISTOGRAM_LENGTH)
    assert np.allclose(np.linalg.norm(histograms, axis=1), 1, atol=1e-5)
    assert histograms[0] @ histograms[1] < 0.1  # Perpendicular edges share no orientation bin.
    assert np.allclose(histograms[0], histograms[2], atol=1e-6)  # Orientation, not polarity, counts.


def reference_histograms(image, cells=7, bins=9):
    """HOG of one (S, S, C) image written out pixel by pixel, as the descriptor's docstring describes it."""
    gray = image.mean(axis=-1)
    cell = max(1, len(gray) // cells)
    padded = np.pad(gray, 1, mode="symmetric")
    delta_y, delta_x = (padded[2:, 1:-1] - padded[:-2, 1:-1]) / 2, (padded[1:-1, 2:] - padded[1:-1, :-2]) / 2
    sums = np.zeros((cells, cells, bins))
    for y in range(cell * cells):
        for x in range(cell * cells):
            angle = np.arctan2(delta_y[y, x], delta_x[y, x]) % np.pi
            sums[y // cell, x // cell, min(int(angle / np.pi * bins), bins - 1)] += np.hypot(delta_y[y, x], delta_x[y, x])
    blocks = np.concatenate([sums[:-1, :-1], sums[1:, :-1], sums[:-1, 1:], sums[1:, 1:]], axis=-1) / cell**2
    blocks = np.sqrt(blocks / (np.linalg.norm(blocks, axis=-1, keepdims=True) + 1e-6)).ravel()
    return blocks / np.linalg.norm(blocks)


@pytest.mark.parametrize("size, channels", [(28, 1), (30, 3)])  # 30: the last two rows and columns fall outside the cells.
def test_gradient_histograms_match_a_pixel_by_pixel_reference(size, channels):
    from imsearch import descriptors

    images = np.random.default_rng(size).random((2, size, size, channels)).astype(np.float32)
    histograms = descriptors.gradient_histograms(images)
    for image, histogram in zip(images, histograms):
        # One unit-length histogram per grid, the two together of unit length.
        reference = np.concatenate([reference_histograms(image, cells) for cells in descriptors.GRID_CELLS]) / np.sqrt(2)
        assert np.allclose(histogram, reference, atol=1e-5)


def test_large_jpegs_are_decoded_at_a_reduced_scale_to_nearly_the_same_pixels(tmp_path):
    rng = np.random.default_rng(0)
    smooth = cv2.resize(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8), (2400, 1800), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(tmp_path / "large.jpg"), smooth, [cv2.IMWRITE_JPEG_QUALITY, 90])
    encoded = np.fromfile(tmp_path / "large.jpg", dtype=np.uint8)
    assert image_folders.decode_flag(encoded, 64, 3) == cv2.IMREAD_REDUCED_COLOR_8  # 1800 / 8 = 225 >= 2 x 64.
    assert image_folders.decode_flag(encoded, 200, 1) == cv2.IMREAD_REDUCED_GRAYSCALE_4
    assert image_folders.decode_flag(encoded, 1000, 3) == cv2.IMREAD_COLOR  # Too small to reduce for this size.
    reduced = image_folders.read_image(str(tmp_path / "large.jpg"), 64, 3).astype(float)
    full = cv2.cvtColor(image_folders.resize_and_crop(cv2.imread(str(tmp_path / "large.jpg")), 64), cv2.COLOR_BGR2RGB)
    assert np.abs(reduced - full).mean() < 1.0


def test_pngs_and_small_jpegs_are_decoded_at_full_size(tmp_path):
    image = np.random.default_rng(1).integers(0, 255, (300, 200, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "big.png"), image)
    cv2.imwrite(str(tmp_path / "small.jpg"), image[:100, :100])
    assert image_folders.decode_flag(np.fromfile(tmp_path / "big.png", dtype=np.uint8), 16, 3) == cv2.IMREAD_COLOR
    assert image_folders.decode_flag(np.fromfile(tmp_path / "small.jpg", dtype=np.uint8), 64, 1) == cv2.IMREAD_GRAYSCALE
    assert image_folders.decode_flag(np.frombuffer(b"\xff\xd8\xff junk", dtype=np.uint8), 8, 3) == cv2.IMREAD_COLOR


def test_jpeg_size_is_read_from_the_frame_header_even_for_huge_or_broken_files(tmp_path):
    image = np.random.default_rng(2).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    for name, flags in (("baseline.jpg", []), ("progressive.jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])):
        cv2.imwrite(str(tmp_path / name), image, flags)
        assert image_folders.jpeg_shorter_side(np.fromfile(tmp_path / name, dtype=np.uint8)) == 200
    header = bytearray((tmp_path / "baseline.jpg").read_bytes())
    frame = header.index(b"\xff\xc0")
    header[frame + 5 : frame + 9] = (12240).to_bytes(2, "big") + (16320).to_bytes(2, "big")  # A 200 MP photo's header.
    (tmp_path / "huge.jpg").write_bytes(bytes(header))
    assert image_folders.jpeg_shorter_side(np.frombuffer(bytes(header), dtype=np.uint8)) == 12240
    # Its data do not fit the header: OpenCV decodes what there is (at 1/8 scale), and nothing raises.
    assert image_folders.read_image(str(tmp_path / "huge.jpg"), 64, 3).shape == (64, 64, 3)
    assert image_folders.jpeg_shorter_side(np.frombuffer(bytes(header[:frame]), dtype=np.uint8)) == 0
