"""`ksuite export`: a run as a versioned, TF-Serving-ready SavedModel.

Imports stay inside the handler so that `ksuite --help` does not load TensorFlow.
"""

from __future__ import annotations

import json


def _cmd_export(args) -> int:
    from keras_suite.export.writer import export_run

    version_dir = export_run(args.run_dir, args.base, name=args.name, version=args.version)
    info = json.loads((version_dir / "assets.extra" / "ksuite_export.json").read_text())
    print(f"exported {version_dir}")
    for line in info["signatures"]:
        print(f"  {line}")
    print(
        f"  {info['warmup_records']} warm-up requests; {len(info['ops'])} op types, all available "
        "in stock tensorflow_model_server"
    )
    print(
        f"serve it: ksuite serve --model_name={version_dir.parent.name} "
        f"--model_base_path={version_dir.parent.resolve()} --rest_api_port=8501"
    )
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a run as a versioned, TF-Serving-ready SavedModel",
        description="Write BASE/NAME/<version>/ with warm-up requests, after checking "
        "that every op exists in stock tensorflow_model_server.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished `ksuite train` run")
    p.add_argument(
        "--base", required=True, metavar="DIR", help="model base folder (one subfolder per model)"
    )
    p.add_argument("--name", help="model name (default: the app's name)")
    p.add_argument("--version", type=int, help="version number (default: next free integer)")
    p.set_defaults(func=_cmd_export)
