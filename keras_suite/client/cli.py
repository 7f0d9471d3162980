"""`ksuite predict` and `ksuite loadtest`: running a model on inputs, in-process or on a server.

Imports stay inside the handlers so that `ksuite --help` does not load TensorFlow.
"""

from __future__ import annotations

from keras_suite.common.errors import UserError


def _cmd_predict(args) -> int:
    from keras_suite.predict import run_predict

    return run_predict(args)


def _cmd_loadtest(args) -> int:
    from keras_suite.client.loadtest import load_inputs, make_caller_factory, run_load
    from keras_suite.common.runlog import write_json_atomic

    protocol = "grpc" if args.grpc else "rest"
    signature, inputs = load_inputs(args.input_json, args.warmup_from, args.signature)
    signature = args.signature or signature
    if args.rows < 0:
        raise UserError(f"--rows {args.rows}: give a positive number of rows per request")
    if args.rows:
        import numpy as np

        inputs = {k: np.resize(v, (args.rows,) + v.shape[1:]) for k, v in inputs.items()}
    factory = make_caller_factory(
        protocol, args.server, args.model, signature, inputs, args.timeout, args.version, args.label
    )
    report = run_load(
        factory, args.concurrency, args.requests, args.duration, progress_desc="loadtest"
    )
    report = {
        "protocol": protocol,
        "server": args.server,
        "model": args.model,
        "signature_name": signature or "serving_default",
        "batch_size": int(len(next(iter(inputs.values())))),
        **report,
    }
    write_json_atomic(args.out, report)
    print(
        f"{report['ok']} ok, {report['errors']} errors in {report['elapsed_s']} s: "
        f"{report['throughput_rps']} req/s; latency p50 {report['p50_ms']} ms, p95 {report['p95_ms']} ms, "
        f"p99 {report['p99_ms']} ms"
    )
    for message, count in report["error_messages"].items():
        print(f"  {count} x {message}")
    print(f"report: {args.out}")
    return 1 if report["errors"] else 0


def _add_target_flags(p):
    p.add_argument("--model", help="served model name")
    p.add_argument("--version", type=int, help="model version (default: the latest)")
    p.add_argument("--label", help="version label, e.g. stable or canary")
    p.add_argument(
        "--signature", default="", help="signature name (default serving_default or the app's)"
    )
    p.add_argument(
        "--grpc", action="store_true", help="--server is a gRPC host:port (default: REST URL)"
    )
    p.add_argument("--timeout", type=float, default=30.0, help="per-request timeout in seconds")
    p.add_argument(
        "--input-json",
        metavar="FILE",
        help='a columnar request {"signature_name": ..., "inputs": {...}} to send',
    )


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict",
        help="run a model on inputs (files, sentences, seeds): in-process or on a server",
        description="ksuite predict RUN_DIR INPUT... runs the run's model in-process on what "
        "its app takes (`ksuite apps` lists it: image files, sentences, a "
        "prompt, seeds); --export or --server run it elsewhere.",
    )
    p.add_argument(
        "inputs",
        nargs="*",
        metavar="[RUN_DIR] INPUT",
        help="a run directory (optional first), then the app's inputs",
    )
    p.add_argument("--run", metavar="RUN_DIR", help="run directory (app, info, and local weights)")
    p.add_argument(
        "--export", metavar="VERSION_DIR", help="a SavedModel version folder to run locally"
    )
    p.add_argument("--server", help="REST URL (http://host:8501) or, with --grpc, host:8500")
    p.add_argument(
        "--out",
        default=None,
        help="folder for predictions.json and renderings (default: a new folder "
        "./predictions/<run or model name>-<n> per call)",
    )
    from keras_suite.common.config import add_data_path_flags

    add_data_path_flags(p)  # accepted for symmetry: predict never reads the training data
    _add_target_flags(p)
    p.set_defaults(func=_cmd_predict)

    p = subparsers.add_parser(
        "loadtest", help="N concurrent clients; throughput and latency percentiles"
    )
    p.add_argument("--server", required=True, help="REST URL or, with --grpc, host:port")
    p.add_argument(
        "--concurrency", type=int, default=8, help="client threads, each with its own connection"
    )
    p.add_argument("--requests", type=int, help="total request budget")
    p.add_argument("--duration", type=float, help="time limit in seconds")
    p.add_argument(
        "--warmup-from", metavar="VERSION_DIR", help="send the first warm-up request of this export"
    )
    p.add_argument(
        "--rows",
        type=int,
        default=0,
        help="rows per request (the request's rows repeated); default: as given",
    )
    p.add_argument("--out", default="loadtest.json", help="JSON report path")
    _add_target_flags(p)
    p.set_defaults(func=_cmd_loadtest)
