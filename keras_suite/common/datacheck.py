"""`ksuite data check APP [--preset P] [--config F] [--set data.x=...]`: what a run would
see of its data, before training — classes, split sizes and where each split came from,
source image sizes, and every file the loaders skipped, with the reason."""

from __future__ import annotations

import logging
import tempfile

from keras_suite.common.errors import UserError
from keras_suite.common.info import check_info


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def check_data(app_name: str, preset: str, config_file=None, overrides=()) -> dict:
    from keras_suite.common import config as config_lib
    from keras_suite.common.app import Artifacts
    from keras_suite.common.registry import get_app
    from keras_suite.common.runlog import log

    app = get_app(app_name)
    cfg = config_lib.resolve(app.presets, preset, config_file, overrides)
    collect = _Collect()
    log.addHandler(collect)
    try:
        # learned artifacts (vocabularies) go to a scratch folder: a check writes nothing
        with tempfile.TemporaryDirectory(prefix="ksuite-data-check-") as scratch:
            data = app.datasets(cfg=cfg, artifacts=Artifacts(scratch))
            check_info(app.name, data.info)
            report = app.data_report(data=data, cfg=cfg)
    finally:
        log.removeHandler(collect)
    report["warnings"] = collect.lines
    return report


def print_report(app_name: str, report: dict) -> None:
    print(f"{app_name} data ({report.get('source') or 'built-in'})")
    classes = report.get("classes")
    if classes is not None:
        shown = ", ".join(classes[:30]) + (
            f", ... ({len(classes) - 30} more)" if len(classes) > 30 else ""
        )
        print(f"  classes ({len(classes)}): {shown}")
    origin = report.get("split_origin", {})
    for split, size in report.get("split_sizes", {}).items():
        print(f"  {split}: {size}" + (f"  ({origin[split]})" if split in origin else ""))
    sizes = report.get("image_sizes")
    if sizes:
        print(
            f"  source image sizes: {sizes['min'][0]}x{sizes['min'][1]} to {sizes['max'][0]}x{sizes['max'][1]} "
            f"(width x height, resized for the model)"
        )
    for key, value in report.items():
        if key not in (
            "source",
            "classes",
            "split_sizes",
            "split_origin",
            "image_sizes",
            "warnings",
        ):
            print(f"  {key}: {value}")
    warnings = report.get("warnings", [])
    print(f"  warnings ({len(warnings)})" + (":" if warnings else ": none"))
    for line in warnings:
        print(f"    {line}")


def _cmd_data(args) -> int:
    if args.action != "check":
        raise UserError(f"unknown data action {args.action!r}; use `ksuite data check APP`")
    print_report(args.app, check_data(args.app, args.preset, args.config, args.set))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "data",
        help="check an app's data before training (classes, splits, skipped files)",
        description="ksuite data check APP --set data.source=... shows what `ksuite train "
        "APP` with the same options would see, without training.",
    )
    p.add_argument(
        "action", choices=["check"], help="check: report classes, split sizes and skipped files"
    )
    p.add_argument("app", help="app name (see `ksuite apps`)")
    p.add_argument("--preset", default="default", help="preset whose data section to start from")
    p.add_argument("--config", metavar="FILE.yaml", help="YAML file of config overrides")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override (repeatable)",
    )
    p.set_defaults(func=_cmd_data)
