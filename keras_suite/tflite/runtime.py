"""Running a .tflite signature in the LiteRT interpreter (ai_edge_litert).

`LiteRTSignature` takes and returns float arrays whatever the model's I/O type: for
int8/uint8/int16 I/O it quantizes inputs and dequantizes outputs with the scale and zero
point stored in the model, the way an app on a device would. Apps' `tflite_evaluate`
therefore work on every mode unchanged.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

import numpy as np

from keras_suite import common  # noqa: F401  (environment before TensorFlow)
from keras_suite.common.errors import UserError


@contextlib.contextmanager
def muted_native_output():
    """Silence what the converter and interpreter print from C++ ("fully_quantize: 0, ...",
    "Created TensorFlow Lite XNNPACK delegate") by pointing fds 1 and 2 at /dev/null.
    Python exceptions still carry their messages; KSUITE_TF_VERBOSE=1 keeps everything."""
    if os.environ.get("KSUITE_TF_VERBOSE") == "1":
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved + [devnull]:
            os.close(fd)


def _quantize(value: np.ndarray, detail: dict) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    if dtype.kind not in "iu" or scale == 0 or np.asarray(value).dtype == dtype:
        return np.asarray(value, dtype)
    info = np.iinfo(dtype)
    q = np.round(np.asarray(value, np.float32) / scale + zero_point)
    return np.clip(q, info.min, info.max).astype(dtype)


def _dequantize(value: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    if np.asarray(value).dtype.kind in "iu" and scale != 0:
        return (value.astype(np.float32) - zero_point) * np.float32(scale)
    return value


class LiteRTSignature:
    """One signature of a .tflite model, callable as run({name: array}) -> {name: array}."""

    def __init__(
        self, model_path_or_bytes, signature: str = "serving_default", num_threads: int = 2
    ):
        from ai_edge_litert.interpreter import Interpreter

        source = (
            {"model_content": bytes(model_path_or_bytes)}
            if isinstance(model_path_or_bytes, (bytes, bytearray))
            else {"model_path": str(model_path_or_bytes)}
        )
        try:
            with muted_native_output():
                self.interpreter = Interpreter(num_threads=num_threads, **source)
                # Prepare every node now, so a model this runtime cannot run fails here.
                self.interpreter.allocate_tensors()
                self.runner = self.interpreter.get_signature_runner(signature)
        except (RuntimeError, ValueError) as error:
            text = str(error)
            if "Select TensorFlow op" in text or "Flex" in text:
                raise UserError(
                    "this model contains Select-TF (Flex) ops and the LiteRT "
                    "interpreter here has no Flex delegate; it cannot run it "
                    "(convert without --allow-flex to get a runnable model)"
                ) from None
            raise UserError(
                f"LiteRT cannot load signature {signature!r}: {text.splitlines()[0]}"
            ) from None
        self.inputs = self.runner.get_input_details()
        self.outputs = self.runner.get_output_details()

    def io_types(self) -> dict:
        return {
            name: np.dtype(d["dtype"]).name for name, d in {**self.inputs, **self.outputs}.items()
        }

    def __call__(self, feeds: dict) -> dict:
        missing = set(self.inputs) - set(feeds)
        if missing:
            raise UserError(
                f"missing TFLite input(s) {sorted(missing)}; the model takes {sorted(self.inputs)}"
            )
        raw = self.runner(**{name: _quantize(feeds[name], d) for name, d in self.inputs.items()})
        return {name: _dequantize(np.asarray(v), self.outputs[name]) for name, v in raw.items()}


def measure_latency(
    model_path,
    signature: str,
    feeds: dict,
    num_threads: int,
    runs: int = 50,
    warmup: int = 5,
    max_seconds: float = 10.0,
) -> dict:
    """Per-inference wall time in ms (p50/p95/mean) after warm-up.

    Stops early after `max_seconds` (int16x8 runs on slow reference kernels) but always
    times at least 5 invocations.
    """
    run = LiteRTSignature(model_path, signature, num_threads)
    feeds = {k: _quantize(v, run.inputs[k]) for k, v in feeds.items()}
    for _ in range(warmup):
        run.runner(**feeds)
    times = []
    start = time.perf_counter()
    while len(times) < runs and (len(times) < 5 or time.perf_counter() - start < max_seconds):
        t0 = time.perf_counter()
        run.runner(**feeds)
        times.append((time.perf_counter() - t0) * 1e3)
    times = np.asarray(times)
    return {
        "threads": num_threads,
        "runs": int(len(times)),
        "p50_ms": float(np.percentile(times, 50)),
        "p95_ms": float(np.percentile(times, 95)),
        "mean_ms": float(times.mean()),
    }
