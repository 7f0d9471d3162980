"""TFLite (LiteRT) conversion, quantization, parity reports and benchmarks."""

from keras_suite import common  # noqa: F401  (KERAS_BACKEND and quiet logs before any TensorFlow import)
