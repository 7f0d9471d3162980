"""`ksuite`: one command line for every app — train, evaluate, demo, apps, bench, plus the
commands export/, tflite/, serving/ and client/ add through their `cli.register(subparsers)`
and the verbs apps declare in `apps/<name>/commands.py` (common/commands.py dispatches those).
Every command is a thin layer over the Python API (keras_suite/api.py, docs/python-api.md).

Errors the user can fix (UserError) print as one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

from keras_suite.common.errors import UserError
from keras_suite.common.registry import app_names

PLUGIN_MODULES = (
    "keras_suite.export.cli",
    "keras_suite.tflite.cli",
    "keras_suite.serving.cli",
    "keras_suite.client.cli",
)


def _cmd_train(args) -> int:
    from keras_suite.common.run import default_run_dir, train_run

    if args.cpu_devices and args.strategy == "default":
        raise UserError(
            "--cpu-devices splits the CPU for --strategy mirrored or multiworker; "
            "it has no effect with --strategy default"
        )
    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(args.app, args.preset)
    metrics = train_run(
        args.app,
        args.preset,
        args.config,
        args.set,
        args.strategy,
        run_dir,
        cpu_devices=args.cpu_devices,
        overwrite=args.overwrite,
        command=" ".join(["ksuite"] + sys.argv[1:]),
    )
    if metrics:
        _print_metrics(metrics, run_dir)
    return 0


def _cmd_evaluate(args) -> int:
    from keras_suite.common.config import data_path_argument
    from keras_suite.common.run import evaluate_run

    metrics = evaluate_run(args.run_dir, data_path=data_path_argument(args))
    _print_metrics(metrics, Path(args.run_dir))
    return 0


def _scalar_items(metrics: dict):
    return [
        (k, v)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    ]


def _print_metrics(metrics: dict, run_dir: Path) -> None:
    rows = _scalar_items(metrics)
    if rows:
        width = max(len(k) for k, _ in rows)
        print(f"\n{'metric'.ljust(width)}  value")
        print(f"{'-' * width}  ------")
        for k, v in rows:
            print(
                f"{k.ljust(width)}  {v:.4f}" if isinstance(v, float) else f"{k.ljust(width)}  {v}"
            )
    print(f"\nmetrics: {run_dir / 'metrics.json'}")


def _cmd_demo(args) -> int:
    """Train the classifier on built-in shapes, evaluate, export a SavedModel, report."""
    from keras_suite.common.run import train_run

    run_dir = Path(args.run_dir)
    start = time.time()
    overrides = list(args.set)
    metrics = train_run(
        "classification",
        args.preset,
        None,
        overrides,
        args.strategy,
        run_dir,
        cpu_devices=args.cpu_devices,
        overwrite=args.overwrite,
        command="ksuite demo",
    )
    from keras_suite.export.writer import export_run

    export_dir = export_run(run_dir, run_dir / "exports", name="classification")
    elapsed = time.time() - start
    print("\nKeras Suite demo — image classification on built-in shapes")
    _print_metrics(metrics, run_dir)
    print(f"run directory: {run_dir}")
    print(f"SavedModel:    {export_dir}  (signatures serving_default, serve_bytes)")
    print(f"plots:         {run_dir / 'plots'}")
    print(f"time:          {elapsed:.0f}s")
    print(
        "\nnext: ksuite serve --model_name classification "
        f"--model_base_path {Path(export_dir).parent.resolve()} --rest_api_port 8501"
    )
    return 0


def _cmd_apps(args) -> int:
    from keras_suite.common.commands import app_commands
    from keras_suite.common.registry import app_names, get_app

    verbs = app_commands()
    for name in app_names():
        try:
            app = get_app(name)
        except Exception as exc:  # one broken app folder must not hide the others
            print(f"{name:15s} (unavailable: {type(exc).__name__}: {exc})")
            continue
        print(f"{name:15s} presets: {', '.join(app.presets)}")
        print(f"{'':15s} {app.description}")
        print(f"{'':15s} predict takes: {app.predict_inputs}")
        own = verbs.get(name, [])
        if own:
            print(
                f"{'':15s} commands: "
                + ", ".join(
                    f"ksuite {c.name} {name + ' RUN_DIR' if c.per_app else ''}".rstrip()
                    for c in own
                )
            )
    return 0


def _cmd_bench(args) -> int:
    module = (
        f"keras_suite.apps.{args.name}.bench"
        if args.name in app_names()
        else f"keras_suite.{args.name}.bench"
    )
    try:
        bench = importlib.import_module(module)
    except ModuleNotFoundError:
        raise UserError(
            f"no benchmark named {args.name!r}; choose one of: {', '.join(bench_names())}"
        ) from None
    return int(bench.main(args.args) or 0)


def bench_names() -> list[str]:
    """Every app with a bench.py, plus the serving and tflite benchmarks."""
    from keras_suite.common.registry import APPS_DIR

    apps = [n for n in app_names() if (APPS_DIR / n / "bench.py").exists()]
    return [*apps, "serving", "tflite"]


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--preset", default="default", help="smoke (seconds), default (minutes on CPU) or full"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set train.epochs=3 (repeatable)",
    )
    p.add_argument(
        "--strategy",
        default="auto",
        choices=["auto", "default", "mirrored", "multiworker", "tpu"],
        help="tf.distribute strategy; auto picks multiworker when TF_CONFIG is set, "
        "mirrored with several GPUs or --cpu-devices, else default",
    )
    p.add_argument(
        "--cpu-devices",
        type=int,
        default=0,
        metavar="N",
        help="split the CPU into N logical devices (to try mirrored training on a CPU)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="delete an existing run in the run directory instead of resuming it",
    )


def build_parser() -> argparse.ArgumentParser:
    from keras_suite.common.commands import OneLineParser  # usage mistakes are one line too

    parser = OneLineParser(
        prog="ksuite",
        description="Keras Suite: train, evaluate, export, convert and serve deep-learning apps.",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="verbosity of the ksuite log on stderr",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "train",
        help="train an app (resumes if the run directory has checkpoints)",
        description="Train APP. Rerunning the same command resumes from the last checkpoint.",
    )
    p.add_argument("app", help="app name (see `ksuite apps`)")
    p.add_argument(
        "--config",
        metavar="FILE.yaml",
        help="YAML file of config overrides (sections data/model/train)",
    )
    p.add_argument("--run-dir", metavar="DIR", help="run directory (default runs/APP-PRESET)")
    _add_run_flags(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a finished run and rewrite RUN_DIR/metrics.json")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory made by `ksuite train`")
    from keras_suite.common.config import add_data_path_flags

    add_data_path_flags(p)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser(
        "demo",
        help="train + evaluate + export the image classifier on built-in data",
        description="The quickstart: trains the classifier on generated shapes (default preset), "
        "evaluates it, exports a SavedModel and prints a report.",
    )
    p.add_argument(
        "--run-dir", default="runs/demo", metavar="DIR", help="run directory (default runs/demo)"
    )
    _add_run_flags(p)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("apps", help="list the apps and their presets")
    p.set_defaults(func=_cmd_apps)

    p = sub.add_parser("bench", help="run a benchmark (prints numbers, writes JSON)")
    p.add_argument("name", help=", ".join(bench_names()))
    p.add_argument(
        "args", nargs=argparse.REMAINDER, help="arguments for that benchmark (--help lists them)"
    )
    p.set_defaults(func=_cmd_bench)

    from keras_suite.common.datacheck import register as register_data_check

    register_data_check(sub)
    for module in PLUGIN_MODULES:
        importlib.import_module(module).register(sub)
    from keras_suite.common.commands import register as register_app_commands

    register_app_commands(sub)
    return parser


# Verbs whose first argument is the app's name; the others take a RUN_DIR.
_APP_VERBS = ("train", "bench", "data")
_RUN_VERBS = ("evaluate", "export", "convert", "tflite-eval", "predict")


def app_script(app: str, argv: list[str]) -> int:
    """`python -m keras_suite.apps.APP VERB ARGS...` is `ksuite VERB APP ARGS...` (train,
    data check, bench and the app's own verbs) or `ksuite VERB ARGS...` (verbs that take a
    RUN_DIR, which must be a run of this app). Flags alone mean `train`."""
    from keras_suite.common.commands import app_commands

    own = [c.name for c in app_commands().get(app, []) if c.per_app]
    verbs = [*_APP_VERBS, *_RUN_VERBS, *own]
    if not argv or argv[0] in ("-h", "--help"):
        print(
            f"usage: python -m keras_suite.apps.{app} VERB [ARGS...]\n\n"
            f"The {app} app's own script: the same as `ksuite VERB ...` for this app.\n"
            f"verbs: {', '.join(verbs)}\n"
            f"  train [--preset P] [--set K=V] ...   = ksuite train {app} ...\n"
            f"  data check [--set K=V] ...          = ksuite data check {app} ...\n"
            f"  evaluate|export|convert|predict RUN_DIR ...  (RUN_DIR must be a {app} run)\n"
            f"`python -m keras_suite.apps.{app} VERB --help` shows a verb's flags."
        )
        return 0
    verb, rest = argv[0], list(argv[1:])
    if verb.startswith("-"):  # `python -m keras_suite.apps.X --preset smoke` trains
        verb, rest = "train", list(argv)
    if verb == "data":  # `data check` is the only data verb; `data` alone means it too
        return main(["data", "check", app, *(rest[1:] if rest[:1] == ["check"] else rest)])
    if verb in _APP_VERBS or verb in own:
        return main([verb, app, *rest])
    if verb in _RUN_VERBS:
        run_dir = next((a for a in rest if not a.startswith("-")), None)
        if run_dir and (Path(run_dir) / "run.json").is_file():
            from keras_suite.common.registry import read_run_meta

            other = read_run_meta(run_dir)["app"]
            if other != app:
                print(
                    f"error: {run_dir} is a {other} run, not a {app} run; use "
                    f"`python -m keras_suite.apps.{other} {verb} ...` or `ksuite {verb} ...`",
                    file=sys.stderr,
                )
                return 2
        return main([verb, *rest])
    print(
        f"error: unknown verb {verb!r} for the {app} app; choose one of: {', '.join(verbs)}",
        file=sys.stderr,
    )
    return 2


def quiet_logs() -> None:
    """Keep TensorFlow's and gRPC's C++ start-up chatter out of a terminal's output. Only the
    command line does this (a library import leaves the user's logging alone); users can
    set either variable themselves to see everything."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # 0 all, 1 no INFO, 2 no WARNING
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


def main(argv=None) -> int:
    quiet_logs()
    if argv is None:  # the `ksuite` command itself (not a Python caller or a test)
        from keras_suite.common.stderr_filter import hide_harmless_tf_lines

        hide_harmless_tf_lines()
    try:
        args = build_parser().parse_args(argv)
        from keras_suite.common.runlog import setup_logging

        setup_logging(args.log_level)
        return args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
