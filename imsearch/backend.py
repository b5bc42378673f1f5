"""TensorFlow and Keras, imported here only, so their start-up notices never reach the user's stderr."""

import re

from imsearch import console

# Informational lines TensorFlow's C++ code logs while it loads (absl's "before InitializeLog" preamble,
# the oneDNN notice), before TF_CPP_MIN_LOG_LEVEL is read. Warnings and errors (W, E, F lines) still show.
START_UP_NOTICE = re.compile(r"WARNING: All log messages before absl::InitializeLog\(\) is called|I\d{4} ")

with console.native_stderr_without(START_UP_NOTICE):
    import tensorflow as tf
    from tensorflow import keras

__all__ = ["keras", "tf"]
