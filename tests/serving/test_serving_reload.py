"""Versions on disk while the server runs: hot reload, broken versions, config reload, and
`ksuite serve` as a process (flags, SIGTERM -> graceful exit)."""

from __future__ import annotations

import shutil
import signal
import subprocess

import numpy as np
import pytest
import requests

from keras_suite.client.clients import ServingClientError
from tests.helpers import free_port, ksuite_cmd, subprocess_env
from tests.serving.helpers import copy_model, model_store, start_embedded, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

X = np.array([[0.1, 0.2, 0.3, 0.4], [1.0, -1.0, 0.5, 2.0]], np.float32)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A server polling its base path every 0.2 s, starting with toy version 1 only."""
    base = tmp_path_factory.mktemp("live") / "toy"
    base.mkdir()
    copy_model(model_store() / "toy" / "1", base / "1")
    target = start_embedded(
        model_name="toy", model_base_path=str(base), file_system_poll_wait_seconds=0.2
    )
    try:
        yield target, base
    finally:
        target.stop()


def local_probabilities(version: int):
    from keras_suite.serving.servable import Servable

    servable = Servable.load("toy", version, model_store() / "toy" / str(version), warmup=False)
    return servable.predict("", {"features": X})[1]["probabilities"]


def versions(client, state=None):
    status = client.status("toy")["model_version_status"]
    return {int(v["version"]): v for v in status if state is None or v["state"] == state}


def test_new_version_is_served_without_restart(live):
    target, base = live
    client = target.rest()
    np.testing.assert_array_equal(
        client.predict("toy", {"features": X})["probabilities"], local_probabilities(1)
    )
    copy_model(model_store() / "toy" / "2", base / "2")
    wait_until(lambda: 2 in versions(client, "AVAILABLE"), timeout=60, what="version 2 to load")
    np.testing.assert_array_equal(
        client.predict("toy", {"features": X})["probabilities"], local_probabilities(2)
    )
    # latest policy (one version): version 1 is unloaded once version 2 serves.
    wait_until(
        lambda: versions(client)[1]["state"] == "END", timeout=30, what="version 1 to unload"
    )
    with pytest.raises(ServingClientError, match="404"):
        client.predict("toy", {"features": X}, version=1)


def test_broken_version_is_reported_and_the_served_one_stays(live):
    target, base = live
    client = target.rest()
    # A copy that is still in progress: a truncated saved_model.pb, no variables yet.
    broken = base / "3"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(
        (model_store() / "toy" / "1" / "saved_model.pb").read_bytes()[:200]
    )
    wait_until(
        lambda: 3 in versions(client) and versions(client)[3]["status"]["error_code"] != "OK",
        timeout=60,
        what="version 3 to fail",
    )
    status = versions(client)
    assert status[3]["state"] == "END" and status[3]["status"]["error_message"]
    assert status[2]["state"] == "AVAILABLE"
    np.testing.assert_array_equal(
        client.predict("toy", {"features": X})["probabilities"], local_probabilities(2)
    )
    # Finishing the copy (the folder changes) makes the poller retry, and version 3 serves.
    shutil.rmtree(broken)
    shutil.copytree(model_store() / "toy" / "1", broken)
    wait_until(
        lambda: 3 in versions(client, "AVAILABLE"),
        timeout=60,
        what="version 3 to load after the fix",
    )
    np.testing.assert_array_equal(
        client.predict("toy", {"features": X})["probabilities"], local_probabilities(1)
    )


def test_reload_config_over_grpc_moves_a_label(live):
    from tensorflow_serving.apis import model_management_pb2

    from keras_suite.serving.configs import ModelEntry, model_server_config

    target, base = live
    client = target.grpc()
    request = model_management_pb2.ReloadConfigRequest()
    request.config.CopyFrom(
        model_server_config(
            [ModelEntry("toy", str(base), policy="all", labels={"stable": 2, "canary": 3})]
        )
    )
    response = client.models.HandleReloadConfigRequest(request, timeout=60)
    assert response.status.error_code == 0
    rest = target.rest()
    wait_until(
        lambda: {2, 3} <= set(versions(rest, "AVAILABLE")), timeout=60, what="versions 2 and 3"
    )
    np.testing.assert_array_equal(
        rest.predict("toy", {"features": X}, label="stable")["probabilities"],
        local_probabilities(2),
    )
    np.testing.assert_array_equal(
        rest.predict("toy", {"features": X}, label="canary")["probabilities"],
        local_probabilities(1),
    )
    # A label may only name a loaded version (as in TF Serving): refused, old labels kept.
    import grpc

    request.config.model_config_list.config[0].version_labels["canary"] = 9
    with pytest.raises(grpc.RpcError) as info:
        client.models.HandleReloadConfigRequest(request, timeout=60)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "version 9" in info.value.details()
    np.testing.assert_array_equal(
        rest.predict("toy", {"features": X}, label="canary")["probabilities"],
        local_probabilities(1),
    )


def test_ksuite_serve_process_takes_tf_serving_flags_and_stops_on_sigterm(tmp_path):
    base = model_store() / "toy"
    grpc_port, rest_port = free_port(), free_port()
    process = subprocess.Popen(
        ksuite_cmd(
            "serve",
            f"--port={grpc_port}",
            f"--rest_api_port={rest_port}",
            "--model_name=toy",
            f"--model_base_path={base}",
            "--enable_batching=false",
            "--file_system_poll_wait_seconds=1",
        ),
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def ready():
            try:
                return (
                    requests.get(
                        f"http://127.0.0.1:{rest_port}/v1/models/toy", timeout=2
                    ).status_code
                    == 200
                )
            except requests.ConnectionError:
                assert process.poll() is None, process.stderr.read()
                return False

        wait_until(ready, timeout=180, what="ksuite serve to start", interval=0.5)
        r = requests.post(
            f"http://127.0.0.1:{rest_port}/v1/models/toy:predict",
            json={"instances": X.tolist()},
            timeout=30,
        )
        assert r.status_code == 200 and len(r.json()["predictions"]) == 2
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        assert "shutting down" in err and f"127.0.0.1:{grpc_port}" in out
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_failing_warmup_record_fails_the_load(live):
    """TF Serving fails a version whose warm-up requests fail; so does the embedded server."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    from keras_suite.export.signatures import WARMUP_RELPATH

    target, base = live
    staging = base.parent / "staging-4"
    shutil.copytree(model_store() / "toy" / "1", staging)
    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = "serving_default"
    request.inputs["features"].CopyFrom(
        tf.make_tensor_proto(np.zeros((1, 3), np.float32))
    )  # wrong width
    with tf.io.TFRecordWriter(str(staging / WARMUP_RELPATH)) as writer:
        writer.write(
            prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            ).SerializeToString()
        )
    staging.rename(base / "4")
    client = target.rest()
    wait_until(
        lambda: 4 in versions(client) and versions(client)[4]["state"] == "END",
        timeout=60,
        what="version 4 to fail its warm-up",
    )
    assert "shape" in versions(client)[4]["status"]["error_message"]
    assert {2, 3} <= set(versions(client, "AVAILABLE"))


def _label_serves(client, label) -> bool:
    try:
        client.predict("toy", {"features": X}, label=label)
        return True
    except ServingClientError:
        return False


def test_model_config_file_is_re_read_while_serving(tmp_path):
    """--model_config_file_poll_wait_seconds: an edited models.config takes effect live."""
    import os
    import time

    from keras_suite.serving.configs import ModelEntry, write_models_config

    config = tmp_path / "models.config"
    base = str(model_store() / "toy")
    write_models_config(config, [ModelEntry("toy", base, policy="specific", versions=[1])])
    target = start_embedded(
        model_config_file=str(config),
        model_config_file_poll_wait_seconds=1,
        file_system_poll_wait_seconds=0,
    )
    try:
        client = target.rest()
        assert set(versions(client, "AVAILABLE")) == {1}
        write_models_config(
            config, [ModelEntry("toy", base, policy="specific", versions=[2], labels={"stable": 2})]
        )
        os.utime(config, ns=(time.time_ns(), time.time_ns() + 10**9))  # a visibly newer mtime
        wait_until(
            lambda: set(versions(client, "AVAILABLE")) == {2}, timeout=60, what="the new config"
        )
        # As in TF Serving, labels are applied once their versions have loaded: a client can
        # see version 2 available a moment before the label names it.
        wait_until(
            lambda: _label_serves(client, "stable"), timeout=30, what="the label of the new config"
        )
        np.testing.assert_array_equal(
            client.predict("toy", {"features": X}, label="stable")["probabilities"],
            local_probabilities(2),
        )
    finally:
        target.stop()


class _CyclicServable:
    """Stands in for a loaded model: like a TF object graph it holds a reference cycle, so
    only the cyclic garbage collector can free it."""

    def __init__(self, version):
        self.version = version
        self.me = self


def test_loads_freeze_the_heap_and_an_unloaded_version_is_still_freed(tmp_path):
    """Full collections walking every object of a loaded model paused all threads for
    ~250 ms (REST p99 220 ms); loads now freeze the heap. The old version must still be
    reclaimed once unloaded, cycles included."""
    import gc
    import weakref

    from keras_suite.serving.configs import single_model_config
    from keras_suite.serving.manager import ModelManager

    base = tmp_path / "toy"
    (base / "1").mkdir(parents=True)
    loaded = {}

    def load(name, version, path, warmup):
        servable = _CyclicServable(version)
        loaded[version] = weakref.ref(servable)
        return servable

    manager = ModelManager(load)
    gc.unfreeze()
    try:
        manager.apply_config(single_model_config("toy", str(base)))
        assert gc.get_freeze_count() > 1000, "a load leaves the heap frozen"
        assert loaded[1]() is not None
        (base / "2").mkdir()
        manager.poll()  # latest policy: version 2 loads, version 1 unloads
        assert manager.available() == {"toy": [2]}
        assert loaded[1]() is None, "the unloaded version's cycle was collected"
        assert loaded[2]() is not None
        assert gc.get_freeze_count() > 1000
    finally:
        manager.stop()
        gc.unfreeze()
