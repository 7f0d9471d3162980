"""`ksuite convert` / `ksuite tflite-eval` on a trained classification run, every mode.

The smoke preset alone stays near chance (~12% on 8 classes) after its 2 epochs, which
would make "int8 within 1 point of float32" meaningless, so the run trains a little
longer on more data (1-2 minutes on 2 cores) to reach roughly 50% top-1 — a model with
many borderline predictions, where quantization error would show.
"""

import json

import pytest

from keras_suite.cli import main as ksuite
from keras_suite.common.run import train_run
from keras_suite.tflite.convert import MODES

pytestmark = pytest.mark.slow

# 512 validation images give the int8 calibration 300 samples; 1024 test images keep
# the top-1 comparison from hinging on two or three borderline images.
NUM_TEST = 1024
OVERRIDES = [
    "train.epochs=10",
    "data.num_train=2048",
    "data.num_val=512",
    f"data.num_test={NUM_TEST}",
    "model.base_filters=16",
    "model.blocks=[1,1,1]",
]


@pytest.fixture(scope="module")
def converted_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tflite-cls") / "run"
    metrics = train_run("classification", preset="smoke", overrides=OVERRIDES, run_dir=run_dir)
    status = ksuite(
        [
            "convert",
            str(run_dir),
            "--quantize",
            "all",
            "--io",
            "int8",
            "--calibration-samples",
            "300",
            "--latency-runs",
            "3",
        ]
    )
    assert status == 0
    report = json.loads((run_dir / "tflite" / "report.json").read_text())
    return run_dir, metrics, report


def _rows(report):
    (target,) = report["targets"]
    return target, {row["mode"]: row for row in target["modes"]}


def test_every_mode_written_with_metadata_and_labels(converted_run):
    run_dir, _, report = converted_run
    out = run_dir / "tflite"
    info = json.loads((run_dir / "info.json").read_text())
    for mode in MODES:
        meta = json.loads((out / f"model_{mode}.json").read_text())
        assert (out / f"model_{mode}.tflite").stat().st_size == meta["size_bytes"] > 0
        assert meta["mode"] == mode and meta["signature"] == "serving_default"
        assert meta["labels"] == info["class_names"] and meta["flex_ops"] == []
        assert [i["name"] for i in meta["inputs"]] == ["images"]
        assert meta["inputs"][0]["shape"] == [1, info["image_size"], info["image_size"], 3]
    int8 = json.loads((out / "model_int8.json").read_text())
    assert int8["io_type"] == "int8" and int8["inputs"][0]["dtype"] == "int8"
    assert int8["outputs"][0]["dtype"] == "int8" and int8["inputs"][0]["quantization"]["scale"] > 0
    assert int8["calibration_samples"] == 300
    assert (out / "labels.txt").read_text().split() == info["class_names"]
    assert not list(out.glob("*.tmp"))
    for name in ("report.json", "report.md", "report.png"):
        assert (out / name).stat().st_size > 0
    assert "| int8 | int8 |" in (out / "report.md").read_text()


def test_parity_float32_matches_and_int8_within_one_point(converted_run):
    _, metrics, report = converted_run
    target, rows = _rows(report)
    assert set(rows) == set(MODES)
    keras_top1 = target["keras"]["metrics"]["top1"]
    # The exported signature gives the same top-1 as App.evaluate on the same test set...
    assert abs(keras_top1 - metrics["top1"]) <= 2 / NUM_TEST
    # ...and the model learnt something, so a quantization error would show in top-1.
    assert keras_top1 >= 0.3, f"smoke model too weak for a parity check: top1 {keras_top1}"
    assert rows["float32"]["max_abs_diff"] <= 1e-4
    assert abs(rows["float32"]["metrics"]["top1"] - keras_top1) <= 2 / NUM_TEST
    assert abs(rows["int8"]["metrics"]["top1"] - rows["float32"]["metrics"]["top1"]) <= 0.01
    assert rows["int8"]["io_types"]["images"] == "int8"
    for mode, row in rows.items():
        assert "error" not in row, row
        assert row["size_ratio"] <= 1.0 if mode != "float32" else row["size_ratio"] == 1.0
        for key in ("1_thread", "2_threads"):
            assert 0 < row["latency"][key]["p50_ms"] <= row["latency"][key]["p95_ms"]
        assert abs(row["metrics"]["top1"] - keras_top1) <= 0.05, (mode, row["metrics"])


def test_tflite_eval_subset_of_modes(converted_run):
    run_dir, _, _ = converted_run
    assert (
        ksuite(["tflite-eval", str(run_dir), "--modes", "float32,int8", "--latency-runs", "2"]) == 0
    )
    report = json.loads((run_dir / "tflite" / "report.json").read_text())
    _, rows = _rows(report)
    assert list(rows) == ["float32", "int8"]


def test_cli_errors_are_one_line(converted_run, tmp_path, capsys):
    run_dir, _, _ = converted_run
    assert ksuite(["convert", str(tmp_path / "missing")]) == 2
    assert "not a Keras Suite run directory" in capsys.readouterr().err
    assert ksuite(["convert", str(run_dir), "--quantize", "int4"]) == 2
    assert "not a mode" in capsys.readouterr().err
    assert ksuite(["convert", str(run_dir), "--quantize", "float16", "--io", "uint8"]) == 2
    assert "--io uint8 is not available" in capsys.readouterr().err
    assert ksuite(["tflite-eval", str(run_dir), "--out", str(tmp_path)]) == 2
    assert "no .tflite files" in capsys.readouterr().err
