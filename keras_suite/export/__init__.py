"""Writing a finished run as a TF-Serving-ready SavedModel, and reading SavedModels back
the way TF Serving sees them (signatures, ops, warm-up records).

Layering: apps -> export -> tflite / serving. Nothing here starts a server.
"""

from keras_suite import common  # noqa: F401
