"""Server-side batching end to end: concurrent one-row requests are merged into bigger
batches (seen in the Prometheus metrics) and every client still gets its own rows."""

from __future__ import annotations

import re
import threading

import numpy as np
import pytest
import requests

from keras_suite.serving.configs import (
    BatchingConfig,
    write_batching_parameters,
    write_monitoring_config,
)
from tests.serving.helpers import model_store, start_embedded

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    cfg_dir = tmp_path_factory.mktemp("batching")
    params = write_batching_parameters(
        cfg_dir / "batching_parameters.txt",
        BatchingConfig(
            max_batch_size=8,
            batch_timeout_micros=20_000,
            max_enqueued_batches=64,
            num_batch_threads=1,
            allowed_batch_sizes=[4, 8],
        ),
    )
    monitoring = write_monitoring_config(cfg_dir / "monitoring.config")
    target = start_embedded(
        model_name="toy",
        model_base_path=str(model_store() / "toy"),
        file_system_poll_wait_seconds=0,
        enable_batching=True,
        batching_parameters_file=str(params),
        monitoring_config_file=str(monitoring),
    )
    try:
        yield target
    finally:
        target.stop()


def test_concurrent_requests_are_batched_and_split_back(target):
    from keras_suite.serving.servable import Servable

    reference = Servable.load("toy", 2, model_store() / "toy" / "2", warmup=False)
    rng = np.random.default_rng(3)
    inputs = [rng.normal(size=(1, 4)).astype(np.float32) for _ in range(48)]
    results, errors = {}, []

    def worker(k):
        client = target.grpc()
        for i in range(k, len(inputs), 16):
            try:
                results[i] = client.predict("toy", {"features": inputs[i]})
            except Exception as exc:  # noqa: BLE001
                errors.append(str(exc))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == [] and len(results) == len(inputs)
    for i, out in results.items():
        expected = reference.predict("", {"features": inputs[i]})[1]
        # A row computed inside a bigger batch may differ from a batch-1 run in the last bits
        # (the matmul kernel blocks differently), never more.
        np.testing.assert_allclose(
            out["probabilities"], expected["probabilities"], rtol=1e-5, atol=1e-7
        )
        np.testing.assert_array_equal(out["class_ids"], expected["class_ids"])

    text = requests.get(target.rest_url + "/monitoring/prometheus/metrics", timeout=30).text
    count = int(re.search(r'processed_batch_size_count\{model_name="toy"\} (\d+)', text).group(1))
    rows = float(
        re.search(r'processed_batch_size_sum\{model_name="toy"\} ([\d.e+]+)', text).group(1)
    )
    assert rows == len(inputs)
    assert count < len(inputs)  # requests were merged


def test_signature_with_several_inputs_batches_too(target):
    client = target.rest()
    out = client.predict(
        "toy",
        {"a": np.array([[1.0, 2.0], [3.0, 4.0]], np.float32), "b": np.array([2, 3], np.int32)},
        signature_name="multiply",
    )
    np.testing.assert_array_equal(out["product"], [[2.0, 4.0], [9.0, 12.0]])


def test_request_over_max_batch_size_is_refused(target):
    r = requests.post(
        target.rest_url + "/v1/models/toy:predict",
        json={"instances": np.zeros((9, 4)).tolist()},
        timeout=30,
    )
    assert r.status_code == 400 and "larger than maximum input batch size 8" in r.json()["error"]
