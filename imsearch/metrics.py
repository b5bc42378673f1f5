"""Quality measures: reconstruction error of the autoencoder and retrieval quality of the index."""

import numpy as np
import tensorflow as tf

from imsearch import data


def reconstruction_error(autoencoder, paths, batch_size):
    """Mean squared error over the readable images of paths, and how many were readable."""
    image_size, channels = autoencoder.input_shape[1], autoencoder.input_shape[3]
    reconstruct = tf.function(lambda images: autoencoder(images, training=False), reduce_retracing=True)
    total, count = 0.0, 0
    for _, batch, _ in data.iterate_batches(paths, image_size, channels, batch_size):
        if len(batch):
            reconstructions = reconstruct(tf.constant(batch)).numpy()
            total += float(np.square(reconstructions - batch, dtype=np.float64).mean(axis=(1, 2, 3)).sum())
            count += len(batch)
    return (total / count if count else float("nan")), count


def reconstruct_examples(autoencoder, paths):
    """Images of paths in [0, 1] and the autoencoder's reconstructions of them."""
    image_size, channels = autoencoder.input_shape[1], autoencoder.input_shape[3]
    originals = np.stack([data.read_image(path, image_size, channels) for path in paths]).astype(np.float32) / 255.0
    return originals, autoencoder(originals, training=False).numpy()
