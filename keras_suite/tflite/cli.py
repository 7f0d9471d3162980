"""`ksuite convert` and `ksuite tflite-eval` (registered by common/cli.py)."""

from __future__ import annotations

import argparse
import sys

MODE_HELP = "float32, dynamic, float16, int8, int16x8, a comma-separated list, or all"


def _warn(report: dict | None, strict: bool) -> int:
    """A WARNING line on stderr per mode the parity check flagged; exit status 1 for them
    only with --strict."""
    from keras_suite.tflite.report import warning_line

    flags = (report or {}).get("parity_warnings", [])
    for flag in flags:
        print(f"WARNING: {warning_line(flag)}", file=sys.stderr)
    return 1 if flags and strict else 0


def _cmd_convert(args) -> int:
    from keras_suite.common.config import data_path_argument
    from keras_suite.tflite.pipeline import convert_run

    result = convert_run(
        args.run_dir,
        args.quantize,
        args.io,
        args.allow_flex,
        args.calibration_samples,
        args.out,
        evaluate=not args.no_eval,
        latency_runs=args.latency_runs,
        data_path=data_path_argument(args),
    )
    return _warn(result.get("report"), args.strict)


def _cmd_eval(args) -> int:
    from keras_suite.common.config import data_path_argument
    from keras_suite.tflite.pipeline import evaluate_run

    report = evaluate_run(
        args.run_dir,
        args.out,
        args.modes,
        latency_runs=args.latency_runs,
        data_path=data_path_argument(args),
    )
    return _warn(report, args.strict)


def _add_common(p) -> None:
    from keras_suite.common.config import add_data_path_flags

    p.add_argument(
        "--strict",
        action="store_true",
        help="exit with status 1 when a mode's metric is off by more than the app's parity "
        "tolerance (a WARNING line per such mode is printed either way)",
    )
    add_data_path_flags(p)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "convert",
        help="convert a run's model to TFLite (LiteRT) with quantization + parity report",
        description="Convert the app's TFLite targets of RUN_DIR to RUN_DIR/tflite/model_<mode>.tflite "
        "(builtin ops only unless --allow-flex), write metadata JSON and labels beside them, "
        "then evaluate every converted mode in the LiteRT interpreter against Keras.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished `ksuite train` run")
    p.add_argument("--quantize", default="all", metavar="MODE", help=f"{MODE_HELP} (default all)")
    p.add_argument(
        "--io",
        default="float32",
        choices=["float32", "int8", "uint8", "int16"],
        help="input/output type of the integer modes: int8 takes float32, int8 or uint8; "
        "int16x8 takes float32 or int16; other modes stay float32 (default float32)",
    )
    p.add_argument(
        "--allow-flex",
        action="store_true",
        help="permit Select-TF (Flex) ops; the result needs the Flex delegate, which most "
        "edge runtimes do not ship",
    )
    p.add_argument(
        "--calibration-samples",
        type=_positive,
        default=300,
        metavar="N",
        help="samples from the app's own pipeline used to calibrate int8/int16x8 (default 300)",
    )
    p.add_argument("--out", metavar="DIR", help="output folder (default RUN_DIR/tflite)")
    p.add_argument("--no-eval", action="store_true", help="convert only; skip the parity report")
    p.add_argument(
        "--latency-runs",
        type=_positive,
        default=50,
        metavar="N",
        help="timed invocations per mode and thread count (default 50)",
    )
    _add_common(p)
    p.set_defaults(func=_cmd_convert)

    p = subparsers.add_parser(
        "tflite-eval",
        help="parity report of the .tflite files of a run (metric, diffs, size, latency)",
        description="Run every RUN_DIR/tflite/model_<mode>.tflite in the LiteRT interpreter over the app's "
        "evaluation set and compare it with the Keras model: app metric, max/mean output "
        "difference, size, latency p50/p95 with 1 and 2 threads. Writes report.json, "
        "report.md and report.png.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run converted with `ksuite convert`")
    p.add_argument(
        "--modes", metavar="MODE", help=f"only these modes: {MODE_HELP} (default: every file found)"
    )
    p.add_argument(
        "--out", metavar="DIR", help="folder holding the .tflite files (default RUN_DIR/tflite)"
    )
    p.add_argument(
        "--latency-runs",
        type=_positive,
        default=50,
        metavar="N",
        help="timed invocations per mode and thread count (default 50)",
    )
    _add_common(p)
    p.set_defaults(func=_cmd_eval)
