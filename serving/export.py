"""Export a finished run as a TF-Serving-ready, versioned SavedModel.

    BASE/NAME/<version>/saved_model.pb
                        variables/
                        assets.extra/tf_serving_warmup_requests   (TFRecord of PredictionLog)
                        assets.extra/ksuite_export.json           (provenance, signatures)

Each version is written to a hidden temporary folder next to its final place, checked
(a `serving_default` signature, only ops stock tensorflow_model_server has, warm-up
requests that run), and then renamed into place: a server polling BASE/NAME only ever
sees complete versions, because TF Serving ignores folder names that are not integers.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable

import common
from common.errors import UserError
from serving.savedmodel import (DEFAULT_SIGNATURE, INIT_OP_SIGNATURE, WARMUP_RELPATH,
                                describe_signatures, signature_defs, version_dirs)

# TF Serving reads at most this many warm-up records per model version.
MAX_WARMUP_RECORDS = 1000


def next_version(model_dir: str | Path) -> int:
    versions = version_dirs(model_dir)
    return max(versions) + 1 if versions else 1


def _predict_request(model_name: str, signature: str, inputs: dict, sig_def):
    """A PredictRequest whose tensors have exactly the signature's dtypes."""
    import numpy as np
    from tensorflow_serving.apis import predict_pb2

    from serving.tensors import array_to_tensor_proto, check_shape, numpy_dtype

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    missing = set(sig_def.inputs) - set(inputs)
    extra = set(inputs) - set(sig_def.inputs)
    if missing or extra:
        raise UserError(f"sample request for signature {signature!r} has inputs {sorted(inputs)} but "
                        f"the signature takes {sorted(sig_def.inputs)}; fix the app's sample_requests")
    for key, value in inputs.items():
        info = sig_def.inputs[key]
        array = np.asarray(value)
        want = numpy_dtype(info.dtype)
        if want == object:
            if array.dtype.kind not in "OSU":
                raise UserError(f"sample input {signature}/{key} is {array.dtype}, the signature wants strings")
        elif array.dtype != want:
            raise UserError(f"sample input {signature}/{key} is {array.dtype}, the signature wants "
                            f"{want}; cast it in the app's sample_requests")
        check_shape(array, info, key)
        request.inputs[key].CopyFrom(array_to_tensor_proto(array))
    return request


def write_warmup_file(export_dir: str | Path, model_name: str, samples: dict) -> int:
    """Write assets.extra/tf_serving_warmup_requests from {signature: [inputs, ...]}."""
    tf = common.quiet_import_tensorflow()
    from tensorflow_serving.apis import prediction_log_pb2

    sigs = signature_defs(export_dir)
    logs = []
    for signature, requests in samples.items():
        if signature not in sigs:
            raise UserError(f"sample requests name signature {signature!r}, which the export does not "
                            f"have (it has {sorted(s for s in sigs if s != INIT_OP_SIGNATURE)})")
        for inputs in requests:
            request = _predict_request(model_name, signature, inputs, sigs[signature])
            logs.append(prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)))
    logs = logs[:MAX_WARMUP_RECORDS]
    path = Path(export_dir) / WARMUP_RELPATH
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for log in logs:
            writer.write(log.SerializeToString())
    return len(logs)


def read_warmup_file(path: str | Path) -> list:
    tf = common.quiet_import_tensorflow()
    from tensorflow_serving.apis import prediction_log_pb2

    logs = []
    for record in tf.data.TFRecordDataset(str(path)).take(MAX_WARMUP_RECORDS):
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(record.numpy())
        logs.append(log)
    return logs


def run_warmup_in_process(export_dir: str | Path) -> int:
    """Replay the warm-up file against the SavedModel loaded in this process, as the
    server will at load time; a request that fails here would fail the server's load."""
    from serving.servable import Servable

    servable = Servable.load("export-check", 0, Path(export_dir), warmup=True)
    return servable.warmup_count


def publish_version(base: str | Path, name: str, write_saved_model: Callable[[Path], None],
                    samples: dict | None = None, version: int | None = None,
                    provenance: dict | None = None, check_ops: bool = True) -> Path:
    """Write one model version through a temporary folder and an atomic rename.

    write_saved_model(tmp_dir) writes the SavedModel; samples are the warm-up requests
    {signature: [{input: array}, ...]}. Returns the final version directory.
    """
    from serving.opcheck import check_export_ops

    if not name or "/" in name or name.startswith("."):
        raise UserError(f"model name {name!r} is not usable as a folder name; pass --name NAME")
    model_dir = Path(base) / name
    model_dir.mkdir(parents=True, exist_ok=True)
    if version is None:
        version = next_version(model_dir)
    if version < 1:
        raise UserError(f"--version {version}: TF Serving versions are positive integers")
    final = model_dir / str(version)
    if final.exists():
        raise UserError(f"{final} already exists; refusing to overwrite a published version. "
                        f"Omit --version to use the next free one ({next_version(model_dir)})")
    tmp = model_dir / f".tmp-{version}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        write_saved_model(tmp)
        sigs = signature_defs(tmp)
        if DEFAULT_SIGNATURE not in sigs:
            raise UserError(f"the export has no {DEFAULT_SIGNATURE!r} signature (it has "
                            f"{sorted(sigs)}); TF Serving clients call it when they name none")
        ops = check_export_ops(tmp) if check_ops else []
        warmup = write_warmup_file(tmp, name, samples) if samples else 0
        if warmup:
            run_warmup_in_process(tmp)
        info = dict(provenance or {}, model_name=name, version=version, warmup_records=warmup,
                    signatures=describe_signatures(sigs), ops=ops)
        (tmp / "assets.extra").mkdir(exist_ok=True)
        (tmp / "assets.extra" / "ksuite_export.json").write_text(json.dumps(info, indent=2) + "\n")
        if final.exists():  # another exporter won the race
            raise UserError(f"{final} appeared while exporting; refusing to overwrite it")
        os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def export_run(run_dir: str | Path, base: str | Path, name: str | None = None,
               version: int | None = None) -> Path:
    """Export the run in `run_dir` to BASE/NAME/<version>; returns the version directory."""
    from common.run import load_run

    meta_path = Path(run_dir) / "run.json"
    if meta_path.exists():  # refuse an existing version before the slow model rebuild
        name = name or json.loads(meta_path.read_text()).get("app")
        if name and version is not None and (Path(base) / name / str(version)).exists():
            raise UserError(f"{Path(base) / name / str(version)} already exists; refusing to overwrite a "
                            f"published version. Omit --version to use the next free one "
                            f"({next_version(Path(base) / name)})")
    run = load_run(run_dir)
    name = name or run.app.name
    archive = run.app.export_archive(run.state, run.info, run.cfg)
    samples = run.app.sample_requests(run.datasets(), run.info, run.cfg)
    return publish_version(
        base, name, lambda tmp: archive.write_out(str(tmp), verbose=False), samples=samples,
        version=version, provenance={"app": run.app.name, "run_dir": str(Path(run_dir).resolve())})
