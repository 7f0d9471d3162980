"""Shared fixtures. TensorFlow is imported once per test process (it costs seconds), and
the tiny classification run that several tests inspect is trained once per session."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import common

common.quiet_import_tensorflow()

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ksuite_cmd(*args: str) -> list[str]:
    """The CLI as a subprocess (a fresh TensorFlow runtime, needed for device splits)."""
    return [sys.executable, "-m", "common.cli", *args]


def subprocess_env(**extra: str) -> dict:
    env = dict(os.environ)
    env.pop("TF_CONFIG", None)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["KSUITE_PROGRESS"] = "0"
    env.update(extra)
    return env


def run_ksuite(*args: str, timeout: float = 600, cwd=None, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(ksuite_cmd(*args), capture_output=True, text=True, timeout=timeout,
                          cwd=cwd or ROOT, env=env or subprocess_env())


@pytest.fixture(scope="session")
def smoke_classification_run(tmp_path_factory):
    """A finished classification `smoke` run (in-process): run dir path."""
    from common.run import train_run

    run_dir = tmp_path_factory.mktemp("runs") / "classification-smoke"
    train_run("classification", "smoke", run_dir=run_dir, strategy_name="default")
    return run_dir
