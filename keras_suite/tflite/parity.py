"""Parity of a .tflite model with the Keras model it came from.

The reference is the target's own SavedModel signature run in TensorFlow (the Keras model
with its pre/post-processing, exactly what was converted). The app's `tflite_evaluate`
runs once on the reference and once per .tflite file over the same evaluation set, so
the app metric of each mode sits next to the Keras one, and every output of every call
is compared with the reference output for the same input.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from keras_suite import common
from keras_suite.common.errors import UserError
from keras_suite.tflite.runtime import LiteRTSignature, measure_latency

tf = common.quiet_import_tensorflow()


def _fingerprint(feeds: dict) -> str:
    digest = hashlib.sha1()
    for name in sorted(feeds):
        array = np.ascontiguousarray(feeds[name])
        digest.update(name.encode())
        digest.update(str(array.dtype).encode() + str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


class SavedModelSignature:
    """The reference: one SavedModel signature, called like a LiteRTSignature."""

    def __init__(self, saved_model_dir: str, signature: str):
        self._loaded = tf.saved_model.load(saved_model_dir)
        if signature not in self._loaded.signatures:
            raise UserError(
                f"{saved_model_dir} has no signature {signature!r} "
                f"(it has {', '.join(self._loaded.signatures)})"
            )
        self._fn = self._loaded.signatures[signature]

    def __call__(self, feeds: dict) -> dict:
        return {
            k: v.numpy()
            for k, v in self._fn(**{k: tf.constant(v) for k, v in feeds.items()}).items()
        }


@dataclass
class Recording:
    """Reference outputs by call order, plus the first inputs (used to time latency)."""

    outputs: list = field(default_factory=list)
    keys: list = field(default_factory=list)
    first_feeds: dict | None = None


def _record(run, recording: Recording):
    def run_signature(feeds: dict) -> dict:
        feeds = {k: np.asarray(v) for k, v in feeds.items()}
        if recording.first_feeds is None:
            recording.first_feeds = feeds
        out = run(feeds)
        recording.keys.append(_fingerprint(feeds))
        recording.outputs.append(out)
        return out

    return run_signature


class _Diff:
    """Running max and mean of |tflite - reference| over every output element."""

    def __init__(self):
        self.max, self.total, self.count = 0.0, 0.0, 0

    def add(self, got: dict, want: dict) -> None:
        for name, ref in want.items():
            if name not in got:
                raise UserError(f"the .tflite model has no output {name!r} (it has {sorted(got)})")
            if np.asarray(ref).dtype.kind not in "biuf":  # strings etc.: nothing to subtract
                continue
            a = np.asarray(got[name], np.float64).reshape(np.shape(ref))
            d = np.abs(a - np.asarray(ref, np.float64))
            self.max = max(self.max, float(d.max(initial=0.0)))
            self.total += float(d.sum())
            self.count += d.size

    def result(self) -> dict:
        return {"max_abs_diff": self.max, "mean_abs_diff": self.total / max(self.count, 1)}


def _compare(run, recording: Recording, reference, diff: _Diff):
    index = [0]

    def run_signature(feeds: dict) -> dict:
        feeds = {k: np.asarray(v) for k, v in feeds.items()}
        got = run(feeds)
        i = index[0]
        index[0] += 1
        if i < len(recording.keys) and recording.keys[i] == _fingerprint(feeds):
            want = recording.outputs[i]
        else:  # the evaluation set came in another order: ask the reference again
            want = reference(feeds)
        diff.add(got, want)
        return got

    return run_signature


def app_evaluate(app, run_signature, data, cfg, info, target) -> dict:
    """The app's tflite_evaluate for one target; its numeric results."""
    metrics = app.tflite_evaluate(
        run_signature=run_signature, data=data, cfg=cfg, info=info, target=target
    )
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float, np.number))}


def evaluate_reference(app, target, data, cfg, info) -> tuple[dict, Recording, SavedModelSignature]:
    reference = SavedModelSignature(target.saved_model_dir, target.signature)
    recording = Recording()
    metrics = app_evaluate(app, _record(reference, recording), data, cfg, info, target)
    return metrics, recording, reference


def evaluate_tflite(
    app,
    target,
    path,
    data,
    cfg,
    info,
    recording: Recording,
    reference,
    threads=(1, 2),
    latency_runs: int = 50,
) -> dict:
    """App metric, output differences and latency of one .tflite file."""
    run = LiteRTSignature(path, target.signature, num_threads=max(threads))
    diff = _Diff()
    metrics = app_evaluate(app, _compare(run, recording, reference, diff), data, cfg, info, target)
    latency = {}
    if recording.first_feeds is not None:
        for n in threads:
            latency[f"{n}_thread{'s' if n > 1 else ''}"] = measure_latency(
                path, target.signature, recording.first_feeds, n, runs=latency_runs
            )
    return {"metrics": metrics, **diff.result(), "io_types": run.io_types(), "latency": latency}
