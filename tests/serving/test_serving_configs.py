"""Config files (models.config, batching_parameters.txt, monitoring.config), the batcher on
its own, and the deploy manifests."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import yaml

from keras_suite.common.errors import UserError
from keras_suite.serving import configs
from keras_suite.serving.batching import Batcher
from keras_suite.serving.configs import BatchingConfig, ModelEntry
from keras_suite.serving.errors import ServingError
from tests.helpers import ROOT  # noqa: E402


def test_models_config_round_trip_with_policies_and_labels(tmp_path):
    path = configs.write_models_config(
        tmp_path / "models.config",
        [
            ModelEntry(
                "a", "/models/a", policy="latest", num_versions=2, labels={"stable": 1, "canary": 2}
            ),
            ModelEntry("b", "/models/b", policy="all"),
            ModelEntry("c", "/models/c", policy="specific", versions=[3, 7], labels={"stable": 3}),
        ],
    )
    text = path.read_text()
    assert "model_config_list" in text and 'key: "canary"' in text
    config = configs.read_models_config(path)
    a, b, c = config.model_config_list.config
    assert a.model_version_policy.latest.num_versions == 2 and dict(a.version_labels) == {
        "stable": 1,
        "canary": 2,
    }
    assert b.model_version_policy.WhichOneof("policy_choice") == "all"
    assert list(c.model_version_policy.specific.versions) == [3, 7]
    assert all(m.model_platform == "tensorflow" for m in config.model_config_list.config)


@pytest.mark.parametrize(
    "entries,match",
    [
        ([ModelEntry("a", "/m/a"), ModelEntry("a", "/m/b")], "listed twice"),
        ([ModelEntry("a", "")], "no base_path"),
        ([ModelEntry("a", "/m/a", policy="newest")], "not one of"),
        ([ModelEntry("a", "/m/a", policy="specific")], "no versions"),
        (
            [ModelEntry("a", "/m/a", policy="specific", versions=[1], labels={"canary": 2})],
            "does not load",
        ),
        ([ModelEntry("a", "/m/a", labels={"stable": 0})], "positive"),
    ],
)
def test_models_config_validation(entries, match):
    with pytest.raises(UserError, match=match):
        configs.model_server_config(entries)


def test_models_config_reader_rejects_bad_text(tmp_path):
    bad = tmp_path / "models.config"
    bad.write_text("model_config_list { config { nmae: 'x' } }")
    with pytest.raises(UserError, match="not a text-format ModelServerConfig"):
        configs.read_models_config(bad)
    with pytest.raises(UserError, match="does not exist"):
        configs.read_models_config(tmp_path / "missing.config")


def test_batching_parameters_round_trip(tmp_path):
    cfg = BatchingConfig(
        max_batch_size=32,
        batch_timeout_micros=1000,
        max_enqueued_batches=50,
        num_batch_threads=3,
        allowed_batch_sizes=[8, 16, 32],
    )
    path = configs.write_batching_parameters(tmp_path / "batching_parameters.txt", cfg)
    assert "max_batch_size {\n  value: 32\n}" in path.read_text()
    assert configs.read_batching_parameters(path) == cfg


@pytest.mark.parametrize(
    "text,match",
    [
        (
            "max_batch_size { value: 32 } allowed_batch_sizes: 8 allowed_batch_sizes: 16",
            "must equal max_batch_size",
        ),
        (
            "max_batch_size { value: 32 } allowed_batch_sizes: 16 allowed_batch_sizes: 8 allowed_batch_sizes: 32",
            "strictly increasing",
        ),
        ("max_batch_size { value: 0 }", "max_batch_size must be >= 1"),
        ("num_batch_threads { value: 0 }", "num_batch_threads"),
        ("max_batch_size: 32", "not a text-format BatchingParameters"),
        ("max_batch_sizes { value: 32 }", "not a text-format BatchingParameters"),
    ],
)
def test_batching_parameters_validation(text, match):
    with pytest.raises(UserError, match=match):
        configs.parse_batching_text(text)


def test_monitoring_config(tmp_path):
    path = configs.write_monitoring_config(tmp_path / "monitoring.config", "/metrics")
    assert configs.read_monitoring_config(path) == "/metrics"
    off = tmp_path / "off.config"
    off.write_text("prometheus_config { enable: false }")
    assert configs.read_monitoring_config(off) is None
    default = tmp_path / "default.config"
    default.write_text("prometheus_config { enable: true }")
    assert configs.read_monitoring_config(default) == configs.DEFAULT_PROMETHEUS_PATH
    with pytest.raises(UserError, match="must start with"):
        configs.write_monitoring_config(tmp_path / "x.config", "metrics")


# ---- the batcher on its own ---------------------------------------------------------------------
def _run_concurrently(batcher, inputs_list, signature="sig"):
    results = [None] * len(inputs_list)

    def call(i):
        results[i] = batcher.run(signature, inputs_list[i])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(inputs_list))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results


def test_batcher_merges_pads_and_splits():
    seen = []

    def run_batch(signature, inputs):
        seen.append(inputs["x"].shape[0])
        return {"y": inputs["x"] * 2.0, "row_sum": inputs["x"].sum(axis=1)}

    cfg = BatchingConfig(
        max_batch_size=8,
        batch_timeout_micros=200_000,
        num_batch_threads=1,
        allowed_batch_sizes=[4, 8],
    )
    batcher = Batcher(cfg, run_batch)
    try:
        inputs = [{"x": np.full((1, 3), i, np.float32)} for i in range(6)]
        results = _run_concurrently(batcher, inputs)
    finally:
        batcher.stop()
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result["y"], np.full((1, 3), 2 * i))
        np.testing.assert_array_equal(result["row_sum"], [3 * i])
    # Six one-row requests ran in fewer model calls, each padded to an allowed size.
    assert sum(1 for _ in seen) < 6 and all(size in (4, 8) for size in seen)


def test_batcher_limits():
    cfg = BatchingConfig(
        max_batch_size=4, batch_timeout_micros=0, num_batch_threads=1, max_enqueued_batches=1
    )
    gate = threading.Event()

    def slow(signature, inputs):
        gate.wait(10)
        return {"y": inputs["x"]}

    batcher = Batcher(cfg, slow)
    try:
        with pytest.raises(ServingError, match="larger than maximum input batch size 4"):
            batcher.run("sig", {"x": np.zeros((5, 1))})
        # One batch runs (blocked), one batch's worth queues, the next is refused.
        threading.Thread(
            target=batcher.run, args=("sig", {"x": np.zeros((4, 1))}), daemon=True
        ).start()
        time.sleep(0.2)
        threading.Thread(
            target=batcher.run, args=("sig", {"x": np.zeros((4, 1))}), daemon=True
        ).start()
        time.sleep(0.2)
        with pytest.raises(ServingError) as info:
            batcher.run("sig", {"x": np.zeros((1, 1))})
        assert info.value.code == "UNAVAILABLE"
    finally:
        gate.set()
        batcher.stop()


def test_large_batch_splitting():
    cfg = BatchingConfig(
        max_batch_size=4,
        batch_timeout_micros=0,
        num_batch_threads=1,
        enable_large_batch_splitting=True,
    )
    batcher = Batcher(cfg, lambda s, inputs: {"y": inputs["x"] + 1})
    try:
        out = batcher.run("sig", {"x": np.arange(10).reshape(10, 1)})
    finally:
        batcher.stop()
    np.testing.assert_array_equal(out["y"].ravel(), np.arange(10) + 1)


# ---- deploy files -------------------------------------------------------------------------------
def test_deploy_manifests_parse_and_probe_model_status():
    deploy = ROOT / "keras_suite" / "serving" / "deploy"
    compose = yaml.safe_load((deploy / "docker-compose.yml").read_text())
    service = compose["services"]["tensorflow-serving"]
    assert service["image"].startswith("tensorflow/serving")
    command = " ".join(service["command"])
    for flag in (
        "--model_config_file=",
        "--enable_batching",
        "--batching_parameters_file=",
        "--monitoring_config_file=",
        "--rest_api_port=8501",
        "--port=8500",
    ):
        assert flag in command
    docs = list(yaml.safe_load_all((deploy / "kubernetes.yaml").read_text()))
    kinds = {d["kind"]: d for d in docs if d}
    assert {"ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler"} <= set(kinds)
    container = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    probe = container["readinessProbe"]["httpGet"]
    assert probe["path"].startswith("/v1/models/") and probe["port"] == 8501
    assert {p["containerPort"] for p in container["ports"]} == {8500, 8501}
    assert (
        kinds["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"]
        == kinds["Deployment"]["metadata"]["name"]
    )
    # The config files the manifests mount are valid for the real server.
    configs.read_models_config(deploy / "models.config")
    configs.read_batching_parameters(deploy / "batching_parameters.txt")
    assert configs.read_monitoring_config(deploy / "monitoring.config")
    config_map = kinds["ConfigMap"]["data"]
    assert config_map["models.config"].strip() == (deploy / "models.config").read_text().strip()


def test_serving_config_command(tmp_path, capsys):
    from keras_suite.cli import main

    out = tmp_path / "models.config"
    assert (
        main(
            [
                "serving-config",
                "models",
                "--out",
                str(out),
                "--model",
                "cls=/models/cls,policy=specific:1:2,label:stable=1,label:canary=2",
            ]
        )
        == 0
    )
    config = configs.read_models_config(out)
    assert dict(config.model_config_list.config[0].version_labels) == {"stable": 1, "canary": 2}
    assert (
        main(
            [
                "serving-config",
                "batching",
                "--out",
                str(tmp_path / "b.txt"),
                "--max-batch-size",
                "32",
                "--allowed-batch-sizes",
                "8",
                "16",
            ]
        )
        == 2
    )
    assert "must equal max_batch_size" in capsys.readouterr().err
    assert not (tmp_path / "b.txt").exists()


def test_rest_workers_let_batches_fill(monkeypatch):
    """A REST worker waits for its batch, so with batching there are at least max_batch_size
    workers (4 workers capped batches at 4 rows: 498 req/s vs 646 with 16)."""
    from keras_suite.serving.server import default_rest_threads

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert default_rest_threads() == 4
    assert default_rest_threads(BatchingConfig(max_batch_size=16)) == 16
    assert default_rest_threads(BatchingConfig(max_batch_size=2)) == 4
    assert default_rest_threads(BatchingConfig(max_batch_size=1024)) == 64
