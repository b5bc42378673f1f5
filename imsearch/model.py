"""The regularized convolutional autoencoder: build, compile, load safely, and its encoder."""

import contextlib
import io
import logging
import os
import warnings

import numpy as np

from imsearch import InputError, descriptors, encoding, invariance, locations, safeio
from imsearch.backend import keras, tf

layers = keras.layers

ENCODER_LAYER = "encoder"
# The view trainer's nested model that returns reconstruction and features; the saved autoencoder is its first output.
WITH_FEATURES = "autoencoder_with_features"
PROJECTION_HIDDEN_UNITS = 256


def size_multiple(filters):
    """What the image side must be a multiple of: each convolution in filters halves it."""
    return 2 ** len(filters)


def build_autoencoder(image_size, channels, settings):
    """Functional conv autoencoder; the layer named `encoder` outputs the feature vector."""
    multiple = size_multiple(settings.filters)
    if image_size % multiple:
        raise InputError(f"--image-size must be a multiple of {multiple} for {len(settings.filters)} --filters, got {image_size}")
    inputs = keras.Input(shape=(image_size, image_size, channels), name="image")
    x = inputs
    for index, filters in enumerate(settings.filters):
        x = downsample(x, filters, settings.architecture, name=f"down_{index}")
        for number in range(1, settings.convolutions_per_stage):
            x = convolve(x, filters, name=f"down_{index}_{number}")
    feature_map_shape = tuple(x.shape[1:])
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(
        settings.latent_dim,
        kernel_regularizer=keras.regularizers.L2(settings.l2_weight_decay),
        activity_regularizer=keras.regularizers.L1(settings.l1_activity),
        name="latent",
    )(x)
    features = layers.ReLU(name=ENCODER_LAYER)(x)

    x = layers.Dense(feature_map_shape[0] * feature_map_shape[1] * feature_map_shape[2], name="expand")(features)
    x = layers.Reshape(feature_map_shape, name="unflatten")(x)
    for index, filters in enumerate(reversed(settings.filters)):
        x = upsample(x, filters, settings.architecture, name=f"up_{index}")
    x = layers.Conv2DTranspose(channels, 3, padding="same", name="to_pixels")(x)
    outputs = layers.Activation("sigmoid", name="reconstruction")(x)
    return keras.Model(inputs, outputs, name="autoencoder")


def downsample(x, filters, architecture, name):
    """Halve the spatial size: a stride-2 convolution, or a convolution then max-pooling."""
    if architecture == "pooling":
        x = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv")(x)
        x = layers.MaxPooling2D(2, padding="same", name=f"{name}_pool")(x)
    else:
        x = layers.Conv2D(filters, 3, strides=2, padding="same", name=f"{name}_conv")(x)
    x = layers.LeakyReLU(negative_slope=0.2, name=f"{name}_act")(x)
    return layers.BatchNormalization(name=f"{name}_norm")(x)


def convolve(x, filters, name):
    """A further 3x3 convolution at the same size: the encoder sees larger shapes before the latent."""
    x = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv")(x)
    x = layers.LeakyReLU(negative_slope=0.2, name=f"{name}_act")(x)
    return layers.BatchNormalization(name=f"{name}_norm")(x)


def upsample(x, filters, architecture, name):
    """Double the spatial size: a stride-2 transposed convolution, or up-sampling then a convolution."""
    if architecture == "pooling":
        x = layers.UpSampling2D(2, name=f"{name}_upsample")(x)
        x = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv")(x)
    else:
        x = layers.Conv2DTranspose(filters, 3, strides=2, padding="same", name=f"{name}_conv")(x)
    x = layers.LeakyReLU(negative_slope=0.2, name=f"{name}_act")(x)
    return layers.BatchNormalization(name=f"{name}_norm")(x)


def compile_autoencoder(model, settings, steps_per_epoch):
    """Adam with the learning rate decayed linearly to 0 over the run, and the reconstruction loss."""
    loss = "binary_crossentropy" if settings.loss == "bce" else "mse"
    model.compile(optimizer=keras.optimizers.Adam(learning_rate_schedule(settings, steps_per_epoch)), loss=loss)


def learning_rate_schedule(settings, steps_per_epoch):
    """settings.learning_rate decayed linearly to 0 over the run."""
    return keras.optimizers.schedules.PolynomialDecay(
        settings.learning_rate, decay_steps=max(1, settings.epochs * steps_per_epoch), end_learning_rate=0.0, power=1.0
    )


def build_view_trainer(autoencoder, settings):
    """The views objective's model: two views in; each one's reconstruction and predicted histograms, and both projections, out.

    It shares every layer with autoencoder, so training it trains the autoencoder; the projection head
    (SimCLR's) and the linear histogram head are trained with it and never saved with the autoencoder.
    Without an invariance term the projections are left out; with a histogram prediction weight of 0, the histograms.
    """
    with_features = keras.Model(autoencoder.input, [autoencoder.output, autoencoder.get_layer(ENCODER_LAYER).output],
                                name=WITH_FEATURES)
    hidden = layers.Dense(PROJECTION_HIDDEN_UNITS, activation="relu", name="projection_hidden")
    project = layers.Dense(settings.projection_dim, name="projection")
    predict_histograms = layers.Dense(descriptors.histograms_length(autoencoder.input_shape[3]), name="histogram_prediction")
    views = [keras.Input(shape=autoencoder.input_shape[1:], name=f"view_{number}") for number in (1, 2)]
    outputs, projections = {}, []
    for number, view in enumerate(views, start=1):
        reconstruction, features = with_features(view)
        outputs[f"reconstruction_{number}"] = layers.Identity(name=f"reconstruction_{number}")(reconstruction)
        if settings.histogram_prediction_weight:
            outputs[f"histograms_{number}"] = layers.Identity(name=f"histograms_{number}")(predict_histograms(features))
        projections.append(project(hidden(features)))
    if settings.invariance != "none":
        outputs["invariance"] = layers.Concatenate(name="invariance")(projections)
    return keras.Model(views, outputs, name="view_trainer")


def autoencoder_of_trainer(trainer):
    """The autoencoder inside a view trainer, sharing its weights."""
    with_features = trainer.get_layer(WITH_FEATURES)
    return keras.Model(with_features.input, with_features.outputs[0], name="autoencoder")


def compile_view_trainer(trainer, settings, steps_per_epoch):
    """As compile_autoencoder, with each view's reconstruction weighted half, the invariance term and the histograms' cosine beside them."""
    reconstruction_loss = "binary_crossentropy" if settings.loss == "bce" else "mse"
    losses = {"reconstruction_1": reconstruction_loss, "reconstruction_2": reconstruction_loss}
    weights = {"reconstruction_1": 0.5, "reconstruction_2": 0.5}
    if settings.histogram_prediction_weight:
        for number in (1, 2):
            losses[f"histograms_{number}"] = keras.losses.CosineSimilarity()  # -cos: 0 when orthogonal, -1 when alike.
            weights[f"histograms_{number}"] = settings.histogram_prediction_weight / 2
    if settings.invariance == "nt-xent":
        losses["invariance"], weights["invariance"] = invariance.NTXent(settings.temperature), settings.invariance_weight
    elif settings.invariance == "vicreg":
        losses["invariance"], weights["invariance"] = invariance.VICReg(), settings.invariance_weight
    trainer.compile(optimizer=keras.optimizers.Adam(learning_rate_schedule(settings, steps_per_epoch)), loss=losses,
                    loss_weights=weights)


def load_autoencoder(model_path):
    """Load this suite's autoencoder with safe_mode; InputError for anything else."""
    if not os.path.isfile(model_path):
        raise safeio.missing_file_error(model_path, "model", locations.MODEL_FILE, "train.py", "--model",
                                        "pass --model with a model train.py wrote")
    try:
        model = keras.models.load_model(model_path, compile=False, safe_mode=True)
    except Exception as error:  # Keras reports bad files as many exception types; all mean "not loadable".
        reason = describe_load_error(error)
        raise InputError(f"{model_path}: not a loadable autoencoder ({reason}); retrain with train.py") from None
    if not isinstance(model, keras.Model) or ENCODER_LAYER not in {layer.name for layer in model.layers}:
        raise InputError(f"{model_path}: not this suite's autoencoder (no layer named '{ENCODER_LAYER}'); retrain with train.py")
    input_shape = tuple(model.input_shape)
    if len(input_shape) != 4 or input_shape[1] != input_shape[2] or input_shape[3] not in (1, 3):
        raise InputError(f"{model_path}: unexpected input shape {input_shape}; retrain with train.py")
    return model


def describe_load_error(error):
    """A short reason why Keras could not load a model file."""
    text = " ".join(str(error).split())
    if "arbitrary code execution" in text or "safe_mode" in text:
        return "it holds a Lambda layer, which could run arbitrary code; refused by safe_mode"
    return text.split(". ")[0][:160] if text else type(error).__name__


def image_shape_of(model):
    """(image_size, channels) the model was trained for."""
    return model.input_shape[1], model.input_shape[3]


def encoder_network(model):
    """The encoder sub-model, found by layer name."""
    return keras.Model(model.input, model.get_layer(ENCODER_LAYER).output, name="encoder_model")


def encoder_of(model):
    """The model's encoder as indexing and search take it (an encoding.Encoder), computed by Keras."""
    network = encoder_network(model)
    image_size, channels = image_shape_of(model)

    # One trace serves every batch size: far cheaper than predict per call.
    @tf.function(input_signature=[tf.TensorSpec((None, image_size, image_size, channels), tf.float32)])
    def encode(images):
        return network(images, training=False)

    return encoding.Encoder(image_size, channels, network.output_shape[-1], lambda images: encode(tf.constant(images)).numpy())


def export_encoder(model, model_path):
    """Write the model's encoder as ONNX (locations.export_path_of), its metadata naming the model file by SHA-256."""
    import onnx

    network = encoder_network(model)
    latent = network.get_layer("latent")
    # The L1 activity penalty only shapes training and carries no weights; the ONNX exporter cannot convert it.
    penalty, latent.activity_regularizer = latent.activity_regularizer, None
    try:
        network(np.zeros((1, *model.input_shape[1:]), np.float32))  # Keras exports only a model that has been called.
        with safeio.atomic_path(locations.export_path_of(model_path)) as temporary_path, quiet_export():
            network.export(temporary_path, format="onnx", verbose=False)
            exported = onnx.load(temporary_path)
            entry = exported.metadata_props.add()
            entry.key, entry.value = locations.EXPORT_MODEL_SHA256_KEY, safeio.sha256_of_file(model_path)
            onnx.save(exported, temporary_path)
    finally:
        latent.activity_regularizer = penalty


@contextlib.contextmanager
def quiet_export():
    """Keep the ONNX exporter's notices and warnings (tf2onnx's logging, numpy's deprecations) off stdout and stderr."""
    tf2onnx_logger = logging.getLogger("tf2onnx")
    level = tf2onnx_logger.level
    tf2onnx_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        tf2onnx_logger.setLevel(level)
