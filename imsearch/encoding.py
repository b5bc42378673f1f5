"""Features of image files: the encoder's, or raw pixels, computed in batches while the next are read."""

import collections
import concurrent.futures

import numpy as np

from imsearch import console, data, descriptors, model
from imsearch.backend import tf

# Feature calls running at once on separate batches.
TRANSFORMS_IN_FLIGHT = 3


def feature_length(encoder, histograms):
    """Length of the feature vectors encode_paths makes with this encoder and histogram setting."""
    _, channels = model.image_shape_of(encoder)
    return encoder.output_shape[-1] + (descriptors.histograms_length(channels) if histograms else 0)


def make_encode_function(encoder, histograms=False, mirrored=False):
    """A compiled feature call on uint8 image batches: one tf.function trace, far cheaper than predict per call.

    With histograms, the encoder's features, the gradient histograms and, for colour models, the colour
    histograms are each scaled to unit length and concatenated, so each counts equally in every distance.
    mirrored: each image's features are followed by those of its mirror image, (B, 2 * feature_length).
    """
    image_size, channels = model.image_shape_of(encoder)

    def features_of(images):
        features = encoder(images, training=False)
        if not histograms:
            return features
        return tf.concat([descriptors.unit_rows(features), histograms_of(images, channels)], axis=1)

    # One trace serves every batch size; uint8 pixels cross into the graph at a quarter of float32's bytes.
    @tf.function(input_signature=[tf.TensorSpec((None, image_size, image_size, channels), tf.uint8)])
    def encode(pixels):
        images = tf.cast(pixels, tf.float32) / 255.0
        if not mirrored:
            return features_of(images)
        both = features_of(tf.concat([images, tf.reverse(images, axis=[2])], axis=0))
        count = tf.shape(images)[0]
        return tf.concat([both[:count], both[count:]], axis=1)

    return lambda images: encode(tf.constant(images)).numpy()


def histograms_of(images, channels):
    """The histogram parts of the features: gradients, and colours for colour images, each of unit length."""
    # A gray image's colour histogram is four brightness bins: too little to earn a third of every distance.
    if channels == 3:
        return tf.concat([descriptors.gradient_histograms(images), descriptors.colour_histograms(images)], axis=1)
    return descriptors.gradient_histograms(images)


def histogram_paths(paths, image_size, channels, batch_size):
    """The histogram parts of the features of the readable images among paths, and which paths those are."""

    @tf.function(input_signature=[tf.TensorSpec((None, image_size, image_size, channels), tf.uint8)])
    def histograms(pixels):
        return histograms_of(tf.cast(pixels, tf.float32) / 255.0, channels)

    shape = (image_size, channels, descriptors.histograms_length(channels))
    return transform_paths(lambda images: histograms(tf.constant(images)).numpy(), paths, shape, batch_size, "histograms")


def encode_paths(encoder, paths, batch_size, description="encoding", histograms=False, stamps=None):
    """Features of the readable images among paths, and which paths those are; stamps as for data.read_batch."""
    image_size, channels = model.image_shape_of(encoder)
    shape = (image_size, channels, feature_length(encoder, histograms))
    return transform_paths(make_encode_function(encoder, histograms), paths, shape, batch_size, description, stamps)


def encode_queries(encoder, paths, batch_size, histograms=False):
    """Features of the readable query images, those of their mirror images, and which paths were readable.

    Search ranks each row by the nearer of the two, so a mirrored photo finds what the photo finds.
    """
    image_size, channels = model.image_shape_of(encoder)
    length = feature_length(encoder, histograms)
    both, readable = transform_paths(make_encode_function(encoder, histograms, mirrored=True), paths,
                                     (image_size, channels, 2 * length), batch_size, "queries")
    return both[:, :length], both[:, length:], readable


def pixel_features(paths, image_size, channels, batch_size):
    """Raw pixels as flat feature vectors (the baseline), and which paths were readable."""
    flatten = lambda batch: batch.reshape(len(batch), -1).astype(np.float32) / 255.0  # noqa: E731
    return transform_paths(flatten, paths, (image_size, channels, image_size * image_size * channels), batch_size, "pixels")


def transform_paths(transform, paths, shape, batch_size, description, stamps=None):
    """Apply transform to batches of images read from paths; reading overlaps the transform.

    shape is (image_size, channels, feature_length). Returns (readable count, feature_length) float32
    features and a boolean mask of readable paths. stamps: as for data.read_batch.
    """
    image_size, channels, feature_length = shape
    features = np.zeros((len(paths), feature_length), dtype=np.float32)
    readable = np.zeros(len(paths), dtype=bool)
    in_flight = collections.deque()

    def collect(rows, future):
        features[rows] = future.result()
        readable[rows] = True

    # Several batches in flight keep TensorFlow's threads busy while a reader thread takes a core from them;
    # one call at a time would wait for its slowest shard (figures in docs/performance.md).
    with console.progress(len(paths), description) as progress, \
            concurrent.futures.ThreadPoolExecutor(TRANSFORMS_IN_FLIGHT) as executor:
        for start, batch, valid in data.iterate_batches(paths, image_size, channels, batch_size, stamps):
            rows = np.flatnonzero(valid) + start
            if rows.size:
                in_flight.append((rows, executor.submit(transform, batch)))
            if len(in_flight) > TRANSFORMS_IN_FLIGHT:
                collect(*in_flight.popleft())
            progress.update(len(valid))
        while in_flight:
            collect(*in_flight.popleft())
    return (features if readable.all() else features[readable]), readable
