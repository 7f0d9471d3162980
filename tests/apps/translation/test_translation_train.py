"""Training the translator under MirroredStrategy gives the single-device losses: the loss
is averaged over the real target tokens of ALL replicas (replica_weighted_mean), even
though length bucketing gives replicas different numbers of real tokens."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT  # noqa: E402

pytestmark = pytest.mark.slow


def _train(run_dir: Path, strategy: str, cpu_devices: int = 0) -> list:
    overrides = ["train.epochs=1", "train.steps_per_epoch=6", "train.log_every_steps=1"]
    code = (
        "from keras_suite.common.run import train_run\n"
        f"train_run('translation', 'smoke', overrides={overrides!r}, strategy_name={strategy!r}, "
        f"cpu_devices={cpu_devices}, run_dir={str(run_dir)!r}, evaluate=False)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "KSUITE_PROGRESS": "0",
            "HOME": str(run_dir.parent),
        },
    )
    assert out.returncode == 0, out.stderr[-3000:]
    records = [
        json.loads(line) for line in (run_dir / "logs" / "metrics.jsonl").read_text().splitlines()
    ]
    return [r["loss"] for r in records if r.get("kind") == "step"]


def test_mirrored_losses_equal_single_device(tmp_path):
    single = _train(tmp_path / "single", "default")
    mirrored = _train(tmp_path / "mirrored", "mirrored", cpu_devices=2)
    assert len(single) == len(mirrored) == 6
    assert mirrored == pytest.approx(single, rel=1e-4, abs=1e-5)
