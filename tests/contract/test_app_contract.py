"""The app contract, checked on every registered app: a new `apps/<name>/` folder is run
through the whole pipeline here the moment it exists.

    train (smoke) -> metrics.json -> evaluate -> export (warm-up; the SavedModel answers
    in a process with TensorFlow alone) -> convert float32 + int8, builtin ops only ->
    the parity report has the app's metric per mode -> `ksuite predict RUN_DIR INPUT...`

Each app is one test (its steps depend on each other), run through the CLI in-process.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from keras_suite.cli import main
from keras_suite.common.registry import APPS_DIR, app_names

pytestmark = pytest.mark.slow

REFERENCE_LAYOUT = (
    "__init__.py",
    "__main__.py",
    "config.py",
    "data.py",
    "model.py",
    "export.py",
    "app.py",
)

# Runs in a fresh interpreter, outside the repository, with TensorFlow (and TF Text, which
# stock tensorflow_model_server links) but none of the project's packages.
TF_ONLY_CHECK = r"""
import json, sys
import numpy as np
import tensorflow as tf
try:
    import tensorflow_text  # noqa: F401  (registers TF Text ops, as TF Serving links them)
except ImportError:
    pass
from tensorflow_serving.apis import prediction_log_pb2

export_dir = sys.argv[1]
loaded = tf.saved_model.load(export_dir)
assert "serving_default" in loaded.signatures, list(loaded.signatures)
answered = []
for record in tf.data.TFRecordDataset(export_dir + "/assets.extra/tf_serving_warmup_requests"):
    log = prediction_log_pb2.PredictionLog()
    log.ParseFromString(record.numpy())
    request = log.predict_log.request
    fn = loaded.signatures[request.model_spec.signature_name or "serving_default"]
    feeds = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
    out = fn(**{k: tf.constant(v) for k, v in feeds.items()})
    assert out, "no outputs"
    for name, value in out.items():
        value = value.numpy()
        if value.dtype.kind in "fc":
            assert np.all(np.isfinite(value)), (name, "not finite")
    answered.append(request.model_spec.signature_name or "serving_default")
project = sorted({m.split(".")[0] for m in sys.modules} & {"keras_suite"})
print(json.dumps({"answered": answered, "project_modules": project}))
"""


def _scalars(metrics: dict) -> dict:
    return {
        k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def test_every_app_follows_the_reference_layout():
    for name in app_names():
        missing = [f for f in REFERENCE_LAYOUT if not (APPS_DIR / name / f).exists()]
        assert not missing, f"apps/{name} lacks {missing} (docs/adding-an-app.md)"


def test_app_packages_import_without_tensorflow():
    """`ksuite --help` reads every app's package and commands: neither may import TF."""
    code = (
        "import sys, importlib; from keras_suite.common.registry import app_names\n"
        "for n in app_names():\n"
        "    importlib.import_module('keras_suite.apps.' + n)\n"
        "from keras_suite.cli import build_parser; build_parser()\n"
        "print('tensorflow' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=APPS_DIR.parent,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("app_name", app_names())
def test_app_runs_the_whole_pipeline(app_name, tmp_path, capsys):
    from keras_suite.common.registry import get_app
    from keras_suite.common.run import read_run

    run_dir = tmp_path / "run"
    # -- train ------------------------------------------------------------------------
    assert main(["train", app_name, "--preset", "smoke", "--run-dir", str(run_dir)]) == 0
    trained = json.loads((run_dir / "metrics.json").read_text())
    assert _scalars(trained), f"{app_name}: metrics.json has no scalar metric"
    assert all(math.isfinite(v) for v in _scalars(trained).values()), trained
    records = [
        json.loads(line) for line in (run_dir / "logs" / "metrics.jsonl").read_text().splitlines()
    ]
    assert records, "nothing logged to logs/metrics.jsonl"
    app = get_app(app_name)
    assert vars(app) == {}, f"{app_name}: the APP object keeps state {sorted(vars(app))}"

    # -- evaluate (reloads the run from disk) --------------------------------------------
    assert main(["evaluate", str(run_dir)]) == 0
    evaluated = json.loads((run_dir / "metrics.json").read_text())
    assert set(_scalars(evaluated)) == set(_scalars(trained))

    # -- export ------------------------------------------------------------------------
    base = tmp_path / "models"
    assert main(["export", str(run_dir), "--base", str(base), "--name", app_name]) == 0
    version = base / app_name / "1"
    assert (version / "saved_model.pb").exists()
    assert (version / "assets.extra" / "tf_serving_warmup_requests").stat().st_size > 0
    check = subprocess.run(
        [sys.executable, "-c", TF_ONLY_CHECK, str(version)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "2", "HOME": str(tmp_path)},
    )
    assert check.returncode == 0, check.stderr[-3000:]
    answered = json.loads(check.stdout.strip().splitlines()[-1])
    assert answered["answered"] and answered["project_modules"] == []

    # -- convert: float32 and int8, builtin ops only, parity report with the app metric --
    assert (
        main(
            [
                "convert",
                str(run_dir),
                "--quantize",
                "float32,int8",
                "--calibration-samples",
                "16",
                "--latency-runs",
                "2",
            ]
        )
        == 0
    )
    report = json.loads((run_dir / "tflite" / "report.json").read_text())
    assert report["targets"], "the parity report has no target"
    for target in report["targets"]:
        keras_metrics = target["keras"]["metrics"]
        assert keras_metrics, f"{target['name']}: tflite_evaluate returned no metric"
        modes = {row["mode"]: row for row in target["modes"]}
        assert {"float32", "int8"} <= set(modes), sorted(modes)
        for mode, row in modes.items():
            assert "error" not in row, row.get("error")
            assert row["flex_ops"] == [], (
                f"{target['name']} {mode} needs Select-TF ops {row['flex_ops']}"
            )
            assert set(row["metrics"]) == set(keras_metrics), (mode, row["metrics"], keras_metrics)
            assert all(math.isfinite(v) for v in row["metrics"].values()), row["metrics"]

    # -- predict on the app's own example inputs -----------------------------------------
    run = read_run(run_dir)
    examples = app.predict_examples(
        data=run.datasets(), info=run.info, cfg=run.cfg, out_dir=tmp_path / "examples"
    )
    assert examples, f"{app_name}: predict_examples gave no input"
    out = tmp_path / "predictions"
    capsys.readouterr()
    assert main(["predict", str(run_dir), *examples, "--out", str(out)]) == 0
    predictions = json.loads((out / "predictions.json").read_text())
    assert predictions["outputs"], "predict returned no outputs"
    assert vars(app) == {}, f"{app_name}: the APP object keeps state {sorted(vars(app))}"
