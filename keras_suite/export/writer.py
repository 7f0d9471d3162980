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
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable

from keras_suite.common.errors import UserError
from keras_suite.export.signatures import (
    DEFAULT_SIGNATURE,
    describe_signatures,
    signature_defs,
    version_dirs,
)
from keras_suite.export.warmup import MAX_WARMUP_RECORDS, read_warmup_file, write_warmup_file  # noqa: F401 (re-exported)

log = logging.getLogger("ksuite.serving")


def next_version(model_dir: str | Path) -> int:
    versions = version_dirs(model_dir)
    return max(versions) + 1 if versions else 1


def run_warmup_in_process(export_dir: str | Path) -> int:
    """Replay the warm-up file against the SavedModel loaded in this process, as the
    server will at load time; a request that fails here would fail the server's load."""
    from keras_suite.serving.servable import Servable

    servable = Servable.load("export-check", 0, Path(export_dir), warmup=True)
    return servable.warmup_count


def publish_version(
    base: str | Path,
    name: str,
    write_saved_model: Callable[[Path], None],
    samples: dict | None = None,
    version: int | None = None,
    provenance: dict | None = None,
    check_ops: bool = True,
) -> Path:
    """Write one model version through a temporary folder and an atomic rename.

    write_saved_model(tmp_dir) writes the SavedModel; samples are the warm-up requests
    {signature: [{input: array}, ...]}. Returns the final version directory.
    """
    from keras_suite.export.opcheck import check_export_ops

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
        raise UserError(
            f"{final} already exists; refusing to overwrite a published version. "
            f"Omit --version to use the next free one ({next_version(model_dir)})"
        )
    previous = [p.stat().st_mtime for p in version_dirs(model_dir).values()]
    tmp = model_dir / f".tmp-{version}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        write_saved_model(tmp)
        sigs = signature_defs(tmp)
        if DEFAULT_SIGNATURE not in sigs:
            raise UserError(
                f"the export has no {DEFAULT_SIGNATURE!r} signature (it has "
                f"{sorted(sigs)}); TF Serving clients call it when they name none"
            )
        ops = check_export_ops(tmp) if check_ops else []
        warmup = write_warmup_file(tmp, name, samples) if samples else 0
        if warmup:
            run_warmup_in_process(tmp)
        info = dict(
            provenance or {},
            model_name=name,
            version=version,
            warmup_records=warmup,
            signatures=describe_signatures(sigs),
            ops=ops,
        )
        (tmp / "assets.extra").mkdir(exist_ok=True)
        (tmp / "assets.extra" / "ksuite_export.json").write_text(json.dumps(info, indent=2) + "\n")
        if final.exists():  # another exporter won the race
            raise UserError(f"{final} appeared while exporting; refusing to overwrite it")
        os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if previous:
        remove_stale_tmp(model_dir, max(previous))
    return final


def remove_stale_tmp(model_dir: Path, older_than: float) -> list[Path]:
    """Remove `.tmp-*` folders last changed before `older_than` (the newest earlier export):
    exports killed mid-write. A newer one may be another export still running: kept."""
    removed = []
    for path in model_dir.glob(".tmp-*"):
        try:
            if path.is_dir() and path.stat().st_mtime < older_than:
                shutil.rmtree(path)
                removed.append(path)
        except OSError as exc:  # raced with its own exporter's cleanup, or not ours to remove
            log.warning("could not remove the stale export folder %s: %s", path, exc)
    for path in removed:
        log.info("removed %s, left by an export that did not finish", path)
    return removed


def export_run(
    run_dir: str | Path,
    base: str | Path,
    name: str | None = None,
    version: int | None = None,
    data_path: str | None = None,
) -> Path:
    """Export the run in `run_dir` to BASE/NAME/<version>; returns the version directory.
    `data_path`: where the run's data is now, if it moved (only apps whose warm-up requests
    come from the data read it)."""
    from keras_suite.common.registry import read_run_meta
    from keras_suite.common.run import load_run

    if (
        Path(run_dir) / "run.json"
    ).exists():  # refuse an existing version before the slow model rebuild
        name = name or read_run_meta(run_dir)["app"]
        if name and version is not None and (Path(base) / name / str(version)).exists():
            raise UserError(
                f"{Path(base) / name / str(version)} already exists; refusing to overwrite a "
                f"published version. Omit --version to use the next free one "
                f"({next_version(Path(base) / name)})"
            )
    run = load_run(run_dir, data_path=data_path)
    name = name or run.app.name
    archive = run.app.export_archive(
        state=run.state, info=run.info, cfg=run.cfg, artifacts=run.artifacts
    )
    samples = run.app.sample_requests(data=run.lazy_datasets(), info=run.info, cfg=run.cfg)
    return publish_version(
        base,
        name,
        lambda tmp: archive.write_out(str(tmp), verbose=False),
        samples=samples,
        version=version,
        provenance={"app": run.app.name, "run_dir": str(Path(run_dir).resolve())},
    )
