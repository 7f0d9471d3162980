"""Find apps by name (every sub-package of `apps` that defines `APP` is one), and the app
of a run directory. Cheap: imports no TensorFlow."""

from __future__ import annotations

import importlib
import json
import pkgutil
from pathlib import Path

from keras_suite.common.errors import UserError

APPS_DIR = Path(__file__).resolve().parent.parent / "apps"


def app_names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([str(APPS_DIR)]) if m.ispkg)


def get_app(name: str):
    names = app_names()
    if name not in names:
        raise UserError(
            f"unknown app {name!r}; choose one of: {', '.join(names)} (see `ksuite apps`)"
        )
    module = importlib.import_module(f"keras_suite.apps.{name}")
    if not hasattr(module, "APP"):
        raise UserError(f"apps/{name} does not define APP; it is not a Keras Suite app yet")
    return module.APP


def read_run_meta(run_dir: str | Path) -> dict:
    """RUN_DIR/run.json (app, preset, strategy, versions): the one reader of it."""
    meta_path = Path(run_dir) / "run.json"
    if not meta_path.is_file():
        raise UserError(
            f"{run_dir} is not a Keras Suite run directory (no run.json); "
            "pass the --run-dir of a `ksuite train` run"
        )
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(
            f"{meta_path} is not readable JSON ({exc}); the run directory is damaged"
        ) from None
    if not isinstance(meta, dict) or "app" not in meta:
        raise UserError(f"{meta_path} does not name its app; the run directory is damaged")
    return meta
