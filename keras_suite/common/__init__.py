"""Code every Keras Suite app shares.

Importing it imports `keras_suite` first, which makes sure Keras uses the TensorFlow
backend (keras_suite/__init__.py lists everything the package does to the environment).
"""

import os

import keras_suite  # noqa: F401  (KERAS_BACKEND before any Keras import)


def quiet_import_tensorflow():
    """Import TensorFlow with its C++ start-up messages muted, and return the module.

    The CUDA probe logs ("Could not find cuda drivers", "failed call to cuInit") are
    written by absl before TF_CPP_MIN_LOG_LEVEL is read, so the only way to keep them out
    of the CLI's output is to point file descriptor 2 at /dev/null for the import and the
    first device query. Python exceptions raised meanwhile still reach the user because
    the descriptor is restored before they propagate.
    """
    import sys

    if "tensorflow" in sys.modules or os.environ.get("KSUITE_TF_VERBOSE") == "1":
        import tensorflow as tf

        return tf
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf

        tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    tf.get_logger().setLevel("ERROR")
    return tf
