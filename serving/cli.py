"""Serving commands for `ksuite`: export, serve, predict, loadtest, serving-config.

Imports stay inside the handlers so that `ksuite --help` does not load TensorFlow.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from common.errors import UserError


def _cmd_export(args) -> int:
    from serving.export import export_run

    version_dir = export_run(args.run_dir, args.base, name=args.name, version=args.version)
    info = json.loads((version_dir / "assets.extra" / "ksuite_export.json").read_text())
    print(f"exported {version_dir}")
    for line in info["signatures"]:
        print(f"  {line}")
    print(f"  {info['warmup_records']} warm-up requests; {len(info['ops'])} op types, all available "
          "in stock tensorflow_model_server")
    print(f"serve it: ksuite serve --model_name={version_dir.parent.name} "
          f"--model_base_path={version_dir.parent.resolve()} --rest_api_port=8501")
    return 0


def _cmd_serve(args) -> int:
    from serving.server import options_from_args, serve_forever

    return serve_forever(options_from_args(args))


def _cmd_predict(args) -> int:
    from serving.predict import run_predict

    return run_predict(args)


def _cmd_loadtest(args) -> int:
    from common.runlog import write_json_atomic
    from serving.loadtest import load_inputs, make_caller_factory, run_load

    protocol = "grpc" if args.grpc else "rest"
    signature, inputs = load_inputs(args.input_json, args.warmup_from, args.signature)
    signature = args.signature or signature
    if args.rows < 0:
        raise UserError(f"--rows {args.rows}: give a positive number of rows per request")
    if args.rows:
        import numpy as np

        inputs = {k: np.resize(v, (args.rows,) + v.shape[1:]) for k, v in inputs.items()}
    factory = make_caller_factory(protocol, args.server, args.model, signature, inputs, args.timeout,
                                  args.version, args.label)
    report = run_load(factory, args.concurrency, args.requests, args.duration, progress_desc="loadtest")
    report = {"protocol": protocol, "server": args.server, "model": args.model,
              "signature_name": signature or "serving_default",
              "batch_size": int(len(next(iter(inputs.values())))), **report}
    write_json_atomic(args.out, report)
    print(f"{report['ok']} ok, {report['errors']} errors in {report['elapsed_s']} s: "
          f"{report['throughput_rps']} req/s; latency p50 {report['p50_ms']} ms, p95 {report['p95_ms']} ms, "
          f"p99 {report['p99_ms']} ms")
    for message, count in report["error_messages"].items():
        print(f"  {count} x {message}")
    print(f"report: {args.out}")
    return 1 if report["errors"] else 0


def _cmd_config(args) -> int:
    from serving import configs

    out = Path(args.out)
    if args.kind == "models":
        entries = []
        for spec in args.model:
            entries.append(_parse_model_spec(spec))
        if not entries:
            raise UserError("add at least one --model NAME=BASE_PATH[,policy=...][,label:L=V]")
        path = configs.write_models_config(out, entries)
    elif args.kind == "batching":
        cfg = configs.BatchingConfig(max_batch_size=args.max_batch_size,
                                     batch_timeout_micros=args.batch_timeout_micros,
                                     max_enqueued_batches=args.max_enqueued_batches,
                                     num_batch_threads=args.num_batch_threads,
                                     allowed_batch_sizes=args.allowed_batch_sizes or [],
                                     pad_variable_length_inputs=args.pad_variable_length_inputs)
        path = configs.write_batching_parameters(out, cfg)
    else:
        path = configs.write_monitoring_config(out, args.metrics_path)
    print(path.read_text(), end="")
    print(f"# written to {path}")
    return 0


def _parse_model_spec(spec: str):
    """NAME=BASE[,policy=latest:2|all|specific:1:2][,label:stable=1]..."""
    from serving.configs import ModelEntry

    head, *options = spec.split(",")
    if "=" not in head:
        raise UserError(f"--model {spec!r}: start with NAME=BASE_PATH")
    name, base = head.split("=", 1)
    entry = ModelEntry(name=name, base_path=base)
    try:
        for option in options:
            key, value = option.split("=", 1)
            if key == "policy":
                kind, *nums = value.split(":")
                entry.policy = kind
                if kind == "latest" and nums:
                    entry.num_versions = int(nums[0])
                if kind == "specific":
                    entry.versions = [int(n) for n in nums]
            elif key.startswith("label:"):
                entry.labels[key.split(":", 1)[1]] = int(value)
            else:
                raise ValueError(key)
    except ValueError:
        raise UserError(f"--model {spec!r}: options are policy=latest[:N]|all|specific:V1:V2 and "
                        "label:NAME=VERSION") from None
    return entry


def _add_target_flags(p):
    p.add_argument("--model", help="served model name")
    p.add_argument("--version", type=int, help="model version (default: the latest)")
    p.add_argument("--label", help="version label, e.g. stable or canary")
    p.add_argument("--signature", default="", help="signature name (default serving_default or the app's)")
    p.add_argument("--grpc", action="store_true", help="--server is a gRPC host:port (default: REST URL)")
    p.add_argument("--timeout", type=float, default=30.0, help="per-request timeout in seconds")
    p.add_argument("--input-json", metavar="FILE",
                   help='a columnar request {"signature_name": ..., "inputs": {...}} to send')


def register(subparsers) -> None:
    from serving.server import add_server_flags

    p = subparsers.add_parser("export", help="export a run as a versioned, TF-Serving-ready SavedModel",
                              description="Write BASE/NAME/<version>/ with warm-up requests, after checking "
                                          "that every op exists in stock tensorflow_model_server.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished `ksuite train` run")
    p.add_argument("--base", required=True, metavar="DIR", help="model base folder (one subfolder per model)")
    p.add_argument("--name", help="model name (default: the app's name)")
    p.add_argument("--version", type=int, help="version number (default: next free integer)")
    p.set_defaults(func=_cmd_export)

    p = subparsers.add_parser("serve", help="TF-Serving-compatible server (REST + gRPC)",
                              description="Takes tensorflow_model_server's flags. Binds 127.0.0.1 unless --host.",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_server_flags(p)
    p.set_defaults(func=_cmd_serve)

    p = subparsers.add_parser("predict", help="run a model on inputs (files, sentences, seeds): in-process or on a server",
                              description="ksuite predict RUN_DIR INPUT... runs the run's model in-process on what "
                                          "its app takes (`ksuite apps` lists it: image files, sentences, a "
                                          "prompt, seeds); --export or --server run it elsewhere.")
    p.add_argument("inputs", nargs="*", metavar="[RUN_DIR] INPUT",
                   help="a run directory (optional first), then the app's inputs")
    p.add_argument("--run", metavar="RUN_DIR", help="run directory (app, info, and local weights)")
    p.add_argument("--export", metavar="VERSION_DIR", help="a SavedModel version folder to run locally")
    p.add_argument("--server", help="REST URL (http://host:8501) or, with --grpc, host:8500")
    p.add_argument("--out", default="predictions", help="folder for predictions.json and renderings")
    _add_target_flags(p)
    p.set_defaults(func=_cmd_predict)

    p = subparsers.add_parser("loadtest", help="N concurrent clients; throughput and latency percentiles")
    p.add_argument("--server", required=True, help="REST URL or, with --grpc, host:port")
    p.add_argument("--concurrency", type=int, default=8, help="client threads, each with its own connection")
    p.add_argument("--requests", type=int, help="total request budget")
    p.add_argument("--duration", type=float, help="time limit in seconds")
    p.add_argument("--warmup-from", metavar="VERSION_DIR", help="send the first warm-up request of this export")
    p.add_argument("--rows", type=int, default=0,
                   help="rows per request (the request's rows repeated); default: as given")
    p.add_argument("--out", default="loadtest.json", help="JSON report path")
    _add_target_flags(p)
    p.set_defaults(func=_cmd_loadtest)

    p = subparsers.add_parser("serving-config", help="write models.config, batching_parameters.txt or monitoring.config")
    p.add_argument("kind", choices=["models", "batching", "monitoring"])
    p.add_argument("--out", required=True, help="file to write (atomically)")
    p.add_argument("--model", action="append", default=[], metavar="SPEC",
                   help="models: NAME=BASE_PATH[,policy=latest:N|all|specific:V1:V2][,label:L=V] (repeatable)")
    p.add_argument("--max-batch-size", type=int, default=32, help="batching: largest batch the model runs")
    p.add_argument("--batch-timeout-micros", type=int, default=2000,
                   help="batching: longest wait for a batch to fill, in microseconds")
    p.add_argument("--max-enqueued-batches", type=int, default=100,
                   help="batching: queue bound in batches (beyond it requests get UNAVAILABLE)")
    p.add_argument("--num-batch-threads", type=int, default=2, help="batching: threads running batches")
    p.add_argument("--allowed-batch-sizes", type=int, nargs="*",
                   help="batching: sizes to pad to, increasing, the last equal to --max-batch-size")
    p.add_argument("--pad-variable-length-inputs", action="store_true",
                   help="batching: pad inputs of different lengths (TF Serving option)")
    p.add_argument("--metrics-path", default="/monitoring/prometheus/metrics",
                   help="monitoring: URL path of the Prometheus metrics on the REST port")
    p.set_defaults(func=_cmd_config)
