"""Random views of a batch of images: the edits the encoder is trained to see through."""

import math

from imsearch.backend import tf

# Aspect-ratio change of a crop, at most this factor either way, as in SimCLR's resized crops.
CROP_ASPECT = 4 / 3
# Each view's edits are drawn uniformly within these bounds.
ROTATION_DEGREES = 10.0
CONTRAST = (0.7, 1.4)
BRIGHTNESS = 0.15
SATURATION = (0.6, 1.4)
NOISE_STD = 0.04


def random_views(images, crop_area):
    """Two independent random views of a float batch in [0, 1]: what the views objective trains on.

    Each view is a resized crop of crop_area..1 of the image (aspect changed by up to CROP_ASPECT, rotated by up
    to ROTATION_DEGREES, all in one affine warp), then contrast, brightness, for colour saturation, and noise.
    Mirror images are left out: search ranks every image by the nearer of a query and its mirror image.
    """
    return random_view(images, crop_area), random_view(images, crop_area)


def random_view(images, crop_area):
    """One random view of each image of a float batch (see random_views)."""
    count, size, channels = tf.shape(images)[0], images.shape[1], images.shape[3]
    warped = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=crop_transforms(count, size, crop_area), output_shape=[size, size],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT",
    )
    return photometric_edit(warped, channels)


def crop_transforms(count, size, crop_area):
    """(count, 8) affine transforms mapping each output pixel into a random rotated crop of the input."""
    area = tf.random.uniform((count,), crop_area, 1.0)
    log_aspect = tf.random.uniform((count,), -math.log(CROP_ASPECT), math.log(CROP_ASPECT))
    scale_x = tf.minimum(tf.sqrt(area * tf.exp(log_aspect)), 1.0)
    scale_y = tf.minimum(tf.sqrt(area / tf.exp(log_aspect)), 1.0)
    angle = tf.random.uniform((count,), -1.0, 1.0) * ROTATION_DEGREES * math.pi / 180
    centre = (size - 1) / 2
    # The crop's centre may move as far as keeps the unrotated crop inside the image.
    centre_x = centre + tf.random.uniform((count,), -1.0, 1.0) * (1.0 - scale_x) * size / 2
    centre_y = centre + tf.random.uniform((count,), -1.0, 1.0) * (1.0 - scale_y) * size / 2
    a0, a1 = tf.cos(angle) * scale_x, -tf.sin(angle) * scale_y
    b0, b1 = tf.sin(angle) * scale_x, tf.cos(angle) * scale_y
    a2, b2 = centre_x - (a0 + a1) * centre, centre_y - (b0 + b1) * centre
    zeros = tf.zeros_like(a0)
    return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def photometric_edit(images, channels):
    """Random contrast about each image's mean, brightness, saturation (colour only) and Gaussian noise."""
    count = tf.shape(images)[0]

    def per_image(low, high):
        return tf.random.uniform((count, 1, 1, 1), low, high)

    mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
    images = (images - mean) * per_image(*CONTRAST) + mean + per_image(-BRIGHTNESS, BRIGHTNESS)
    if channels == 3:
        gray = tf.reduce_mean(images, axis=3, keepdims=True)
        images = gray + (images - gray) * per_image(*SATURATION)
    images = images + tf.random.normal(tf.shape(images)) * per_image(0.0, NOISE_STD)
    return tf.clip_by_value(images, 0.0, 1.0)
