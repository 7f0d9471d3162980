"""Server commands for `ksuite`: serve and serving-config.

Imports stay inside the handlers so that `ksuite --help` does not load TensorFlow.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from keras_suite.common.errors import UserError


def _cmd_serve(args) -> int:
    from keras_suite.serving.server import options_from_args, serve_forever

    return serve_forever(options_from_args(args))


def _cmd_config(args) -> int:
    from keras_suite.serving import configs

    out = Path(args.out)
    if args.kind == "models":
        entries = []
        for spec in args.model:
            entries.append(_parse_model_spec(spec))
        if not entries:
            raise UserError("add at least one --model NAME=BASE_PATH[,policy=...][,label:L=V]")
        path = configs.write_models_config(out, entries)
    elif args.kind == "batching":
        cfg = configs.BatchingConfig(
            max_batch_size=args.max_batch_size,
            batch_timeout_micros=args.batch_timeout_micros,
            max_enqueued_batches=args.max_enqueued_batches,
            num_batch_threads=args.num_batch_threads,
            allowed_batch_sizes=args.allowed_batch_sizes or [],
            pad_variable_length_inputs=args.pad_variable_length_inputs,
        )
        path = configs.write_batching_parameters(out, cfg)
    else:
        path = configs.write_monitoring_config(out, args.metrics_path)
    print(path.read_text(), end="")
    print(f"# written to {path}")
    return 0


def _parse_model_spec(spec: str):
    """NAME=BASE[,policy=latest:2|all|specific:1:2][,label:stable=1]..."""
    from keras_suite.serving.configs import ModelEntry

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
        raise UserError(
            f"--model {spec!r}: options are policy=latest[:N]|all|specific:V1:V2 and "
            "label:NAME=VERSION"
        ) from None
    return entry


def register(subparsers) -> None:
    from keras_suite.serving.server import add_server_flags

    p = subparsers.add_parser(
        "serve",
        help="TF-Serving-compatible server (REST + gRPC)",
        description="Takes tensorflow_model_server's flags. Binds 127.0.0.1 unless --host.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_server_flags(p)
    p.set_defaults(func=_cmd_serve)

    p = subparsers.add_parser(
        "serving-config", help="write models.config, batching_parameters.txt or monitoring.config"
    )
    p.add_argument("kind", choices=["models", "batching", "monitoring"])
    p.add_argument("--out", required=True, help="file to write (atomically)")
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="SPEC",
        help="models: NAME=BASE_PATH[,policy=latest:N|all|specific:V1:V2][,label:L=V] (repeatable)",
    )
    p.add_argument(
        "--max-batch-size", type=int, default=32, help="batching: largest batch the model runs"
    )
    p.add_argument(
        "--batch-timeout-micros",
        type=int,
        default=2000,
        help="batching: longest wait for a batch to fill, in microseconds",
    )
    p.add_argument(
        "--max-enqueued-batches",
        type=int,
        default=100,
        help="batching: queue bound in batches (beyond it requests get UNAVAILABLE)",
    )
    p.add_argument(
        "--num-batch-threads", type=int, default=2, help="batching: threads running batches"
    )
    p.add_argument(
        "--allowed-batch-sizes",
        type=int,
        nargs="*",
        help="batching: sizes to pad to, increasing, the last equal to --max-batch-size",
    )
    p.add_argument(
        "--pad-variable-length-inputs",
        action="store_true",
        help="batching: pad inputs of different lengths (TF Serving option)",
    )
    p.add_argument(
        "--metrics-path",
        default="/monitoring/prometheus/metrics",
        help="monitoring: URL path of the Prometheus metrics on the REST port",
    )
    p.set_defaults(func=_cmd_config)
