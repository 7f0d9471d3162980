"""Convert a SavedModel signature to a .tflite flatbuffer in one of five modes.

Modes (the converter's own post-training quantization, see docs/tflite.md for why):
    float32   no quantization; the reference every other mode is compared with
    dynamic   int8 weights, float activations quantized on the fly per op
    float16   float16 weights, dequantized to float32 at load time on CPU
    int8      full integer: int8 weights and activations, calibrated on real samples;
              I/O float32 (quantize/dequantize inside) or int8/uint8 (caller quantizes)
    int16x8   int16 activations, int8 weights (more accurate than int8, slow on CPU)

Builtin ops only unless `allow_flex`: a graph that needs Select-TF (Flex) ops fails with a
UserError naming them, because edge runtimes ship without the Flex delegate.
"""

from __future__ import annotations

import itertools
import re
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

import numpy as np

from keras_suite import common
from keras_suite.common.errors import UserError
from keras_suite.tflite.runtime import muted_native_output

tf = common.quiet_import_tensorflow()

MODES = ("float32", "dynamic", "float16", "int8", "int16x8")
#: I/O types each mode can be asked for; the first is the default.
IO_TYPES = {
    "float32": ("float32",),
    "dynamic": ("float32",),
    "float16": ("float32",),
    "int8": ("float32", "int8", "uint8"),
    "int16x8": ("float32", "int16"),
}
CALIBRATING_MODES = ("int8", "int16x8")
DEFAULT_CALIBRATION_SAMPLES = 300


@dataclass
class Conversion:
    """A converted model and what is in it."""

    mode: str
    io_type: str
    model: bytes
    ops: dict = field(default_factory=dict)  # op name -> number of uses
    flex_ops: list = field(default_factory=list)
    calibration_samples: int = 0


def check_mode(mode: str, io_type: str) -> None:
    if mode not in MODES:
        raise UserError(f"--quantize {mode!r} is not a mode; use one of {', '.join(MODES)} or all")
    if io_type not in IO_TYPES[mode]:
        raise UserError(
            f"--io {io_type} is not available for {mode} (it takes "
            f"{' or '.join(IO_TYPES[mode])}); full-integer I/O needs --quantize int8"
        )


# ---- reading a flatbuffer -------------------------------------------------------------
def _builtin_names() -> dict:
    from ai_edge_litert import schema_py_generated as schema

    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def model_ops(model: bytes) -> dict:
    """{op name: uses} over every subgraph: builtins by name, custom/Flex ops by their code."""
    from ai_edge_litert import schema_py_generated as schema

    root = schema.Model.GetRootAs(model, 0)
    names = _builtin_names()
    codes = []
    for i in range(root.OperatorCodesLength()):
        code = root.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        custom = code.CustomCode()
        codes.append(custom.decode() if custom else names.get(builtin, f"BUILTIN_{builtin}"))
    counts: dict = {}
    for s in range(root.SubgraphsLength()):
        graph = root.Subgraphs(s)
        for o in range(graph.OperatorsLength()):
            name = codes[graph.Operators(o).OpcodeIndex()]
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def flex_ops(ops: dict) -> list:
    """TensorFlow op names that a model runs through the Flex delegate."""
    return sorted(name[len("Flex") :] for name in ops if name.startswith("Flex"))


# ---- conversion -------------------------------------------------------------------------
def _calibration_dataset(
    representative_data: Callable[[], Iterable[dict]], limit: int, counter: list
) -> Callable:
    """The converter's representative_dataset: at most `limit` float32 samples.

    counter[0] ends as the samples in one pass (int16x8 calibration makes two passes)."""

    def generate():
        seen = 0
        for sample in itertools.islice(representative_data(), limit):
            seen += 1
            counter[0] = max(counter[0], seen)
            yield {
                k: np.asarray(v, np.float32) if np.asarray(v).dtype.kind == "f" else np.asarray(v)
                for k, v in sample.items()
            }

    return generate


def _make_converter(
    saved_model_dir: str,
    signature: str,
    mode: str,
    io_type: str,
    allow_flex: bool,
    dataset: Optional[Callable],
):
    converter = tf.lite.TFLiteConverter.from_saved_model(
        saved_model_dir, signature_keys=[signature]
    )
    builtins = tf.lite.OpsSet.TFLITE_BUILTINS
    if mode != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if mode in CALIBRATING_MODES:
        converter.representative_dataset = dataset
    if mode == "int8":
        builtins = tf.lite.OpsSet.TFLITE_BUILTINS_INT8
    if mode == "int16x8":
        builtins = tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
    if io_type != "float32":
        converter.inference_input_type = getattr(tf, io_type)
        converter.inference_output_type = getattr(tf, io_type)
    converter.target_spec.supported_ops = [builtins] + (
        [tf.lite.OpsSet.SELECT_TF_OPS] if allow_flex else []
    )
    return converter


def _listed_ops(message: str, heading: str) -> list:
    """Op names from the converter's summary lines, e.g. 'TF Select ops: Sinh, Cholesky'."""
    names = []
    for match in re.finditer(rf"^{heading}: (.+)$", message, re.MULTILINE):
        names += [n.strip() for n in match.group(1).split(",") if n.strip()]
    return sorted(set(names))


def _first_error_line(message: str) -> str:
    for line in message.splitlines():
        if "error:" in line:
            return line.split("error:", 1)[1].strip()[:300]
    return message.strip().splitlines()[0][:300] if message.strip() else "unknown converter error"


def _explain_failure(
    error: Exception, saved_model_dir: str, signature: str, mode: str, allow_flex: bool
) -> UserError:
    """Turn a ConverterError into a one-line message naming the ops that are to blame."""
    message = str(error)
    custom = _listed_ops(message, "Custom ops")
    select = _listed_ops(message, "TF Select ops")
    if select and not allow_flex:
        # Confirm by converting with Flex allowed and reading the ops it really used.
        try:
            probe = _make_converter(saved_model_dir, signature, "float32", "float32", True, None)
            with muted_native_output():
                select = flex_ops(model_ops(probe.convert())) or select
        except Exception:  # noqa: BLE001 - the probe only refines the list
            pass
        return UserError(
            f"{signature} needs TensorFlow ops with no TFLite builtin kernel: {', '.join(select)}. "
            "Replace them in the model (the app's tflite target) or pass --allow-flex to bundle "
            "them as Select-TF (Flex) ops, which most edge runtimes cannot run"
        )
    if custom or select:
        return UserError(
            f"{signature} uses ops that neither TFLite builtins nor Flex can run: "
            f"{', '.join(custom + select)}. Rewrite that part of the model with supported ops"
        )
    return UserError(
        f"TFLite conversion ({mode}) of {saved_model_dir} [{signature}] failed: "
        f"{_first_error_line(message)}"
    )


def convert(
    saved_model_dir: str,
    signature: str = "serving_default",
    mode: str = "float32",
    io_type: str = "float32",
    representative_data: Optional[Callable] = None,
    allow_flex: bool = False,
    num_calibration: int = DEFAULT_CALIBRATION_SAMPLES,
) -> Conversion:
    """Convert one signature of an ExportArchive SavedModel (fixed input shapes)."""
    from tensorflow.lite.python.convert_phase import ConverterError

    check_mode(mode, io_type)
    counter = [0]
    dataset = None
    if mode in CALIBRATING_MODES:
        if representative_data is None:
            raise UserError(
                f"{mode} needs calibration samples but the target has no "
                "representative_data; use --quantize dynamic or float16"
            )
        if num_calibration < 1:
            raise UserError("--calibration-samples must be at least 1 (a few hundred is typical)")
        dataset = _calibration_dataset(representative_data, num_calibration, counter)
    try:
        converter = _make_converter(saved_model_dir, signature, mode, io_type, allow_flex, dataset)
        with warnings.catch_warnings(), muted_native_output():
            # The calibrator runs tf.lite.Interpreter internally and warns that it is deprecated.
            warnings.simplefilter("ignore", UserWarning)
            model = converter.convert()
    except ConverterError as error:
        raise _explain_failure(error, saved_model_dir, signature, mode, allow_flex) from None
    except (OSError, ValueError) as error:
        raise UserError(f"cannot convert {saved_model_dir} [{signature}]: {error}") from None
    except (
        RuntimeError
    ) as error:  # the quantizer refuses an op in this mode (e.g. SQUARE in int16x8)
        raise UserError(
            f"TFLite {mode} quantization of {saved_model_dir} [{signature}] failed: "
            f"{_first_error_line(str(error))} Use another --quantize mode for this model "
            "(int8, dynamic or float16)"
        ) from None
    if mode in CALIBRATING_MODES and counter[0] == 0:
        raise UserError(f"{mode} calibration got no samples from the target's representative_data")
    ops = model_ops(model)
    return Conversion(
        mode=mode,
        io_type=io_type,
        model=model,
        ops=ops,
        flex_ops=flex_ops(ops),
        calibration_samples=counter[0],
    )
