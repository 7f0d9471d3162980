"""Keras Suite: deep-learning apps in Keras 3 that train under tf.distribute, evaluate with
their field's metric, export to TF Serving and convert to TFLite.

    import keras_suite as ks
    cfg = ks.config("classification", preset="smoke")
    cfg.train.epochs = 2
    run = ks.train(cfg, run_dir="runs/notebook")
    run.predict(images)

docs/python-api.md documents the API; `ksuite` is the same API on the command line.

What importing this package does to the process, all of it (and nothing else does):
- `KERAS_BACKEND` is set to "tensorflow" if it is unset, because every app is written for
  Keras 3 on TensorFlow; a different backend already chosen is refused with one message.
- `TF_USE_LEGACY_KERAS=1` (Keras 2 for the whole process) is refused with one message.
The command line additionally quiets TensorFlow's C++ start-up logs
(`keras_suite.cli.quiet_logs`); a notebook keeps TensorFlow's own logging.
"""

import os

__version__ = "0.2.0"

_backend = os.environ.setdefault("KERAS_BACKEND", "tensorflow")
if _backend != "tensorflow":
    raise ImportError(
        f"KERAS_BACKEND={_backend!r}, but Keras Suite's apps are written for the TensorFlow "
        "backend (tf.distribute, SavedModel, TFLite). Unset KERAS_BACKEND or set it to "
        "'tensorflow' before importing keras_suite."
    )
if os.environ.get("TF_USE_LEGACY_KERAS") == "1":
    raise ImportError(
        "TF_USE_LEGACY_KERAS=1 switches tf.keras to Keras 2 for the whole process and "
        "Keras Suite needs Keras 3. Unset TF_USE_LEGACY_KERAS and run again."
    )

_API = ("config", "train", "load", "presets", "app_names", "Run")


def __getattr__(name):
    # The API imports TensorFlow; keep `import keras_suite` (and `ksuite --help`) cheap.
    if name in _API:
        from keras_suite import api

        return getattr(api, name)
    raise AttributeError(f"module 'keras_suite' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API))
