"""Find apps by name: every sub-package of `apps` that defines `APP` is one."""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from common.errors import UserError

_APPS_DIR = Path(__file__).resolve().parent.parent / "apps"


def app_names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([str(_APPS_DIR)]) if m.ispkg)


def get_app(name: str):
    names = app_names()
    if name not in names:
        raise UserError(f"unknown app {name!r}; choose one of: {', '.join(names)} (see `ksuite apps`)")
    module = importlib.import_module(f"apps.{name}")
    if not hasattr(module, "APP"):
        raise UserError(f"apps/{name} does not define APP; it is not a Keras Suite app yet")
    return module.APP
