"""Prometheus exposition on prometheus_client, in TF Serving's form (names, label order)."""

from __future__ import annotations

from keras_suite.serving.metrics import Metrics


def test_exposition_keeps_tf_serving_names_and_label_order():
    m = Metrics()
    m.observe_request("toy", "predict", "REST", "OK", 120)
    m.observe_request("toy", "predict", "REST", "OK", 70_000)
    m.observe_batch("toy", rows=3, padded=4)
    m.observe_load("/models/toy/1", "OK")
    lines = m.render().splitlines()
    for expected in [
        "# TYPE :tensorflow:serving:request_count counter",
        ':tensorflow:serving:request_count{model_name="toy",API="predict",entrypoint="REST",status="OK"} 2',
        "# TYPE :tensorflow:serving:request_latency histogram",
        ':tensorflow:serving:request_latency_bucket{model_name="toy",API="predict",entrypoint="REST",le="200.0"} 1',
        ':tensorflow:serving:request_latency_bucket{model_name="toy",API="predict",entrypoint="REST",le="+Inf"} 2',
        ':tensorflow:serving:request_latency_sum{model_name="toy",API="predict",entrypoint="REST"} 70120',
        ':tensorflow:serving:request_latency_count{model_name="toy",API="predict",entrypoint="REST"} 2',
        ':tensorflow:serving:batching_session:processed_batch_size_sum{model_name="toy"} 3',
        ':tensorflow:serving:batching_session:padding_rows{model_name="toy"} 1',
        ':tensorflow:cc:saved_model:load_attempt_count{model_path="/models/toy/1",status="OK"} 1',
    ]:
        assert expected in lines, expected
    assert not [line for line in lines if "_total" in line or "_created" in line]


def test_each_server_counts_its_own_requests():
    a, b = Metrics(), Metrics()
    a.observe_request("toy", "predict", "GRPC", "OK", 10)
    assert "request_count{" in a.render() and "request_count{" not in b.render()


def test_label_values_are_escaped():
    m = Metrics()
    m.observe_load('C:\\models\\"toy"\n1', "OK")
    assert 'model_path="C:\\\\models\\\\\\"toy\\"\\n1"' in m.render()
