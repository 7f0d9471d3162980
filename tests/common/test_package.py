"""The package's shape: one top-level package, an import that changes nothing in the
process but what TensorFlow needs, and every app's own script."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from keras_suite.common.registry import app_names
from tests.helpers import ROOT, subprocess_env


def _python(code: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env=env or subprocess_env(),
        cwd=ROOT.parent,  # not the repository root: only the installed package is importable
    )


def test_setup_installs_exactly_one_top_level_package():
    from setuptools import find_packages

    names = {p.split(".")[0] for p in find_packages(str(ROOT), include=["keras_suite*"])}
    assert names == {"keras_suite"}
    # the pyproject file says the same to setuptools
    text = (ROOT / "pyproject.toml").read_text()
    assert 'include = ["keras_suite*"]' in text
    assert 'ksuite = "keras_suite.cli:main"' in text


_CHANGED = (
    "import json, os\n"
    "before = dict(os.environ)\n"
    "{imports}\n"
    "after = dict(os.environ)\n"
    "changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))\n"
    "print(json.dumps(changed))\n"
)


def _changed_env(imports: str) -> set:
    env = subprocess_env()
    for key in ("KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL", "GRPC_VERBOSITY", "TF_ENABLE_ONEDNN_OPTS"):
        env.pop(key, None)
    proc = _python(_CHANGED.format(imports=imports), env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_importing_the_package_changes_only_keras_backend():
    """TensorFlow and OpenCV set variables of their own when imported (TF2_BEHAVIOR,
    LD_LIBRARY_PATH, ...); beyond those, the package sets KERAS_BACKEND and nothing else."""
    dependencies = _changed_env("import tensorflow, keras, cv2")
    ours = _changed_env(
        "import keras_suite, keras_suite.common, keras_suite.api\n"
        "cfg = keras_suite.config('classification', 'smoke')"
    )
    assert ours - dependencies == {"KERAS_BACKEND"}


def test_another_keras_backend_is_refused_with_one_message():
    env = subprocess_env(KERAS_BACKEND="jax")
    proc = _python("import keras_suite", env)
    assert proc.returncode != 0
    assert "KERAS_BACKEND='jax'" in proc.stderr and "tensorflow" in proc.stderr


def test_import_keras_suite_does_not_import_tensorflow():
    proc = _python("import sys, keras_suite; print('tensorflow' in sys.modules)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


@pytest.mark.parametrize("app", app_names())
def test_every_app_has_its_own_script(app):
    proc = subprocess.run(
        [sys.executable, "-m", f"keras_suite.apps.{app}", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env=subprocess_env(),
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"python -m keras_suite.apps.{app} VERB" in proc.stdout
    assert "train" in proc.stdout and "evaluate" in proc.stdout


def test_app_script_maps_verbs_to_the_cli(monkeypatch):
    import keras_suite.cli as cli

    calls = []
    monkeypatch.setattr(cli, "main", lambda argv: calls.append(argv) or 0)
    cli.app_script("vae", ["train", "--preset", "smoke"])
    cli.app_script("vae", ["--preset", "smoke"])
    cli.app_script("vae", ["data", "check", "--set", "data.x=1"])
    cli.app_script("vae", ["evaluate", "runs/x"])
    assert calls == [
        ["train", "vae", "--preset", "smoke"],
        ["train", "vae", "--preset", "smoke"],
        ["data", "check", "vae", "--set", "data.x=1"],
        ["evaluate", "runs/x"],
    ]


def test_app_script_refuses_a_run_of_another_app(tmp_path, capsys):
    from keras_suite.cli import app_script

    (tmp_path / "run.json").write_text(json.dumps({"app": "gan"}))
    assert app_script("vae", ["evaluate", str(tmp_path)]) == 2
    assert "is a gan run, not a vae run" in capsys.readouterr().err
    assert app_script("vae", ["frobnicate"]) == 2
