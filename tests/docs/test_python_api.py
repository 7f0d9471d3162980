"""docs/python-api.md runs as written, and the API's promises hold: typed configs that
refuse typos, coercion like --set, predict on in-memory inputs."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

import keras_suite as ks
from keras_suite.common.errors import UserError
from tests.helpers import ROOT, subprocess_env


def _doc_example() -> str:
    text = (ROOT / "docs" / "python-api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "docs/python-api.md has no python example"
    return blocks[0]


@pytest.mark.slow
def test_the_documented_notebook_example_runs_in_a_plain_python_process(tmp_path):
    script = tmp_path / "example.py"
    script.write_text(_doc_example())
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "runs" / "notebook"
    assert (run_dir / "metrics.json").is_file()
    assert (
        tmp_path / "runs" / "notebook-models" / "classification" / "1" / "saved_model.pb"
    ).is_file()
    assert (run_dir / "tflite" / "model_float32.tflite").is_file()
    assert (run_dir / "tflite" / "model_dynamic.tflite").is_file()
    assert "'smoke', 'default', 'full'" in proc.stdout
    # the run the API made is an ordinary run: the CLI's loader reads its preset back
    from keras_suite.common.registry import read_run_meta

    assert read_run_meta(run_dir)["preset"] == "custom"  # smoke with fields changed


def test_config_is_typed_and_a_typo_is_refused():
    cfg = ks.config("classification", preset="smoke")
    cfg.train.epoch = 3  # not a field
    with pytest.raises(UserError, match=r"cfg\.train\.epoch is not a config field.*epochs"):
        ks.api._checked("classification", cfg)


def test_config_fields_are_coerced_like_set_and_bad_values_refused():
    cfg = ks.config("classification", preset="smoke")
    cfg.train.epochs = "3"
    assert ks.api._checked("classification", cfg).train.epochs == 3
    cfg.train.epochs = "three"
    with pytest.raises(UserError, match="epochs"):
        ks.api._checked("classification", cfg)


def test_config_sections_override_like_a_yaml_file():
    cfg = ks.config("vae", "smoke", train={"epochs": 3})
    assert cfg.train.epochs == 3
    with pytest.raises(UserError):
        ks.config("vae", "smoke", train={"no_such_field": 1})


def test_a_config_that_is_not_an_apps_is_refused():
    with pytest.raises(UserError, match="not a Keras Suite app config"):
        ks.api._app_of(object())


def test_predict_on_numpy_strings_and_dicts(smoke_classification_run, tmp_path):
    run = ks.load(smoke_classification_run)
    size = run.info["image_size"]
    images = np.random.default_rng(1).uniform(0, 255, size=(3, size, size, 3))  # float64
    out = run.predict(images)
    assert out["probabilities"].shape == (3, len(run.info["class_names"]))
    np.testing.assert_allclose(out["probabilities"].sum(-1), 1.0, rtol=1e-5)
    # the same images through the dict form and through the Keras model agree
    same = run.predict({"images": images.astype(np.float32)})
    np.testing.assert_allclose(same["probabilities"], out["probabilities"], rtol=1e-6)
    model = run.models["model"]
    logits = np.asarray(model(images.astype(np.float32), training=False), np.float32)
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(out["probabilities"], expected, atol=1e-5)
    # a file path goes through the app's own predict_request (serve_bytes)
    from PIL import Image

    path = tmp_path / "x.png"
    Image.fromarray(images[0].astype(np.uint8)).save(path)
    assert run.predict(str(path))["class_names"].shape == (1,)
    with pytest.raises(UserError, match="predict"):
        run.predict(np.zeros((1, size + 1, size, 3)))  # wrong shape: one clear line
