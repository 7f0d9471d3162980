"""The VAE step under MirroredStrategy on two logical CPUs (its own process): the logged
values are global means (summed replica parts), and free bits' all-reduce runs."""

import json
import math

import pytest

from tests.helpers import run_ksuite

pytestmark = pytest.mark.slow


def test_mirrored_vae_logs_global_means(tmp_path):
    run_dir = tmp_path / "mirrored"
    proc = run_ksuite(
        "train",
        "vae",
        "--preset",
        "smoke",
        "--strategy",
        "mirrored",
        "--cpu-devices",
        "2",
        "--run-dir",
        str(run_dir),
        "--set",
        "model.free_bits=0.25",
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((run_dir / "run.json").read_text())["replicas"] == 2
    epochs = [
        json.loads(line)
        for line in (run_dir / "logs" / "metrics.jsonl").read_text().splitlines()
        if '"kind": "epoch"' in line
    ]
    # 16 steps per epoch, warm-up over 10: the mean weight of epoch 1 is (0.1 + ... + 1.0 + 6) / 16.
    # Each replica reports its share; summed over the two they must give the weight, not twice it.
    assert epochs[0]["kl_weight"] == pytest.approx((5.5 + 6) / 16, rel=1e-5)
    for record in epochs:
        assert record["neg_elbo"] == pytest.approx(record["recon"] + record["kl"], rel=1e-4)
        assert record["bits_per_dim"] == pytest.approx(
            record["neg_elbo"] / (256 * math.log(2)), rel=1e-4
        )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["neg_iwae"] <= metrics["neg_elbo_on_iwae_examples"] < 256 * math.log(2)
