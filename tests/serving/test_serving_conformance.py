"""TF Serving conformance: the same checks against the embedded server and, when TFS_BINARY
is set, against a real tensorflow_model_server serving the same models.config.

Models (tests/serving/helpers.py model_store): `toy` versions 1 and 2 (Keras 3 via
ExportArchive: serving_default, serve_text, multiply, echo_bytes; labels stable=1,
canary=2; policy all) and `ex` (classify/regress signatures on serialized tf.Example).
"""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import requests

from keras_suite.client.clients import ServingClientError
from tests.serving.helpers import model_store, start_embedded, start_tfs, write_models_config

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

MAX_BODY = 1 << 20
X = np.array([[0.5, -1.0, 2.0, 0.0], [1.0, 1.0, 1.0, 1.0], [-2.0, 0.3, 0.1, 0.7]], np.float32)


@pytest.fixture(scope="module", params=["embedded", "tfs"])
def target(request, tmp_path_factory):
    base = model_store()
    config = write_models_config(tmp_path_factory.mktemp("cfg") / "models.config", base)
    if request.param == "embedded":
        from keras_suite.serving.configs import write_monitoring_config

        monitoring = write_monitoring_config(config.parent / "monitoring.config")
        target = start_embedded(
            model_config_file=str(config),
            file_system_poll_wait_seconds=0,
            monitoring_config_file=str(monitoring),
            max_request_bytes=MAX_BODY,
        )
    else:
        target = start_tfs(config)
    try:
        yield target
    finally:
        target.stop()


@pytest.fixture(scope="module")
def local():
    """In-process inference on the same SavedModels: the reference results."""
    from keras_suite.serving.servable import Servable

    base = model_store()
    return {v: Servable.load("toy", v, base / "toy" / str(v), warmup=False) for v in (1, 2)}


def post(target, path, body):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return requests.post(target.rest_url + path, data=data, timeout=60)


# ---- status and metadata -------------------------------------------------------------------
def test_status_lists_both_versions_available(target):
    doc = target.rest().status("toy")
    states = {int(v["version"]): v for v in doc["model_version_status"]}
    assert set(states) == {1, 2}
    for v in states.values():
        assert v["state"] == "AVAILABLE"
        assert v["status"]["error_code"] == "OK"


def test_status_of_version_and_label(target):
    client = target.rest()
    assert [v["version"] for v in client.status("toy", version=1)["model_version_status"]] == ["1"]
    assert [v["version"] for v in client.status("toy", label="canary")["model_version_status"]] == [
        "2"
    ]


def test_grpc_status(target):
    from tensorflow_serving.apis import get_model_status_pb2

    response = target.grpc().status("toy", version=2)
    (status,) = response.model_version_status
    assert status.version == 2
    assert status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert status.status.error_code == 0


def test_rest_metadata_has_every_signature_with_names_and_dtypes(target):
    doc = target.rest().metadata("toy", version=1)
    assert doc["model_spec"]["name"] == "toy" and doc["model_spec"]["version"] == "1"
    sigs = doc["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "serve_text", "multiply", "echo_bytes"} <= set(sigs)
    default = sigs["serving_default"]
    assert default["method_name"] == "tensorflow/serving/predict"
    assert default["inputs"]["features"]["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in default["inputs"]["features"]["tensor_shape"]["dim"]] == ["-1", "4"]
    assert default["outputs"]["class_ids"]["dtype"] == "DT_INT64"
    assert sigs["serve_text"]["inputs"]["text"]["dtype"] == "DT_STRING"


def test_grpc_metadata(target):
    sigs = target.grpc().metadata("ex")
    assert sigs["classify_x"].method_name == "tensorflow/serving/classify"
    assert sigs["regress_x"].method_name == "tensorflow/serving/regress"
    assert set(sigs["serving_default"].inputs) == {"x"}


# ---- predict ------------------------------------------------------------------------------------
def test_row_format_predict_matches_in_process(target, local):
    r = post(target, "/v1/models/toy/versions/1:predict", {"instances": X.tolist()})
    assert r.status_code == 200, r.text
    rows = r.json()["predictions"]
    expected = local[1].predict("", {"features": X})[1]
    assert len(rows) == 3 and set(rows[0]) == {"probabilities", "class_ids"}
    np.testing.assert_array_equal(
        np.array([row["probabilities"] for row in rows], np.float32), expected["probabilities"]
    )
    assert [row["class_ids"] for row in rows] == expected["class_ids"].tolist()


def test_columnar_predict_named_and_bare(target, local):
    expected = local[1].predict("", {"features": X})[1]
    named = post(
        target, "/v1/models/toy/versions/1:predict", {"inputs": {"features": X.tolist()}}
    ).json()
    bare = post(target, "/v1/models/toy/versions/1:predict", {"inputs": X.tolist()}).json()
    for doc in (named, bare):
        np.testing.assert_array_equal(
            np.array(doc["outputs"]["probabilities"], np.float32), expected["probabilities"]
        )
        assert doc["outputs"]["class_ids"] == expected["class_ids"].tolist()


def test_single_output_signature_returns_a_list(target, local):
    body = {"signature_name": "serve_text", "instances": ["1,2,3,4", "0,0,1,0"]}
    rows = post(target, "/v1/models/toy/versions/1:predict", body).json()["predictions"]
    expected = local[1].predict("serve_text", {"text": np.array([b"1,2,3,4", b"0,0,1,0"], object)})[
        1
    ]["scores"]
    assert isinstance(rows, list) and isinstance(rows[0], list)
    np.testing.assert_array_equal(np.array(rows, np.float32), expected)
    cols = post(
        target,
        "/v1/models/toy/versions/1:predict",
        {"signature_name": "serve_text", "inputs": ["1,2,3,4"]},
    ).json()["outputs"]
    assert isinstance(cols, list) and len(cols) == 1


def test_multi_input_signature_row_and_columnar(target):
    rows = post(
        target,
        "/v1/models/toy:predict",
        {
            "signature_name": "multiply",
            "instances": [{"a": [1.0, 2.0], "b": 3}, {"a": [0.5, -1.0], "b": -2}],
        },
    ).json()["predictions"]
    assert rows == [[3.0, 6.0], [-1.0, 2.0]]
    cols = post(
        target,
        "/v1/models/toy:predict",
        {"signature_name": "multiply", "inputs": {"a": [[1.0, 2.0]], "b": [4]}},
    ).json()["outputs"]
    assert cols == [[4.0, 8.0]]


def test_b64_bytes_in_and_out(target):
    payload = bytes(range(256))
    body = {
        "signature_name": "echo_bytes",
        "instances": [
            {"b64": base64.b64encode(payload).decode()},
            {"b64": base64.b64encode(b"ok").decode()},
        ],
    }
    rows = post(target, "/v1/models/toy:predict", body).json()["predictions"]
    assert rows[0]["length"] == 256 and rows[1]["length"] == 2
    # Output names ending in _bytes come back base64-encoded.
    assert base64.b64decode(rows[0]["payload_bytes"]["b64"]) == payload


def test_version_and_label_routing(target, local):
    client = target.rest()
    for version in (1, 2):
        out = client.predict("toy", {"features": X}, version=version)
        np.testing.assert_array_equal(
            out["probabilities"], local[version].predict("", {"features": X})[1]["probabilities"]
        )
    np.testing.assert_array_equal(
        client.predict("toy", {"features": X}, label="stable")["probabilities"],
        client.predict("toy", {"features": X}, version=1)["probabilities"],
    )
    np.testing.assert_array_equal(
        client.predict("toy", {"features": X}, label="canary")["probabilities"],
        client.predict("toy", {"features": X}, version=2)["probabilities"],
    )
    # No version: the latest available.
    np.testing.assert_array_equal(
        client.predict("toy", {"features": X})["probabilities"],
        local[2].predict("", {"features": X})[1]["probabilities"],
    )
    assert not np.array_equal(
        local[1].predict("", {"features": X})[1]["probabilities"],
        local[2].predict("", {"features": X})[1]["probabilities"],
    )


def test_grpc_predict_signature_version_label(target, local):
    client = target.grpc()
    out = client.predict("toy", {"features": X}, version=1)
    np.testing.assert_array_equal(
        out["probabilities"], local[1].predict("", {"features": X})[1]["probabilities"]
    )
    out = client.predict(
        "toy",
        {"a": np.ones((2, 2), np.float32), "b": np.array([2, 5], np.int32)},
        signature_name="multiply",
        label="canary",
    )
    np.testing.assert_array_equal(out["product"], [[2, 2], [5, 5]])
    out = client.predict(
        "toy", {"payload_bytes": np.array([b"\x00\x01\xff"], object)}, signature_name="echo_bytes"
    )
    assert out["payload_bytes"][0] == b"\x00\x01\xff" and out["length"][0] == 3
    filtered = client.predict("toy", {"features": X}, output_filter=["class_ids"])
    assert set(filtered) == {"class_ids"}


def test_grpc_predict_reports_version(target):
    client = target.grpc()
    request = client.predict_request("toy", {"features": X}, label="stable")
    response = client.predict_proto(request)
    assert response.model_spec.name == "toy"
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_default"


# ---- classify / regress ----------------------------------------------------------------------------
def test_rest_classify_and_regress(target):
    from keras_suite.serving.testmodels import EXAMPLE_CLASSES, expected_example_scores

    client = target.rest()
    results = client.classify(
        "ex", [{"x": [1.0, 2.0]}, {"x": [-1.0, 0.5]}], signature_name="classify_x"
    )
    expected = expected_example_scores([[1.0, 2.0], [-1.0, 0.5]])
    for row, exp in zip(results, expected):
        assert [label for label, _ in row] == list(EXAMPLE_CLASSES)
        np.testing.assert_allclose([score for _, score in row], exp, rtol=1e-6)
    assert client.regress(
        "ex", [{"x": [1.0, 2.0]}, {"x": [0.0, 0.0]}], signature_name="regress_x"
    ) == [3.5, 2.0]
    # Context features are merged into every example.
    assert client.regress(
        "ex", [{}, {}], signature_name="regress_x", context={"x": [2.0, 2.0]}
    ) == [4.0, 4.0]


def test_grpc_classify_and_regress(target):
    import tensorflow as tf

    def example(values):
        return tf.train.Example(
            features=tf.train.Features(
                feature={"x": tf.train.Feature(float_list=tf.train.FloatList(value=values))}
            )
        )

    client = target.grpc()
    (row,) = client.classify("ex", [example([1.0, 2.0])], signature_name="classify_x")
    assert row[1][0] == "positive" and row[1][1] > 0.7
    assert client.regress("ex", [example([4.0, 0.0])], signature_name="regress_x") == [4.0]


def test_classify_on_predict_signature_is_rejected(target):
    r = post(target, "/v1/models/ex:classify", {"examples": [{"x": [1.0, 2.0]}]})
    assert r.status_code == 400 and "method_name" in r.json()["error"]


# ---- errors -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path,body,status,fragment",
    [
        ("/v1/models/toy:predict", "{not json", 400, "JSON"),
        ("/v1/models/toy:predict", "", 400, "JSON"),
        ("/v1/models/toy:predict", {"signature_name": "serving_default"}, 400, "instances"),
        (
            "/v1/models/toy:predict",
            {"instances": [[1, 2, 3, 4]], "inputs": [[1, 2, 3, 4]]},
            400,
            "only one",
        ),
        ("/v1/models/toy:predict", {"instances": [["a", 2, 3, 4]]}, 400, "float"),
        ("/v1/models/toy:predict", {"instances": [[1, 2, 3]]}, 400, ""),
        ("/v1/models/toy:predict", {"instances": [[1, 2, 3, 4], [1, 2]]}, 400, ""),
        (
            "/v1/models/toy:predict",
            {"signature_name": 7, "instances": [[1, 2, 3, 4]]},
            400,
            "signature_name",
        ),
        (
            "/v1/models/toy:predict",
            {"signature_name": "nope", "instances": [[1, 2, 3, 4]]},
            400,
            "nope",
        ),
        (
            "/v1/models/toy:predict",
            {"signature_name": "multiply", "inputs": {"a": [[1.0, 2.0]]}},
            400,
            "b",
        ),
        (
            "/v1/models/toy:predict",
            {"signature_name": "multiply", "instances": [{"a": [1.0, 2.0], "b": 1.5}]},
            400,
            "int",
        ),
        ("/v1/models/unknown:predict", {"instances": [[1, 2, 3, 4]]}, 404, "unknown"),
        ("/v1/models/toy/versions/9:predict", {"instances": [[1, 2, 3, 4]]}, 404, "9"),
        ("/v1/models/toy/labels/nope:predict", {"instances": [[1, 2, 3, 4]]}, 400, "label"),
    ],
)
def test_rest_predict_errors(target, path, body, status, fragment):
    r = post(target, path, body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert isinstance(error, str) and fragment in error


@pytest.mark.parametrize(
    "path,status",
    [
        ("/v1/models/unknown", 404),
        ("/v1/models/toy/versions/9", 404),
        ("/v1/models/unknown/metadata", 404),
        ("/v1/models/toy/labels/nope", 400),
        ("/v1/models", 400),
        ("/v1/models/toy/bogus/thing", 400),
    ],
)
def test_rest_status_errors(target, path, status):
    r = requests.get(target.rest_url + path, timeout=30)
    assert r.status_code == status, r.text
    assert "error" in r.json()


def test_grpc_errors_use_canonical_codes(target):
    import grpc

    client = target.grpc()
    cases = [
        (lambda: client.predict("unknown", {"features": X}), grpc.StatusCode.NOT_FOUND),
        (lambda: client.predict("toy", {"features": X}, version=9), grpc.StatusCode.NOT_FOUND),
        (
            lambda: client.predict("toy", {"features": X}, label="nope"),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            lambda: client.predict("toy", {"features": X.astype(np.int32)}),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (lambda: client.predict("toy", {"wrong": X}), grpc.StatusCode.INVALID_ARGUMENT),
        (
            lambda: client.predict("toy", {"features": X}, signature_name="nope"),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (lambda: client.status("unknown"), grpc.StatusCode.NOT_FOUND),
    ]
    for call, code in cases:
        with pytest.raises(ServingClientError) as info:
            call()
        assert info.value.status == code.name


# ---- embedded-only behaviour (tensorflow_model_server has no equivalent flag) --------------------
def test_oversized_body_is_refused(target):
    if target.kind != "embedded":
        pytest.skip("request size limit is a ksuite serve flag")
    import http.client

    host, port = target.rest_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    # Declare a body one byte over the limit: the server answers before reading it.
    conn.putrequest("POST", "/v1/models/toy:predict")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(MAX_BODY + 1))
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413
    assert "exceeds" in json.loads(response.read())["error"]
    conn.close()
    # A body under the limit is still served.
    assert post(target, "/v1/models/toy:predict", {"instances": X.tolist()}).status_code == 200


def test_prometheus_metrics_count_requests(target):
    if target.kind != "embedded":
        pytest.skip("the TF Serving run of this module has no monitoring config")
    post(target, "/v1/models/unknown:predict", {"instances": [[1, 2, 3, 4]]})
    target.grpc().predict("toy", {"features": X})
    r = requests.get(target.rest_url + "/monitoring/prometheus/metrics", timeout=30)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    text = r.text
    assert (
        ':tensorflow:serving:request_count{model_name="toy",API="predict",entrypoint="REST",status="OK"}'
        in text
    )
    assert (
        ':tensorflow:serving:request_latency_bucket{model_name="toy",API="predict",entrypoint="GRPC",le="+Inf"}'
        in text
    )
    assert 'status="NOT_FOUND"' in text
