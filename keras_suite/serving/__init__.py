"""SavedModel export, TF Serving configs, the embedded server and clients."""

from keras_suite import common  # noqa: F401  (KERAS_BACKEND and quiet logs before any TensorFlow import)
