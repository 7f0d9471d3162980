"""Shared fixtures. TensorFlow is imported once per test process (it costs seconds), and
the tiny classification run that several tests inspect is trained once per session."""

from __future__ import annotations

import pytest

from keras_suite import common
from tests.helpers import ROOT, free_port, ksuite_cmd, run_ksuite, subprocess_env  # noqa: F401

common.quiet_import_tensorflow()


@pytest.fixture(scope="session")
def smoke_classification_run(tmp_path_factory):
    """A finished classification `smoke` run (in-process): run dir path."""
    from keras_suite.common.run import train_run

    run_dir = tmp_path_factory.mktemp("runs") / "classification-smoke"
    train_run("classification", "smoke", run_dir=run_dir, strategy_name="default")
    return run_dir
