"""Invariance terms on the latent, as Keras losses over the two views' projections side by side."""

from imsearch.backend import keras

ops = keras.ops


def split_views(projections):
    """The (batch, 2d) output of the projection head as the first view's and the second view's (batch, d) halves."""
    half = ops.shape(projections)[1] // 2
    return projections[:, :half], projections[:, half:]


@keras.utils.register_keras_serializable(package="imsearch")
class NTXent(keras.losses.Loss):
    """SimCLR's normalised temperature-scaled cross-entropy: each view must pick its twin out of the batch."""

    def __init__(self, temperature=0.2, name="nt_xent", **kwargs):
        super().__init__(name=name, **kwargs)
        self.temperature = temperature

    def call(self, y_true, y_pred):
        first, second = split_views(y_pred)
        both = ops.normalize(ops.concatenate([first, second], axis=0), axis=1)
        count = ops.shape(first)[0]
        logits = ops.matmul(both, ops.transpose(both)) / self.temperature
        logits = logits - 1e9 * ops.eye(2 * count)  # A view is never its own twin.
        twins = ops.concatenate([ops.arange(count) + count, ops.arange(count)], axis=0)
        losses = keras.losses.sparse_categorical_crossentropy(twins, logits, from_logits=True)
        return (losses[:count] + losses[count:]) / 2

    def get_config(self):
        return super().get_config() | {"temperature": self.temperature}


@keras.utils.register_keras_serializable(package="imsearch")
class VICReg(keras.losses.Loss):
    """VICReg's terms (Bardes et al., 2022) without negatives: views agree, each dimension varies, dimensions decorrelate."""

    def __init__(self, invariance=25.0, variance=25.0, covariance=1.0, name="vicreg", **kwargs):
        super().__init__(name=name, **kwargs)
        self.invariance, self.variance, self.covariance = invariance, variance, covariance

    def call(self, y_true, y_pred):
        first, second = split_views(y_pred)
        total = self.invariance * ops.mean(ops.square(first - second))
        for view in (first, second):
            centred = view - ops.mean(view, axis=0, keepdims=True)
            deviation = ops.sqrt(ops.var(view, axis=0) + 1e-4)
            total = total + self.variance * ops.mean(ops.relu(1.0 - deviation)) / 2
            count, width = ops.cast(ops.shape(view)[0], view.dtype), ops.cast(ops.shape(view)[1], view.dtype)
            # A batch of one has no covariance; dividing by at least 1 keeps it 0 rather than 0/0.
            covariance = ops.matmul(ops.transpose(centred), centred) / ops.maximum(count - 1.0, 1.0)
            off_diagonal = covariance * (1.0 - ops.eye(ops.shape(view)[1]))
            total = total + self.covariance * ops.sum(ops.square(off_diagonal)) / width / 2
        return ops.zeros_like(y_pred[:, 0]) + total

    def get_config(self):
        return super().get_config() | {"invariance": self.invariance, "variance": self.variance, "covariance": self.covariance}

