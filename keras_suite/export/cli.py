"""`ksuite export`: a run as a versioned, TF-Serving-ready SavedModel, or as ONNX
(`--format onnx`, keras_suite/export/onnx.py).

Imports stay inside the handler so that `ksuite --help` does not load TensorFlow.
"""

from __future__ import annotations

import json


def _cmd_export_onnx(args) -> int:
    from pathlib import Path

    from keras_suite.export.onnx import export_onnx, summary_lines

    out = Path(args.out) if args.out else Path(args.run_dir) / "onnx"
    report = export_onnx(args.run_dir, out, offer_pure_tensor=args.pure_tensor or None)
    for line in summary_lines(report, out):
        print(line)
    print(f"report: {out / 'onnx_report.json'}")
    # exit 1 when nothing converted or a converted graph differs from the SavedModel
    entries = [*report["signatures"].values(), *(report.get("pure_tensor") or {}).values()]
    converted = [e for e in entries if "file" in e]
    agrees = all(e["parity"]["agrees"] for e in converted if e["parity"]["requests"])
    return 0 if converted and agrees else 1


def _cmd_export(args) -> int:
    if args.format == "onnx":
        return _cmd_export_onnx(args)
    if not args.base:
        from keras_suite.common.errors import UserError

        raise UserError("ksuite export needs --base DIR (the model base folder TF Serving watches)")
    from keras_suite.common.config import data_path_argument
    from keras_suite.export.writer import export_run

    version_dir = export_run(
        args.run_dir,
        args.base,
        name=args.name,
        version=args.version,
        data_path=data_path_argument(args),
    )
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
        "--base", metavar="DIR", help="model base folder (one subfolder per model); savedmodel"
    )
    p.add_argument(
        "--format",
        choices=("savedmodel", "onnx"),
        default="savedmodel",
        help="savedmodel (TF Serving, the default) or onnx (RUN_DIR/onnx/, checked against "
        "the SavedModel with onnxruntime; needs the onnx extra)",
    )
    p.add_argument("--out", metavar="DIR", help="onnx: where to write (default RUN_DIR/onnx)")
    p.add_argument(
        "--pure-tensor",
        action="store_true",
        help="onnx: also convert the app's fixed-shape TFLite graphs (offered by default only "
        "when no serving signature is expressible)",
    )
    p.add_argument("--name", help="model name (default: the app's name)")
    p.add_argument("--version", type=int, help="version number (default: next free integer)")
    from keras_suite.common.config import add_data_path_flags

    add_data_path_flags(p)
    p.set_defaults(func=_cmd_export)
    register_hub(subparsers)


def _cmd_push(args) -> int:
    from keras_suite.export.hub import push

    where = push(args.run_dir, args.target, private=args.private, message=args.message or "")
    print(f"pushed {args.run_dir} to {where}")
    return 0


def _cmd_pull(args) -> int:
    from keras_suite.export.hub import pull

    run_dir = pull(args.source, args.run_dir, overwrite=args.overwrite)
    print(f"pulled {args.source} into {run_dir}")
    print(f"use it: ksuite evaluate {run_dir}   ksuite predict {run_dir} INPUT...")
    return 0


def register_hub(subparsers) -> None:
    p = subparsers.add_parser(
        "push",
        help="upload a finished run to the Hugging Face Hub (hf://USER/NAME) with a model card",
        description="Upload the run's .keras files, weights, config, info, artifacts and a "
        "generated model card README.md. A TARGET without hf:// is a local folder written "
        "in the same layout.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished `ksuite train` run")
    p.add_argument("target", metavar="TARGET", help="hf://USER/NAME, or a new local folder")
    p.add_argument("--private", action="store_true", help="create the Hub repository private")
    p.add_argument("--message", help="the Hub commit message")
    p.set_defaults(func=_cmd_push)
    p = subparsers.add_parser(
        "pull",
        help="download a pushed run (hf://USER/NAME or a folder) into a run directory",
        description="The run directory it writes is what `ksuite evaluate`, `predict`, "
        "`export` and `convert` take.",
    )
    p.add_argument("source", metavar="SOURCE", help="hf://USER/NAME, or a folder `push` wrote")
    p.add_argument("--run-dir", help="where to write the run (default: runs/NAME)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --run-dir")
    p.set_defaults(func=_cmd_pull)
