"""The image search suite's package: data, model, index, search, pictures, and the Python API (imsearch.open_run)."""

import os

# TensorFlow and OpenCV log to stderr at import and on every odd file; keep only real errors.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")


class InputError(ValueError):
    """A user mistake (bad file, flag or folder): reported as one line on stderr, never a traceback."""


def __getattr__(name):
    """The Python API (imsearch.open_run and what it returns), loaded on first use: the scripts import the package
    without it."""
    if name in ("open_run", "Run", "Hit", "Duplicate"):
        from imsearch import api

        return getattr(api, name)
    raise AttributeError(f"module 'imsearch' has no attribute {name!r}")
