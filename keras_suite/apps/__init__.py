"""The applications; each folder exposes `APP`, an `keras_suite.common.app.App`."""

from keras_suite import common  # noqa: F401  (KERAS_BACKEND and quiet logs before any TensorFlow import)
