"""The encoder as indexing and search run it: onnxruntime on the ONNX export beside the model, without TensorFlow.

train.py writes output/autoencoder.encoder.onnx beside output/autoencoder.keras, tied to it by the model file's
SHA-256 in the export's metadata. A missing or stale export is made again where TensorFlow is installed, and
refused with one line where it is not (a search-only install).
"""

import importlib.util
import os
import zipfile

import numpy as np

from imsearch import InputError, console, encoding, locations, safeio

def open_encoder(model_path):
    """The model's encoder run by onnxruntime, its export made again first when it is missing or stale."""
    if not os.path.isfile(model_path):
        raise safeio.missing_file_error(model_path, "model", locations.MODEL_FILE, "train.py", "--model",
                                        "pass --model with a model train.py wrote")
    model_sha256 = safeio.sha256_of_file(model_path)
    export_path = locations.export_path_of(model_path)
    reason = "missing"
    try:
        session = open_session(export_path)
    except InputError:
        if importlib.util.find_spec("tensorflow") is None:
            raise
        session, reason = None, "not loadable (truncated or damaged)"  # Made anew below, as a missing one is.
    if session is None or session.get_modelmeta().custom_metadata_map.get(locations.EXPORT_MODEL_SHA256_KEY) != model_sha256:
        rebuild_export(model_path, export_path, reason if session is None else "made from another model")
        session = open_session(export_path)
    return encoder_of_session(session, export_path)


def open_session(export_path):
    """An onnxruntime session on an export, or None when there is no file; InputError when it is not a model."""
    if not os.path.isfile(export_path):
        return None
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # Errors only: its notices would reach the user's stderr.
    try:
        # The bytes, not the path: onnxruntime takes no path that is not UTF-8.
        with open(export_path, "rb") as file:
            return onnxruntime.InferenceSession(file.read(), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime reports bad files with its own exception types.
        raise InputError(f"{export_path}: not a loadable ONNX encoder ({str(error).splitlines()[0][:120]}); delete it, "
                         "and search or index again where TensorFlow is installed to make it anew") from None


def rebuild_export(model_path, export_path, reason):
    """Export the model's encoder to ONNX with TensorFlow; InputError where TensorFlow is not installed."""
    if not zipfile.is_zipfile(model_path):  # Every .keras file is a zip archive: refuse anything else before TensorFlow starts.
        raise InputError(f"{model_path}: not a loadable autoencoder (not a Keras archive); pass --model with a model train.py wrote")
    if importlib.util.find_spec("tensorflow") is None:
        raise InputError(f"{export_path}: {reason}, and this install has no TensorFlow to make it: copy it from where "
                         f"{os.path.basename(model_path)} was trained, or run index_dataset.py once where TensorFlow "
                         "is installed")
    from imsearch import model

    console.log(f"exporting the encoder of {model_path} to {export_path} ({reason})")
    model.export_encoder(model.load_autoencoder(model_path), model_path)


def encoder_of_session(session, export_path):
    """An Encoder running an onnxruntime session, checked to take square images and give one vector each."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    shape = inputs[0].shape if len(inputs) == 1 and len(outputs) == 1 else []
    if len(shape) != 4 or shape[1] != shape[2] or not isinstance(shape[1], int) or len(outputs[0].shape) != 2:
        raise InputError(f"{export_path}: not this suite's encoder export; delete it and index again to make it anew")
    name = inputs[0].name
    return encoding.Encoder(shape[1], shape[3], outputs[0].shape[1],
                   lambda images: session.run(None, {name: np.ascontiguousarray(images, dtype=np.float32)})[0])
