"""Helpers the tests share: the CLI as a subprocess, free ports, the repository root."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ksuite_cmd(*args: str) -> list[str]:
    """The CLI as a subprocess (a fresh TensorFlow runtime, needed for device splits)."""
    return [sys.executable, "-m", "keras_suite.cli", *args]


def subprocess_env(**extra: str) -> dict:
    env = dict(os.environ)
    env.pop("TF_CONFIG", None)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["KSUITE_PROGRESS"] = "0"
    env.update(extra)
    return env


def run_ksuite(*args: str, timeout: float = 600, cwd=None, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ksuite_cmd(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or ROOT,
        env=env or subprocess_env(),
    )
