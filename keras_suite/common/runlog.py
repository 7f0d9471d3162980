"""Run logging: a JSON-lines file, TensorBoard summaries and progress inside epochs.

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
            writer = self.writer(tb_prefix)
            with writer.as_default(step=step):
                for k, v in record.items():
                    if (
                        isinstance(v, (int, float))
                        and not isinstance(v, bool)
                        and k not in ("step", "epoch", "time")
                    ):
                        tf.summary.scalar(k, v)
            writer.flush()

    @property
    def tensorboard_dir(self) -> Path | None:
        return self._tb_dir if self.enabled else None

    def writer(self, tb_prefix: str = ""):
        """The summary writer of logs/tensorboard/<tb_prefix> ("" = the folder itself),
        or None on a worker that does not log."""
        if not self.enabled:
            return None
        writer = self._writers.get(tb_prefix)
        if writer is None:
            writer = self._writers[tb_prefix] = tf.summary.create_file_writer(
                str(self._tb_dir / tb_prefix) if tb_prefix else str(self._tb_dir)
            )
        return writer

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


def bars_wanted() -> bool:
    """Progress bars on an interactive terminal: stderr is a tty, or KSUITE_PROGRESS=1
    forces them on; KSUITE_PROGRESS=0 turns them off (tests, CI)."""
    force = os.environ.get("KSUITE_PROGRESS")
    if force in ("0", "1"):
        return force == "1"
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def progress(
    total: int | None, desc: str, enabled: bool = True, unit: str = "step", initial: int = 0
):
    """A tqdm bar on an interactive terminal (see `bars_wanted`)."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        initial=initial,
        disable=not (enabled and bars_wanted()),
        dynamic_ncols=True,
        leave=False,
        file=sys.stderr,
    )


def _clock(seconds: float) -> str:
    seconds = int(round(max(seconds, 0.0)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class EpochProgress:
    """Progress inside one training epoch.

    On a terminal: a tqdm bar (steps done/total, rate, ETA) with the epoch's running
    metrics and examples/s. Without one (a log file, CI, KSUITE_PROGRESS=0): an INFO line
    every `every_seconds` seconds, or every `every_steps` steps when every_seconds is 0,
    with the same numbers. A worker that does not log (`enabled=False`) shows nothing.
    """

    def __init__(
        self,
        total: int,
        desc: str,
        *,
        enabled: bool = True,
        initial: int = 0,
        batch_size: int = 1,
        every_seconds: float = 30.0,
        every_steps: int = 0,
    ):
        self.total, self.desc, self.batch_size = total, desc, batch_size
        self.done = self.initial = initial
        self.every_seconds, self.every_steps = every_seconds, every_steps
        self.bar = progress(total, desc, enabled, initial=initial) if bars_wanted() else None
        self.lines = enabled and self.bar is None
        self.t0 = self.last_line = time.perf_counter()

    def update(self, running: dict) -> None:
        """One more step done; `running`: the epoch's mean of each metric so far."""
        self.done += 1
        now = time.perf_counter()
        steps_per_sec = (self.done - self.initial) / max(now - self.t0, 1e-9)
        rate = steps_per_sec * self.batch_size
        shown = {k: f"{v:.4f}" for k, v in running.items()}
        if self.bar is not None:
            self.bar.set_postfix({**shown, "ex/s": f"{rate:.0f}"}, refresh=False)
            self.bar.update(1)
            return
        if not self.lines or self.done >= self.total:
            return  # the epoch line follows at once
        if self.every_seconds > 0:
            due = now - self.last_line >= self.every_seconds
        else:
            due = bool(self.every_steps) and self.done % self.every_steps == 0
        if due:
            self.last_line = now
            eta = (self.total - self.done) / max(steps_per_sec, 1e-9)
            log.info(
                "%s: step %d/%d, %.0f ex/s, %s, ETA %s",
                self.desc,
                self.done,
                self.total,
                rate,
                ", ".join(f"{k} {v}" for k, v in shown.items()),
                _clock(eta),
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def write_json_atomic(path: str | Path, data) -> None:
    """Write JSON through a temporary file and a rename: a kill never leaves half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_plain) + "\n")
    os.replace(tmp, path)
