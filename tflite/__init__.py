"""TFLite (LiteRT) conversion, quantization, parity reports and benchmarks."""
import common

common.quiet_import_tensorflow()
