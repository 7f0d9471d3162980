"""Load: 32 concurrent clients (REST and gRPC) and a few hundred requests, zero errors and
results identical to in-process inference on the same SavedModel."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from keras_suite.client.loadtest import make_caller_factory, run_load
from tests.helpers import free_port
from tests.serving.helpers import model_store, start_embedded

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CLIENTS = 32
REQUESTS_PER_CLIENT = 10


@pytest.fixture(scope="module")
def target():
    target = start_embedded(
        model_name="toy",
        model_base_path=str(model_store() / "toy"),
        file_system_poll_wait_seconds=0,
    )
    try:
        yield target
    finally:
        target.stop()


def test_32_concurrent_clients_get_exact_results(target):
    from keras_suite.serving.servable import Servable

    reference = Servable.load("toy", 2, model_store() / "toy" / "2", warmup=False)
    rng = np.random.default_rng(7)
    # Every request is different (1 to 3 rows) so a mix-up between clients would show.
    work = [
        [
            rng.normal(size=(1 + (c + i) % 3, 4)).astype(np.float32)
            for i in range(REQUESTS_PER_CLIENT)
        ]
        for c in range(CLIENTS)
    ]
    results: dict = {}
    errors = []
    barrier = threading.Barrier(CLIENTS)

    def client_thread(c):
        client = target.rest() if c % 2 == 0 else target.grpc()
        barrier.wait()
        for i, x in enumerate(work[c]):
            try:
                if c % 4 == 0:  # some REST clients use the row format
                    results[(c, i)] = client.predict("toy", {"features": x}, row_format=True)
                else:
                    results[(c, i)] = client.predict("toy", {"features": x})
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(f"client {c} request {i}: {exc}")

    threads = [threading.Thread(target=client_thread, args=(c,)) for c in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert errors == []
    assert len(results) == CLIENTS * REQUESTS_PER_CLIENT
    for (c, i), out in results.items():
        expected = reference.predict("", {"features": work[c][i]})[1]
        np.testing.assert_array_equal(out["probabilities"], expected["probabilities"])
        np.testing.assert_array_equal(out["class_ids"], expected["class_ids"])


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_loadtest_report(target, protocol):
    inputs = {"features": np.ones((1, 4), np.float32)}
    remote = target.rest_url if protocol == "rest" else target.grpc_target
    factory = make_caller_factory(protocol, remote, "toy", "", inputs, timeout=30)
    report = run_load(factory, concurrency=8, requests=80)
    assert report["requests"] == 80 and report["ok"] == 80 and report["errors"] == 0
    assert 0 < report["p50_ms"] <= report["p95_ms"] <= report["p99_ms"] <= report["max_ms"]
    assert report["throughput_rps"] > 0


def test_loadtest_counts_errors(target):
    inputs = {"features": np.ones((1, 4), np.float32)}
    factory = make_caller_factory("rest", target.rest_url, "missing-model", "", inputs, timeout=30)
    report = run_load(factory, concurrency=4, requests=12)
    assert report["errors"] == 12 and report["ok"] == 0
    (message,) = report["error_messages"]
    assert "404" in message


def test_ksuite_loadtest_and_predict_commands(target, tmp_path, capsys):
    import json

    from keras_suite.cli import main

    out = tmp_path / "report.json"
    status = main(
        [
            "loadtest",
            "--server",
            target.grpc_target,
            "--grpc",
            "--model",
            "toy",
            "--warmup-from",
            str(model_store() / "toy" / "2"),
            "--signature",
            "serving_default",
            "--concurrency",
            "4",
            "--requests",
            "40",
            "--out",
            str(out),
        ]
    )
    assert status == 0
    report = json.loads(out.read_text())
    assert report["protocol"] == "grpc" and report["ok"] == 40 and report["errors"] == 0
    assert {"throughput_rps", "p50_ms", "p95_ms", "p99_ms"} <= set(report)
    assert "req/s" in capsys.readouterr().out

    request = tmp_path / "request.json"
    request.write_text(
        json.dumps({"signature_name": "multiply", "inputs": {"a": [[1.0, 2.0]], "b": [5]}})
    )
    status = main(
        [
            "predict",
            "--server",
            target.rest_url,
            "--model",
            "toy",
            "--version",
            "2",
            "--input-json",
            str(request),
            "--out",
            str(tmp_path / "pred"),
        ]
    )
    assert status == 0
    pred = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert pred == {"signature_name": "multiply", "outputs": {"product": [[5.0, 10.0]]}}

    # A server that is not there is a one-line error, not a traceback.
    status = main(
        [
            "predict",
            "--server",
            f"http://127.0.0.1:{free_port()}",
            "--model",
            "toy",
            "--input-json",
            str(request),
            "--out",
            str(tmp_path / "pred2"),
        ]
    )
    assert status == 2
    assert "cannot reach" in capsys.readouterr().err
