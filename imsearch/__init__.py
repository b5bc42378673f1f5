"""Shared code of the image search suite: data, model, index, metrics and pictures."""

import os

# TensorFlow and OpenCV log to stderr at import and on every odd file; keep only real errors.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")


class InputError(ValueError):
    """A user mistake (bad file, flag or folder): reported as one line on stderr, never a traceback."""
