"""Code every Keras Suite app shares.

Importing this package first makes sure Keras uses the TensorFlow backend and that
TensorFlow's C++ start-up chatter (oneDNN banners, CUDA probes) stays out of the CLI's
output. Every other top-level package imports it before it imports keras.
"""
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# 0 = all, 1 = no INFO, 2 = no WARNING, 3 = no ERROR; users can lower it to debug.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# oneDNN prints a banner about numerical differences on every start; the maths stays on.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
# Keep absl from warning that logging was used before absl.init.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

if os.environ.get("TF_USE_LEGACY_KERAS") == "1":
    raise RuntimeError(
        "TF_USE_LEGACY_KERAS=1 switches tf.keras to Keras 2 for the whole process and "
        "Keras Suite needs Keras 3. Unset TF_USE_LEGACY_KERAS and run again."
    )


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
