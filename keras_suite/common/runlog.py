"""Run logging: a JSON-lines file, TensorBoard scalars and progress bars.

Only the chief worker writes; other workers get a logger whose methods do nothing.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from pathlib import Path

from keras_suite import common

tf = common.quiet_import_tensorflow()

log = logging.getLogger("ksuite")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (tests and tqdm swap it)."""

    def emit(self, record):
        self.stream = sys.stderr
        super().emit(record)


def setup_logging(level: str = "INFO") -> None:
    if not log.handlers:
        handler = _StderrHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False


def _plain(value):
    if hasattr(value, "numpy"):
        value = value.numpy()
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class RunLogger:
    """Writes `logs/metrics.jsonl` and `logs/tensorboard/` under a run directory."""

    def __init__(self, run_dir: str | Path | None):
        self.enabled = run_dir is not None
        if not self.enabled:
            return
        logs = Path(run_dir) / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(logs / "metrics.jsonl", "a", buffering=1)
        self._writers = {}
        self._tb_dir = logs / "tensorboard"

    def write(self, record: dict, tb_prefix: str | None = None, step: int | None = None) -> None:
        if not self.enabled:
            return
        record = {k: _plain(v) for k, v in record.items()}
        record.setdefault("time", round(time.time(), 3))
        self._jsonl.write(json.dumps(record) + "\n")
        if tb_prefix is not None and step is not None:
            writer = self._writers.get(tb_prefix)
            if writer is None:
                writer = self._writers[tb_prefix] = tf.summary.create_file_writer(
                    str(self._tb_dir / tb_prefix)
                )
            with writer.as_default(step=step):
                for k, v in record.items():
                    if (
                        isinstance(v, (int, float))
                        and not isinstance(v, bool)
                        and k not in ("step", "epoch", "time")
                    ):
                        tf.summary.scalar(k, v)
            writer.flush()

    def drop_after(self, step: int) -> int:
        """Remove records of steps after `step` (work lost with a kill and redone after the
        resume), so metrics.jsonl never holds a step twice. Returns how many went."""
        if not self.enabled:
            return 0
        path = Path(self._jsonl.name)
        self._jsonl.close()
        records = read_jsonl(path)
        keep = [r for r in records if not (isinstance(r.get("step"), int) and r["step"] > step)]
        if len(keep) != len(records):
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
            os.replace(tmp, path)
        self._jsonl = open(path, "a", buffering=1)
        return len(records) - len(keep)

    def write_once(self, record: dict, tb_prefix: str, step: int) -> None:
        """Write an epoch record unless metrics.jsonl already has that epoch's."""
        if not self.enabled:
            return
        logged = read_jsonl(self._jsonl.name)
        if not any(
            r.get("kind") == "epoch" and r.get("epoch") == record.get("epoch") for r in logged
        ):
            self.write(record, tb_prefix, step)

    def close(self) -> None:
        if self.enabled:
            self._jsonl.close()
            for w in self._writers.values():
                w.close()


def read_jsonl(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
    return rows


def progress(
    total: int | None, desc: str, enabled: bool = True, unit: str = "step", initial: int = 0
):
    """A tqdm bar on an interactive terminal (KSUITE_PROGRESS=1 forces it on)."""
    from tqdm.auto import tqdm

    force = os.environ.get("KSUITE_PROGRESS")
    disable = (not enabled) or (force == "0") or (force != "1" and not sys.stderr.isatty())
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        initial=initial,
        disable=disable,
        dynamic_ncols=True,
        leave=False,
        file=sys.stderr,
    )


def write_json_atomic(path: str | Path, data) -> None:
    """Write JSON through a temporary file and a rename: a kill never leaves half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_plain) + "\n")
    os.replace(tmp, path)
