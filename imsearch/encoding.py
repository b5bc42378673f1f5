"""Features of image files: the encoder's (with histograms beside them), or raw pixels, computed while the next are read."""

import collections
import concurrent.futures
import dataclasses
from typing import Callable

import numpy as np

from imsearch import InputError, console, descriptors, image_folders

# Feature calls running at once on separate batches.
TRANSFORMS_IN_FLIGHT = 3


@dataclasses.dataclass(frozen=True)
class Encoder:
    """An encoder ready to run, by onnxruntime (runtime.open_encoder) or Keras (model.encoder_of):
    (B, S, S, C) float32 images in [0, 1] -> (B, length) float32 features."""

    image_size: int
    channels: int
    length: int
    run: Callable

    def __post_init__(self):
        if self.image_size <= 0 or self.channels not in (1, 3) or self.length <= 0:
            raise InputError(f"an encoder for {self.image_size}x{self.image_size}x{self.channels} images giving "
                             f"{self.length} features is not this suite's; retrain with train.py")

    def __call__(self, images):
        return self.run(images)


def feature_length(encoder, histograms):
    """Length of the feature vectors encode_paths makes with this Encoder and histogram setting."""
    return encoder.length + (descriptors.histograms_length(encoder.channels) if histograms else 0)


def make_encode_function(encoder, histograms=False, mirrored=False):
    """The feature call on uint8 image batches.

    With histograms, the encoder's features, the gradient histograms and, for colour models, the colour
    histograms are each scaled to unit length and concatenated, so each counts equally in every distance.
    mirrored: each image's features are followed by those of its mirror image, (B, 2 * feature_length).
    """

    def features_of(images):
        features = encoder(images)
        if not histograms:
            return features
        return np.concatenate([descriptors.unit_rows(features), descriptors.histograms_of(images)], axis=1)

    def encode(pixels):
        images = pixels.astype(np.float32) / np.float32(255)
        if not mirrored:
            return features_of(images)
        both = features_of(np.concatenate([images, images[:, :, ::-1]]))
        return np.concatenate([both[: len(images)], both[len(images) :]], axis=1)

    return encode


def histogram_paths(paths, image_size, channels, batch_size):
    """The histogram parts of the features of the readable images among paths, and which paths those are."""
    histograms = lambda pixels: descriptors.histograms_of(pixels.astype(np.float32) / np.float32(255))  # noqa: E731
    shape = (image_size, channels, descriptors.histograms_length(channels))
    return transform_paths(histograms, paths, shape, batch_size, "histograms")


def encode_paths(encoder, paths, batch_size, description="encoding", histograms=False, stamps=None):
    """Features of the readable images among paths, and which paths those are; stamps as for image_folders.read_batch."""
    shape = (encoder.image_size, encoder.channels, feature_length(encoder, histograms))
    return transform_paths(make_encode_function(encoder, histograms), paths, shape, batch_size, description, stamps)


def encode_queries(encoder, paths, batch_size, histograms=False):
    """Features of the readable query images, those of their mirror images, and which paths were readable.

    Search ranks each row by the nearer of the two, so a mirrored photo finds what the photo finds.
    """
    length = feature_length(encoder, histograms)
    both, readable = transform_paths(make_encode_function(encoder, histograms, mirrored=True), paths,
                                     (encoder.image_size, encoder.channels, 2 * length), batch_size, "queries")
    return both[:, :length], both[:, length:], readable


def encode_images(encoder, images, histograms=False):
    """Features of in-memory images (RGB or gray uint8 arrays of any size) and of their mirror images, as encode_queries."""
    pixels = []
    for number, image in enumerate(images):
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or min(image.shape[:2]) < 1 or \
                (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
            raise InputError(f"image {number}: expected a uint8 array, (height, width) or (height, width, 1, 3 or 4) "
                             f"RGB, got {image.dtype} {image.shape}")
        pixels.append(image_folders.at_model_size(image, encoder.image_size, encoder.channels))
    length = feature_length(encoder, histograms)
    both = make_encode_function(encoder, histograms, mirrored=True)(np.stack(pixels))
    return both[:, :length], both[:, length:]


def pixel_features(paths, image_size, channels, batch_size):
    """Raw pixels as flat feature vectors (the baseline), and which paths were readable."""
    flatten = lambda batch: batch.reshape(len(batch), -1).astype(np.float32) / 255.0  # noqa: E731
    return transform_paths(flatten, paths, (image_size, channels, image_size * image_size * channels), batch_size, "pixels")


def transform_paths(transform, paths, shape, batch_size, description, stamps=None):
    """Apply transform to batches of images read from paths; reading overlaps the transform.

    shape is (image_size, channels, feature_length). Returns (readable count, feature_length) float32
    features and a boolean mask of readable paths. stamps: as for image_folders.read_batch.
    """
    image_size, channels, feature_length = shape
    features = np.zeros((len(paths), feature_length), dtype=np.float32)
    readable = np.zeros(len(paths), dtype=bool)
    in_flight = collections.deque()

    def collect(rows, future):
        features[rows] = future.result()
        readable[rows] = True

    # Several batches in flight keep the encoder's threads busy while a reader thread takes a core from them;
    # one call at a time would wait for its slowest shard (figures in docs/performance.md).
    with console.progress(len(paths), description) as progress, \
            concurrent.futures.ThreadPoolExecutor(TRANSFORMS_IN_FLIGHT) as executor:
        for start, batch, valid in image_folders.iterate_batches(paths, image_size, channels, batch_size, stamps):
            rows = np.flatnonzero(valid) + start
            if rows.size:
                in_flight.append((rows, executor.submit(transform, batch)))
            if len(in_flight) > TRANSFORMS_IN_FLIGHT:
                collect(*in_flight.popleft())
            progress.update(len(valid))
        while in_flight:
            collect(*in_flight.popleft())
    return (features if readable.all() else features[readable]), readable
