"""`ksuite bench serving`: throughput and latency of `ksuite serve`, REST vs gRPC, with and
without server-side batching, measured side by side in one run.

The server runs as its own process (as in production), so the load generator's threads
do not share its interpreter. Each configuration gets the same request, concurrency and
time budget; the JSON report keeps every number plus the ratios.

    ksuite bench serving                                  # a small CNN on 32x32 images
    ksuite bench serving --export runs/demo/exports/classification/1 --duration 20
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
from common.errors import UserError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(base: Path, name: str, batching_file: Path | None, threads: int):
    grpc_port, rest_port = _free_port(), _free_port()
    cmd = [sys.executable, "-m", "common.cli", "serve", f"--port={grpc_port}", f"--rest_api_port={rest_port}",
           f"--model_name={name}", f"--model_base_path={base}", "--file_system_poll_wait_seconds=0"]
    if threads:
        cmd += [f"--tensorflow_intra_op_parallelism={threads}", f"--tensorflow_inter_op_parallelism={threads}"]
    if batching_file is not None:
        cmd += ["--enable_batching", f"--batching_parameters_file={batching_file}"]
    env = dict(os.environ, KSUITE_PROGRESS="0")
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent) + os.pathsep + env.get("PYTHONPATH", "")
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    import requests

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise UserError(f"ksuite serve exited: {process.stderr.read()[-2000:]}")
        try:
            if requests.get(f"http://127.0.0.1:{rest_port}/v1/models/{name}", timeout=2).status_code == 200:
                return process, grpc_port, rest_port
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    process.kill()
    raise UserError("ksuite serve did not become ready within 300 s")


def _stop(process) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="ksuite bench serving", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", metavar="VERSION_DIR",
                        help="benchmark this export (its first warm-up request is sent); default: a small CNN")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per configuration")
    parser.add_argument("--rows", type=int, default=0,
                        help="rows per request (the sample request is repeated); default: as the sample")
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--batch-timeout-micros", type=int, default=2000)
    parser.add_argument("--num-batch-threads", type=int, default=2)
    parser.add_argument("--server-threads", type=int, default=0,
                        help="TF intra/inter-op threads in the server (0: TensorFlow's default)")
    parser.add_argument("--out", default="bench-results/serving.json")
    args = parser.parse_args(argv)
    common.quiet_import_tensorflow()
    from serving.configs import BatchingConfig, write_batching_parameters
    from serving.loadtest import load_inputs

    workdir = Path(tempfile.mkdtemp(prefix="ksuite-bench-serving-"))
    if args.export:
        version_dir = Path(args.export)
        base, name = version_dir.parent, version_dir.parent.name
        signature, inputs = load_inputs(None, str(version_dir))
        model_desc = str(version_dir)
    else:
        from serving.export import publish_version
        from serving.testmodels import cnn_samples, write_keras_cnn

        name = "cnn"
        version_dir = publish_version(workdir / "models", name, write_keras_cnn, samples=cnn_samples())
        base = version_dir.parent
        signature, inputs = load_inputs(None, str(version_dir))
        model_desc = "serving.testmodels.write_keras_cnn (3 conv layers, 32x32x3 input)"
    if args.rows:
        import numpy as np

        inputs = {k: np.resize(v, (args.rows,) + v.shape[1:]) for k, v in inputs.items()}
    batch_rows = int(len(next(iter(inputs.values()))))
    batching = BatchingConfig(max_batch_size=args.max_batch_size, batch_timeout_micros=args.batch_timeout_micros,
                              max_enqueued_batches=1000, num_batch_threads=args.num_batch_threads,
                              allowed_batch_sizes=[])
    batching_file = write_batching_parameters(workdir / "batching_parameters.txt", batching)

    results = []
    try:
        results.append(_in_process(args, version_dir, signature, inputs))
        for batched in (False, True):
            process, grpc_port, rest_port = _start_server(base, name, batching_file if batched else None,
                                                          args.server_threads)
            try:
                for protocol in ("rest", "grpc"):
                    remote = f"http://127.0.0.1:{rest_port}" if protocol == "rest" else f"127.0.0.1:{grpc_port}"
                    results.append(_measure(args, protocol, batched, remote, name, signature, inputs))
            finally:
                _stop(process)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    def rps(protocol, batched):
        return next(r["throughput_rps"] for r in results if r["protocol"] == protocol and r["batching"] == batched)

    ratios = {
        "grpc_over_rest_no_batching": round(rps("grpc", False) / rps("rest", False), 3),
        "grpc_over_rest_batching": round(rps("grpc", True) / rps("rest", True), 3),
        "batching_over_none_rest": round(rps("rest", True) / rps("rest", False), 3),
        "batching_over_none_grpc": round(rps("grpc", True) / rps("grpc", False), 3),
        "grpc_over_in_process": round(rps("grpc", False) / results[0]["throughput_rps"], 3),
    }
    report = {"model": model_desc, "signature_name": signature or "serving_default",
              "rows_per_request": batch_rows, "concurrency": args.concurrency, "duration_s": args.duration,
              "batching_parameters": batching.__dict__, "cpu_count": os.cpu_count(),
              "load_average_1m": round(os.getloadavg()[0], 2),
              "command": "ksuite bench serving " + " ".join(argv if argv is not None else sys.argv[3:]),
              "results": results, "ratios": ratios}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from common.runlog import write_json_atomic

    write_json_atomic(out, report)
    print(json.dumps(ratios, indent=2))
    print(f"report: {out}")
    return 0


def _in_process(args, version_dir, signature, inputs) -> dict:
    """The same request called directly on the loaded SavedModel: the ceiling for a server."""
    from serving.loadtest import run_load
    from serving.servable import Servable

    servable = Servable.load("bench", 1, Path(version_dir), warmup=False)
    factory = lambda: (lambda: servable.predict(signature, inputs))  # noqa: E731
    run_load(factory, args.concurrency, requests=args.concurrency * 5)
    report = run_load(factory, args.concurrency, duration_s=args.duration, progress_desc="in-process")
    report.update(protocol="in-process", batching=False)
    print(f"{'in-process (no server)':22s} {report['throughput_rps']:8.1f} req/s  p50 {report['p50_ms']:7.2f} ms  "
          f"p95 {report['p95_ms']:7.2f} ms  p99 {report['p99_ms']:7.2f} ms", flush=True)
    return report


def _measure(args, protocol, batched, remote, name, signature, inputs) -> dict:
    from serving.loadtest import make_caller_factory, run_load

    factory = make_caller_factory(protocol, remote, name, signature, inputs, timeout=60)
    run_load(factory, args.concurrency, requests=args.concurrency * 5)  # warm the connections
    label = f"{protocol} {'batching' if batched else 'no batching'}"
    report = run_load(factory, args.concurrency, duration_s=args.duration, progress_desc=label)
    report.update(protocol=protocol, batching=batched)
    print(f"{label:22s} {report['throughput_rps']:8.1f} req/s  p50 {report['p50_ms']:7.2f} ms  "
          f"p95 {report['p95_ms']:7.2f} ms  p99 {report['p99_ms']:7.2f} ms  errors {report['errors']}", flush=True)
    return report
