"""The classification app end to end through serving: `ksuite export` of a trained smoke
run, then the conformance checks on that export (embedded server always, real
tensorflow_model_server when TFS_BINARY is set), and `ksuite predict`."""

from __future__ import annotations

import argparse
import base64
import json

import numpy as np
import pytest
import requests

from tests.helpers import ROOT
from tests.serving.helpers import start_embedded, start_tfs

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        not (ROOT / "keras_suite" / "apps" / "classification" / "app.py").exists(),
        reason="apps/classification not present",
    ),
]


@pytest.fixture(scope="module")
def exported(smoke_classification_run, tmp_path_factory):
    """`ksuite export RUN_DIR --base BASE` (in-process CLI): (base, version dir, printed text)."""
    import contextlib
    import io

    from keras_suite.cli import main

    base = tmp_path_factory.mktemp("exports")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["export", str(smoke_classification_run), "--base", str(base)]) == 0
    return base, base / "classification" / "1", printed.getvalue()


@pytest.fixture(scope="module")
def samples(exported):
    """The warm-up requests export wrote: 2 images as float arrays and as PNG bytes."""
    import tensorflow as tf

    from keras_suite.export.signatures import WARMUP_RELPATH
    from keras_suite.export.writer import read_warmup_file

    out = {}
    for log in read_warmup_file(exported[1] / WARMUP_RELPATH):
        req = log.predict_log.request
        out[req.model_spec.signature_name] = {k: tf.make_ndarray(v) for k, v in req.inputs.items()}
    return out


@pytest.fixture(scope="module")
def local(exported):
    from keras_suite.serving.servable import Servable

    return Servable.load("classification", 1, exported[1], warmup=False)


@pytest.fixture(scope="module", params=["embedded", "tfs"])
def target(request, exported, tmp_path_factory):
    base = exported[0]
    if request.param == "embedded":
        target = start_embedded(
            model_name="classification",
            model_base_path=str(base / "classification"),
            file_system_poll_wait_seconds=0,
        )
    else:
        from keras_suite.serving.configs import ModelEntry, write_models_config

        config = write_models_config(
            tmp_path_factory.mktemp("cfg") / "models.config",
            [ModelEntry("classification", str(base / "classification"))],
        )
        target = start_tfs(config)
    try:
        yield target
    finally:
        target.stop()


def test_export_layout_and_provenance(exported, smoke_classification_run):
    base, version_dir, _ = exported
    assert version_dir == base / "classification" / "1"
    info = json.loads((version_dir / "assets.extra" / "ksuite_export.json").read_text())
    assert info["app"] == "classification" and info["warmup_records"] == 2
    assert any(
        line.startswith("serve_bytes (predict): image_bytes: string[N]")
        for line in info["signatures"]
    )
    assert "DecodePng" in info["ops"] or "DecodeImage" in info["ops"]


def test_status_and_metadata(target):
    client = target.rest()
    (status,) = client.status("classification")["model_version_status"]
    assert status["state"] == "AVAILABLE" and status["status"]["error_code"] == "OK"
    sigs = client.metadata("classification")["metadata"]["signature_def"]["signature_def"]
    default, by_bytes = sigs["serving_default"], sigs["serve_bytes"]
    assert default["inputs"]["images"]["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in default["inputs"]["images"]["tensor_shape"]["dim"]] == [
        "-1",
        "32",
        "32",
        "3",
    ]
    assert by_bytes["inputs"]["image_bytes"]["dtype"] == "DT_STRING"
    for sig in (default, by_bytes):
        assert {k: v["dtype"] for k, v in sig["outputs"].items()} == {
            "probabilities": "DT_FLOAT",
            "class_ids": "DT_INT64",
            "class_names": "DT_STRING",
        }


def test_row_and_columnar_predict_match_in_process(target, samples, local):
    images = samples["serving_default"]["images"]
    expected = local.predict("", {"images": images})[1]
    rows = requests.post(
        target.rest_url + "/v1/models/classification:predict",
        json={"instances": images.tolist()},
        timeout=60,
    ).json()["predictions"]
    np.testing.assert_array_equal(
        np.array([r["probabilities"] for r in rows], np.float32), expected["probabilities"]
    )
    assert [r["class_names"] for r in rows] == [n.decode() for n in expected["class_names"]]
    cols = target.rest().predict("classification", {"images": images})
    np.testing.assert_array_equal(cols["probabilities"], expected["probabilities"])
    np.testing.assert_array_equal(cols["class_ids"], expected["class_ids"])


def test_serve_bytes_with_b64_png(target, samples, local):
    encoded = samples["serve_bytes"]["image_bytes"]
    expected = local.predict("serve_bytes", {"image_bytes": encoded})[1]
    body = {
        "signature_name": "serve_bytes",
        "instances": [{"b64": base64.b64encode(b).decode()} for b in encoded],
    }
    rows = requests.post(
        target.rest_url + "/v1/models/classification:predict", json=body, timeout=60
    ).json()["predictions"]
    np.testing.assert_array_equal(
        np.array([r["probabilities"] for r in rows], np.float32), expected["probabilities"]
    )
    out = target.grpc().predict(
        "classification", {"image_bytes": encoded}, signature_name="serve_bytes"
    )
    np.testing.assert_array_equal(out["probabilities"], expected["probabilities"])
    assert list(out["class_names"]) == list(expected["class_names"])


def test_serving_matches_the_keras_model(smoke_classification_run, samples, target):
    from keras_suite.common.run import load_run

    run = load_run(smoke_classification_run)
    images = samples["serving_default"]["images"]
    keras_probs = np.asarray(run.state.model(images, training=False))
    keras_probs = np.exp(keras_probs - keras_probs.max(-1, keepdims=True))
    keras_probs /= keras_probs.sum(-1, keepdims=True)
    served = target.grpc().predict("classification", {"images": images})["probabilities"]
    np.testing.assert_allclose(served, keras_probs, rtol=1e-4, atol=1e-6)


def test_wrong_image_size_and_undecodable_bytes_are_400(target):
    r = requests.post(
        target.rest_url + "/v1/models/classification:predict",
        json={"instances": np.zeros((1, 16, 16, 3)).tolist()},
        timeout=60,
    )
    assert r.status_code == 400 and "error" in r.json()
    r = requests.post(
        target.rest_url + "/v1/models/classification:predict",
        json={
            "signature_name": "serve_bytes",
            "instances": [{"b64": base64.b64encode(b"not an image").decode()}],
        },
        timeout=60,
    )
    assert r.status_code == 400 and "error" in r.json()


def _predict_args(**kw):
    defaults = dict(
        inputs=[],
        run=None,
        export=None,
        server=None,
        out="predictions",
        model=None,
        version=None,
        label=None,
        signature="",
        grpc=False,
        timeout=30.0,
        input_json=None,
    )
    defaults.update(kw)
    return argparse.Namespace(**defaults)


def test_ksuite_predict_local_and_against_the_server(
    target, exported, samples, smoke_classification_run, tmp_path
):
    from keras_suite.predict import run_predict

    paths = []
    for i, data in enumerate(samples["serve_bytes"]["image_bytes"]):
        path = tmp_path / f"img{i}.png"
        path.write_bytes(data)
        paths.append(str(path))
    local_out = tmp_path / "local"
    assert (
        run_predict(_predict_args(inputs=paths, export=str(exported[1]), out=str(local_out))) == 0
    )
    remote_out = tmp_path / "remote"
    server = target.grpc_target
    assert (
        run_predict(
            _predict_args(
                inputs=paths,
                run=str(smoke_classification_run),
                server=server,
                grpc=True,
                model="classification",
                out=str(remote_out),
            )
        )
        == 0
    )
    run_out = tmp_path / "run"
    assert (
        run_predict(
            _predict_args(inputs=paths, run=str(smoke_classification_run), out=str(run_out))
        )
        == 0
    )
    local_pred = json.loads((local_out / "predictions.json").read_text())
    remote_pred = json.loads((remote_out / "predictions.json").read_text())
    assert json.loads((run_out / "predictions.json").read_text()) == local_pred
    assert local_pred["signature_name"] == "serve_bytes"
    assert local_pred["outputs"]["class_names"] == remote_pred["outputs"]["class_names"]
    np.testing.assert_array_equal(
        local_pred["outputs"]["probabilities"], remote_pred["outputs"]["probabilities"]
    )
    assert (remote_out / "predictions.png").exists()  # the app's render_predictions hook


def test_ksuite_export_command_output_and_refusal(exported, smoke_classification_run, capsys):
    from keras_suite.cli import main

    base, version_dir, printed = exported
    assert f"exported {version_dir}" in printed
    assert "serving_default (predict): images: float[N,32,32,3]" in printed
    assert "serve_bytes (predict): image_bytes: string[N]" in printed
    assert (
        main(["export", str(smoke_classification_run), "--base", str(base), "--version", "1"]) == 2
    )
    assert "already exists" in capsys.readouterr().err
    assert sorted(p.name for p in (base / "classification").iterdir()) == ["1"]
