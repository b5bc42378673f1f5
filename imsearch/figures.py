"""Pictures for people: result montages, reconstructions and the loss curve, written atomically."""

import math

import cv2
import imutils
import numpy as np

from imsearch import InputError, safeio

CELL_SIZE = 128
MONTAGE_COLUMNS = 5


def to_display(image, cell_size=CELL_SIZE):
    """An RGB or gray image (uint8 or float in [0, 1]) as a 3-channel uint8 RGB cell of cell_size, aspect kept.

    A picture that is not square is scaled to fit and centred on black, never squashed nor cut.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    height, width = image.shape[:2]
    scale = cell_size / max(height, width)
    size = (max(1, min(cell_size, round(width * scale))), max(1, min(cell_size, round(height * scale))))
    interpolation = cv2.INTER_NEAREST if scale > 1 else cv2.INTER_AREA
    resized = cv2.resize(image, size, interpolation=interpolation)
    cell = np.zeros((cell_size, cell_size, 3), np.uint8)
    top, left = (cell_size - size[1]) // 2, (cell_size - size[0]) // 2
    cell[top : top + size[1], left : left + size[0]] = resized
    return cell


def blank_cell(cell_size=CELL_SIZE):
    """A black RGB cell, shown where an image can no longer be read."""
    return np.zeros((cell_size, cell_size, 3), np.uint8)


def write_rgb(path, image):
    """Write an RGB image atomically; OpenCV encodes BGR, so the channels are swapped exactly here."""
    extension = "." + path.rsplit(".", 1)[-1]
    ok, encoded = cv2.imencode(extension, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise InputError(f"{path}: OpenCV cannot encode {extension} images; use .png or .jpg")
    safeio.atomic_write_bytes(path, encoded.tobytes())


def montage(images, columns=MONTAGE_COLUMNS, cell_size=CELL_SIZE):
    """One RGB montage of the images in rank order, row by row."""
    # imutils copies pixels without looking at channel order, but needs three channels.
    cells = [to_display(image, cell_size) for image in images]
    columns = min(columns, len(cells))
    rows = math.ceil(len(cells) / columns)
    return imutils.build_montages(cells, (cell_size, cell_size), (columns, rows))[0]


def reconstruction_grid(originals, reconstructions, cell_size=CELL_SIZE):
    """Originals in the top row above their reconstructions in the bottom row, RGB uint8."""
    top = np.hstack([to_display(image, cell_size) for image in originals])
    bottom = np.hstack([to_display(image, cell_size) for image in reconstructions])
    return np.vstack([top, bottom])


def pyplot():
    """matplotlib's pyplot, rendering to files only (servers have no display); imported when a plot is drawn.

    Search writes montages with OpenCV alone: importing matplotlib would add a third of a second to every query.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as module

    return module


def save_figure(figure, path):
    """Save a matplotlib figure atomically and close it."""
    with safeio.atomic_path(path) as temporary_path:
        figure.savefig(temporary_path, format=path.rsplit(".", 1)[-1], dpi=100, bbox_inches="tight")
    pyplot().close(figure)


def plot_losses(history, path, ylabel="loss"):
    """Training and validation loss per epoch as a PNG."""
    figure, axes = pyplot().subplots(figsize=(6, 4))
    epochs = np.arange(1, len(history["loss"]) + 1)
    axes.plot(epochs, history["loss"], label="train")
    if history.get("val_loss"):
        axes.plot(epochs, history["val_loss"], label="validation")
    axes.set_xlabel("epoch")
    axes.set_ylabel(ylabel)
    axes.set_title("Autoencoder training")
    axes.legend()
    axes.grid(alpha=0.3)
    save_figure(figure, path)


def plot_feature_map(features, labels, path, max_points=5000, seed=0):
    """A 2-D PCA map of the features, one colour per class, as a PNG."""
    from sklearn import decomposition

    rows = np.random.default_rng(seed).permutation(len(features))[:max_points]
    points = decomposition.PCA(n_components=2, random_state=seed).fit_transform(features[rows])
    # Images at the root of a labelled folder have no class (None): they share one legend entry.
    labels = np.array(["(no class)" if label is None else label for label in labels], dtype=object)[rows]
    figure, axes = pyplot().subplots(figsize=(7, 6))
    colours = pyplot().get_cmap("tab10" if len(set(labels)) <= 10 else "tab20")
    for number, label in enumerate(sorted(set(labels))):
        chosen = labels == label
        axes.scatter(points[chosen, 0], points[chosen, 1], s=4, alpha=0.6, color=colours(number % colours.N), label=label)
    axes.set_title("Feature space (PCA of the indexed features)")
    axes.legend(markerscale=4, fontsize=8, loc="best")
    save_figure(figure, path)
