"""RUN_DIR -> RUN_DIR/tflite/: conversion of every app target, metadata, parity report.

Layout written here (one target per app is the common case):
    tflite/model_<mode>.tflite     the converted model (<target>_<mode>.tflite when an
                                   app has several targets)
    tflite/model_<mode>.json       metadata: signature, I/O names/shapes/dtypes and
                                   quantization, ops used, labels, versions
    tflite/labels.txt              class names, one a line (apps that have them)
    tflite/report.{json,md,png}    parity report over every converted mode
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from keras_suite import common
from keras_suite.common.errors import UserError
from keras_suite.common.runlog import log, progress, write_json_atomic
from keras_suite.tflite import report as report_lib
from keras_suite.tflite.convert import (
    DEFAULT_CALIBRATION_SAMPLES,
    IO_TYPES,
    MODES,
    check_mode,
    convert,
)

tf = common.quiet_import_tensorflow()


def resolve_modes(spec: str | list) -> list:
    names = (
        spec if isinstance(spec, list) else [s.strip() for s in str(spec).split(",") if s.strip()]
    )
    if names == ["all"]:
        return list(MODES)
    for name in names:
        if name not in MODES:
            raise UserError(
                f"--quantize {name!r} is not a mode; use one of {', '.join(MODES)} or all "
                "(several: --quantize int8,float16)"
            )
    return [m for m in MODES if m in names]  # canonical order, float32 first


def io_for(mode: str, io_type: str) -> str:
    """--io applies to the modes that accept it; the others keep float32 I/O."""
    return io_type if io_type in IO_TYPES[mode] else "float32"


def file_stem(target, targets) -> str:
    return "model" if len(targets) == 1 else target.name


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _versions() -> dict:
    import importlib.metadata as md

    return {"tensorflow": tf.__version__, "ai_edge_litert": md.version("ai-edge-litert")}


def _tensor_details(details: dict) -> list:
    out = []
    for name, d in details.items():
        scale, zero_point = d["quantization"]
        out.append(
            {
                "name": name,
                "shape": [int(x) for x in d["shape"]],
                "dtype": np.dtype(d["dtype"]).name,
                "quantization": {"scale": float(scale), "zero_point": int(zero_point)}
                if scale
                else None,
            }
        )
    return out


def _metadata(run, target, conversion, path: Path, calibration_requested: int) -> dict:
    from keras_suite.tflite.runtime import LiteRTSignature

    meta = {
        "app": run.app.name,
        "target": target.name,
        "signature": target.signature,
        "mode": conversion.mode,
        "io_type": conversion.io_type,
        "file": path.name,
        "size_bytes": path.stat().st_size,
        "sha256": hashlib.sha256(conversion.model).hexdigest(),
        "ops": conversion.ops,
        "flex_ops": conversion.flex_ops,
        "calibration_samples": conversion.calibration_samples
        if conversion.mode in ("int8", "int16x8")
        else 0,
        "calibration_samples_requested": calibration_requested
        if conversion.mode in ("int8", "int16x8")
        else 0,
        "labels": run.info.get("class_names"),
        "info": run.info,
        "source_run": str(run.run_dir),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **_versions(),
    }
    try:
        runner = LiteRTSignature(conversion.model, target.signature, num_threads=1)
        meta["inputs"], meta["outputs"] = (
            _tensor_details(runner.inputs),
            _tensor_details(runner.outputs),
        )
        dynamic = [
            n for n, d in runner.inputs.items() if any(int(x) < 0 for x in d["shape_signature"])
        ]
        # docs/design.md §8: dynamic dims break Conv2D conversion and slow every runtime.
        if dynamic:
            log.warning(
                "%s: input(s) %s have dynamic dimensions; TFLite targets should use fixed shapes",
                path.name,
                ", ".join(dynamic),
            )
    except UserError as error:  # Flex models do not load in this interpreter
        meta["inputs"] = meta["outputs"] = None
        meta["load_error"] = str(error)
    return meta


class _Prepared:
    """A loaded run, its datasets and its TFLite targets (SavedModels in a temp folder).
    The datasets are read only if the app's hooks use them (a DQN policy's do not)."""

    def __init__(self, run_dir, data_path: str | None = None):
        from keras_suite.common.run import load_run

        self.run = load_run(run_dir, data_path=data_path)
        self.data = self.run.lazy_datasets()
        self.workdir = tempfile.mkdtemp(prefix="ksuite-tflite-")
        try:
            self.targets = self.run.app.tflite_targets(
                state=self.run.state, data=self.data, cfg=self.run.cfg, workdir=self.workdir
            )
        except NotImplementedError:
            self.close()
            raise UserError(
                f"the {self.run.app.name} app has no TFLite targets yet; it cannot be converted"
            ) from None
        if not self.targets:
            self.close()
            raise UserError(f"the {self.run.app.name} app returned no TFLite targets")

    def close(self):
        shutil.rmtree(self.workdir, ignore_errors=True)


def convert_run(
    run_dir,
    modes="all",
    io_type: str = "float32",
    allow_flex: bool = False,
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES,
    out_dir=None,
    evaluate: bool = True,
    latency_runs: int = 50,
    data_path: str | None = None,
) -> dict:
    """Convert every target of a run in the given modes; then write the parity report.
    `data_path`: where the run's data is now, if it moved since training."""
    modes = resolve_modes(modes)
    if io_type not in ("float32", "int8", "uint8", "int16"):
        raise UserError(
            f"--io {io_type!r}: use float32, int8 or uint8 (int8 mode) or int16 (int16x8 mode)"
        )
    if not any(io_type in IO_TYPES[m] for m in modes):
        check_mode(modes[0], io_type)  # raises the explanation
    out_dir = Path(out_dir) if out_dir else Path(run_dir) / "tflite"
    prepared = _Prepared(run_dir, data_path)  # before any folder: bad input writes nothing
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        targets = prepared.targets
        jobs = [(t, m) for t in targets for m in modes]
        # float32 is the baseline for sizes and differences: make sure it exists.
        for t in targets:
            if (
                "float32" not in modes
                and not (out_dir / f"{file_stem(t, targets)}_float32.tflite").exists()
            ):
                jobs.insert(0, (t, "float32"))
        bar = progress(len(jobs), "converting", unit="model")
        for target, mode in jobs:
            bar.set_postfix_str(f"{target.name} {mode}")
            conversion = convert(
                target.saved_model_dir,
                target.signature,
                mode,
                io_for(mode, io_type),
                target.representative_data,
                allow_flex,
                calibration_samples,
            )
            path = out_dir / f"{file_stem(target, targets)}_{mode}.tflite"
            _write_bytes_atomic(path, conversion.model)
            write_json_atomic(
                path.with_suffix(".json"),
                _metadata(prepared.run, target, conversion, path, calibration_samples),
            )
            if conversion.flex_ops:
                log.warning(
                    "%s uses Select-TF (Flex) ops %s: most edge runtimes (and the LiteRT "
                    "interpreter here) cannot run it without the Flex delegate",
                    path.name,
                    ", ".join(conversion.flex_ops),
                )
            log.info("wrote %s (%.1f KB)", path, path.stat().st_size / 1024)
            written.append(path)
            bar.update(1)
        bar.close()
        labels = prepared.run.info.get("class_names")
        if labels:
            tmp = out_dir / "labels.txt.tmp"
            tmp.write_text("".join(f"{name}\n" for name in labels))
            os.replace(tmp, out_dir / "labels.txt")
        result = {"files": [str(p) for p in written]}
        if evaluate:
            result["report"] = _evaluate(prepared, out_dir, latency_runs=latency_runs)
        return result
    finally:
        prepared.close()


def evaluate_run(
    run_dir, out_dir=None, modes=None, latency_runs: int = 50, data_path: str | None = None
) -> dict:
    """Parity report over the .tflite files already in RUN_DIR/tflite."""
    out_dir = Path(out_dir) if out_dir else Path(run_dir) / "tflite"
    if not any(out_dir.glob("*.tflite")):
        raise UserError(
            f"no .tflite files in {out_dir}; run `ksuite convert {run_dir} --quantize all` first"
        )
    prepared = _Prepared(run_dir, data_path)
    try:
        return _evaluate(prepared, out_dir, resolve_modes(modes) if modes else None, latency_runs)
    finally:
        prepared.close()


def _keras_metrics_json(run_dir: Path, names) -> dict:
    path = Path(run_dir) / "metrics.json"
    if not path.exists():
        return {}
    metrics = json.loads(path.read_text())
    return {k: metrics[k] for k in names if isinstance(metrics.get(k), (int, float))}


def _evaluate(prepared: _Prepared, out_dir: Path, modes=None, latency_runs: int = 50) -> dict:
    from keras_suite.tflite import parity

    run, data, targets = prepared.run, prepared.data, prepared.targets
    report = {
        "app": run.app.name,
        "run_dir": str(run.run_dir),
        **_versions(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "targets": [],
    }
    for target in targets:
        stem = file_stem(target, targets)
        files = [(m, out_dir / f"{stem}_{m}.tflite") for m in (modes or MODES)]
        files = [(m, p) for m, p in files if p.exists()]
        if not files:
            continue
        log.info("evaluating the Keras reference (%s) on the evaluation set", target.name)
        keras_metrics, recording, reference = parity.evaluate_reference(
            run.app, target, data, run.cfg, run.info
        )
        entry = {
            "name": target.name,
            "signature": target.signature,
            "keras": {"metrics": keras_metrics},
            "evaluation_split": target.evaluation_split,
            "calibration_split": target.calibration_split,
            "modes": [],
        }
        float32_size = out_dir / f"{stem}_float32.tflite"
        float32_size = float32_size.stat().st_size if float32_size.exists() else None
        bar = progress(len(files), f"evaluating {target.name}", unit="model")
        for mode, path in files:
            meta_path = path.with_suffix(".json")
            meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
            row = {
                "mode": mode,
                "io_type": meta.get("io_type", "float32"),
                "file": path.name,
                "size_bytes": path.stat().st_size,
                "size_ratio": path.stat().st_size / float32_size if float32_size else None,
                "flex_ops": meta.get("flex_ops", []),
            }
            try:
                row.update(
                    parity.evaluate_tflite(
                        run.app,
                        target,
                        path,
                        data,
                        run.cfg,
                        run.info,
                        recording,
                        reference,
                        latency_runs=latency_runs,
                    )
                )
            except UserError as error:
                row["error"] = str(error)
                log.warning("%s: %s", path.name, error)
            entry["modes"].append(row)
            bar.update(1)
        bar.close()
        report["targets"].append(entry)
    names = [k for t in report["targets"] for k in t["keras"]["metrics"]]
    report["keras_metrics_json"] = _keras_metrics_json(run.run_dir, names)
    report_lib.check_parity(report, run.app.parity_tolerance)
    paths = report_lib.write(report, out_dir)
    print(report_lib.markdown(report))
    log.info("report: %s, %s, %s", *paths.values())
    return report
