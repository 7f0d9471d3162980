"""Shared pieces of the serving tests: test models (built once per process), servers.

A "target" is a running server plus clients: the embedded `ksuite serve` core (started
in-process, which is cheap because the test process already has TensorFlow) or a real
`tensorflow_model_server` when TFS_BINARY points to one.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import free_port

TFS_BINARY = os.environ.get("TFS_BINARY", "")


@functools.lru_cache(maxsize=1)
def model_store() -> Path:
    """BASE with toy/1 (seed 1), toy/2 (seed 2) and ex/1 (classify/regress): built once."""
    from keras_suite.serving.testmodels import publish_keras_toy, write_tf1_examples_model

    base = Path(tempfile.mkdtemp(prefix="ksuite-serving-models-"))
    atexit.register(shutil.rmtree, base, True)
    publish_keras_toy(base, "toy", seed=1, version=1)
    publish_keras_toy(base, "toy", seed=2, version=2)
    write_tf1_examples_model(base / "ex" / "1")
    return base


def copy_model(version_dir: Path, dest: Path) -> Path:
    """Copy a version through a temporary name + rename, as an exporter would."""
    tmp = dest.parent / f".tmp-{dest.name}"
    shutil.copytree(version_dir, tmp)
    os.rename(tmp, dest)
    return dest


def write_models_config(path: Path, base: Path) -> Path:
    from keras_suite.serving.configs import ModelEntry
    from keras_suite.serving.configs import write_models_config as write

    return write(
        path,
        [
            ModelEntry("toy", str(base / "toy"), policy="all", labels={"stable": 1, "canary": 2}),
            ModelEntry("ex", str(base / "ex")),
        ],
    )


@dataclass
class Target:
    kind: str  # "embedded" or "tfs"
    rest_url: str
    grpc_target: str
    server: object = None  # ModelServer (embedded)
    process: object = None  # Popen (tfs)

    def rest(self):
        from keras_suite.client.clients import RestClient

        return RestClient(self.rest_url, timeout=60)

    def grpc(self):
        from keras_suite.client.clients import GrpcClient

        return GrpcClient(self.grpc_target, timeout=60)

    def stop(self):
        if self.server is not None:
            self.server.stop(grace=2)
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()


def start_embedded(**options) -> Target:
    from keras_suite.serving.server import ModelServer, ServerOptions

    options.setdefault("rest_api_port", free_port())
    options.setdefault("port", 0)
    server = ModelServer(ServerOptions(**options)).start()
    return Target(
        "embedded",
        f"http://127.0.0.1:{server.rest_port}",
        f"127.0.0.1:{server.grpc_port}",
        server=server,
    )


def start_tfs(config_file: Path, extra=()) -> Target:
    """A real tensorflow_model_server on free ports; waits until every model is loaded."""
    if not TFS_BINARY:
        pytest.skip("set TFS_BINARY to a tensorflow_model_server binary to run against it")
    grpc_port, rest_port = free_port(), free_port()
    process = subprocess.Popen(
        [
            TFS_BINARY,
            f"--port={grpc_port}",
            f"--rest_api_port={rest_port}",
            f"--model_config_file={config_file}",
            "--file_system_poll_wait_seconds=1",
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    target = Target(
        "tfs", f"http://127.0.0.1:{rest_port}", f"127.0.0.1:{grpc_port}", process=process
    )
    wait_until(
        lambda: _loaded(target, ("toy", "ex")), timeout=120, what="tensorflow_model_server to load"
    )
    return target


def _loaded(target: Target, models) -> bool:
    from keras_suite.client.clients import ServingClientError

    try:
        client = target.rest()
        return all(
            any(v["state"] == "AVAILABLE" for v in client.status(m)["model_version_status"])
            for m in models
        )
    except ServingClientError:
        return False


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
