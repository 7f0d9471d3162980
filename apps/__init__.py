"""The applications; each folder exposes `APP`, an `common.app.App`."""
import common  # noqa: F401  (KERAS_BACKEND and quiet logs before any TensorFlow import)
