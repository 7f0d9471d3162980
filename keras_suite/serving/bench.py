"""`ksuite bench serving`: throughput and latency of `ksuite serve`, REST vs gRPC, with and
without server-side batching, at 1, 16 and 64 clients, measured side by side in one run.

The server runs as its own process (as in production), and so does every load generator:
`wrk` (compiled, for REST; a Lua script posts the body and reports p50/p95/p99) and the
project's Python client (`ksuite loadtest`, REST and gRPC). Each result carries the load
generator's CPU use in cores, so a generator that is itself the bottleneck shows. The
JSON report keeps every number plus the REST/gRPC ratios.

    ksuite bench serving                                  # a small CNN on 32x32 images
    ksuite bench serving --export runs/demo/exports/classification/1 --duration 20
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from keras_suite import common
from keras_suite.common.errors import UserError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(base: Path, name: str, batching_file: Path | None, threads: int):
    grpc_port, rest_port = _free_port(), _free_port()
    cmd = [
        sys.executable,
        "-m",
        "keras_suite.cli",
        "serve",
        f"--port={grpc_port}",
        f"--rest_api_port={rest_port}",
        f"--model_name={name}",
        f"--model_base_path={base}",
        "--file_system_poll_wait_seconds=0",
    ]
    if threads:
        cmd += [
            f"--tensorflow_intra_op_parallelism={threads}",
            f"--tensorflow_inter_op_parallelism={threads}",
        ]
    if batching_file is not None:
        cmd += ["--enable_batching", f"--batching_parameters_file={batching_file}"]
    env = dict(os.environ, KSUITE_PROGRESS="0")
    env["PYTHONPATH"] = (
        str(Path(__file__).resolve().parent.parent) + os.pathsep + env.get("PYTHONPATH", "")
    )
    process = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    import requests

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise UserError(f"ksuite serve exited: {process.stderr.read()[-2000:]}")
        try:
            if (
                requests.get(
                    f"http://127.0.0.1:{rest_port}/v1/models/{name}", timeout=2
                ).status_code
                == 200
            ):
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
    parser = argparse.ArgumentParser(
        prog="ksuite bench serving",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--export",
        metavar="VERSION_DIR",
        help="benchmark this export (its first warm-up request is sent); default: a small CNN",
    )
    parser.add_argument("--concurrency", default="1,16,64", help="client counts, comma-separated")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per configuration")
    parser.add_argument(
        "--generators",
        default="wrk,python",
        help="REST load generators: wrk and/or python (gRPC always uses python)",
    )
    parser.add_argument(
        "--rows",
        type=int,
        default=0,
        help="rows per request (the sample request is repeated); default: as the sample",
    )
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--batch-timeout-micros", type=int, default=2000)
    parser.add_argument("--num-batch-threads", type=int, default=2)
    parser.add_argument(
        "--server-threads",
        type=int,
        default=0,
        help="TF intra/inter-op threads in the server (0: TensorFlow's default)",
    )
    parser.add_argument("--out", default="bench-results/serving.json")
    args = parser.parse_args(argv)
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    generators = [g for g in args.generators.split(",") if g]
    if "wrk" in generators and not shutil.which("wrk"):
        raise UserError("wrk is not installed (apt-get install wrk), or pass --generators python")
    common.quiet_import_tensorflow()
    from keras_suite.client.loadtest import load_inputs
    from keras_suite.serving.configs import BatchingConfig, write_batching_parameters

    workdir = Path(tempfile.mkdtemp(prefix="ksuite-bench-serving-"))
    if args.export:
        version_dir = Path(args.export)
        base, name = version_dir.parent, version_dir.parent.name
        model_desc = str(version_dir)
    else:
        from keras_suite.export.writer import publish_version
        from keras_suite.serving.testmodels import cnn_samples, write_keras_cnn

        name = "cnn"
        version_dir = publish_version(
            workdir / "models", name, write_keras_cnn, samples=cnn_samples()
        )
        base = version_dir.parent
        model_desc = "keras_suite.serving.testmodels.write_keras_cnn (3 conv layers, 32x32x3 input)"
    signature, inputs = load_inputs(None, str(version_dir))
    if args.rows:
        import numpy as np

        inputs = {k: np.resize(v, (args.rows,) + v.shape[1:]) for k, v in inputs.items()}
    from keras_suite.client.clients import _jsonable

    body = {"inputs": {k: _jsonable(v) for k, v in inputs.items()}}
    if signature:
        body["signature_name"] = signature
    (workdir / "body.json").write_text(json.dumps(body))
    batching = BatchingConfig(
        max_batch_size=args.max_batch_size,
        batch_timeout_micros=args.batch_timeout_micros,
        max_enqueued_batches=1000,
        num_batch_threads=args.num_batch_threads,
        allowed_batch_sizes=[],
    )
    batching_file = write_batching_parameters(workdir / "batching_parameters.txt", batching)

    results = []
    try:
        for batched in (False, True):
            process, grpc_port, rest_port = _start_server(
                base, name, batching_file if batched else None, args.server_threads
            )
            try:
                for clients in concurrencies:
                    runs = [("rest", g) for g in generators] + [("grpc", "python")]
                    for protocol, generator in runs:
                        remote = (
                            f"http://127.0.0.1:{rest_port}"
                            if protocol == "rest"
                            else f"127.0.0.1:{grpc_port}"
                        )
                        report = _measure(
                            args,
                            protocol,
                            generator,
                            clients,
                            remote,
                            name,
                            version_dir,
                            workdir,
                            process.pid,
                        )
                        report.update(protocol=protocol, generator=generator, batching=batched)
                        results.append(report)
                        _print(report)
            finally:
                _stop(process)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    ratios = {}
    for batched in (False, True):
        for clients in concurrencies:
            grpc_r = next(
                r
                for r in results
                if r["protocol"] == "grpc"
                and r["batching"] == batched
                and r["concurrency"] == clients
            )
            for generator in generators:
                rest_r = next(
                    r
                    for r in results
                    if r["protocol"] == "rest"
                    and r["generator"] == generator
                    and r["batching"] == batched
                    and r["concurrency"] == clients
                )
                key = f"{'batching' if batched else 'no_batching'}_{clients}_clients_{generator}"
                ratios[key] = {
                    "rest_over_grpc_rps": round(
                        rest_r["throughput_rps"] / grpc_r["throughput_rps"], 3
                    ),
                    "rest_p95_over_grpc_p95": round(rest_r["p95_ms"] / grpc_r["p95_ms"], 3),
                }
    report = {
        "model": model_desc,
        "signature_name": signature or "serving_default",
        "rows_per_request": int(len(next(iter(inputs.values())))),
        "duration_s": args.duration,
        "batching_parameters": batching.__dict__,
        "cpu_count": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "command": "ksuite bench serving " + " ".join(argv if argv is not None else sys.argv[3:]),
        "results": results,
        "ratios": ratios,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from keras_suite.common.runlog import write_json_atomic

    write_json_atomic(out, report)
    print(markdown_table(results))
    print(json.dumps(ratios, indent=2))
    print(f"report: {out}")
    return 0


def markdown_table(results: list[dict]) -> str:
    """The results as the Markdown table docs/results/serving.md shows."""
    rows = [
        "| batching | clients | protocol (load generator) | req/s | p50 ms | p95 ms | p99 ms | errors "
        "| client CPU (cores) | server CPU (cores) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        rows.append(
            f"| {'on' if r['batching'] else 'off'} | {r['concurrency']} | {r['protocol'].upper()} "
            f"({r['generator']}) | {r['throughput_rps']:.0f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} "
            f"| {r['p99_ms']:.1f} | {r['errors']} | {r['client_cpu_cores']} | {r['server_cpu_cores']} |"
        )
    return "\n".join(rows)


def _process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, every thread) a process has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _print(r: dict) -> None:
    print(
        f"{r['protocol']:4s} {r['generator']:6s} {'batching' if r['batching'] else 'no batching':11s} "
        f"{r['concurrency']:3d} clients {r['throughput_rps']:8.1f} req/s  p50 {r['p50_ms']:7.2f}  "
        f"p95 {r['p95_ms']:7.2f}  p99 {r['p99_ms']:7.2f} ms  errors {r['errors']}  "
        f"CPU cores: client {r['client_cpu_cores']} server {r['server_cpu_cores']}",
        flush=True,
    )


# wrk posts the prepared body and prints its own latency percentiles as one JSON line.
_WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("%(body)s", "rb"); wrk.body = f:read("*a"); f:close()
done = function(summary, latency, requests)
  io.write(string.format('WRK_JSON {"requests": %%d, "errors": %%d, "duration_us": %%d, '
    .. '"p50_us": %%d, "p95_us": %%d, "p99_us": %%d, "max_us": %%d}\\n',
    summary.requests, summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout, summary.duration,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
"""


def _measure(
    args, protocol, generator, clients, remote, name, version_dir, workdir, server_pid
) -> dict:
    """One load generator run in its own process. Its CPU use comes from getrusage (wrk) or
    from inside (the Python client, over its run only); the server's from /proc."""
    if generator == "wrk":
        script = workdir / "post.lua"
        script.write_text(_WRK_SCRIPT % {"body": workdir / "body.json"})
        url = f"{remote}/v1/models/{name}:predict"
        warm = ["wrk", "-t1", f"-c{clients}", "-d1s", "-s", str(script), url]
        subprocess.run(
            warm, check=True, capture_output=True
        )  # warm the server's threads and caches
        seconds = max(
            1, round(args.duration)
        )  # wrk takes whole seconds ("-d10.0s" is a usage error)
        cmd = [
            "wrk",
            f"-t{min(2, clients)}",
            f"-c{clients}",
            f"-d{seconds}s",
            "--timeout",
            "30s",
            "-s",
            str(script),
            url,
        ]
    else:
        out = workdir / "loadtest.json"
        cmd = [
            sys.executable,
            "-m",
            "keras_suite.cli",
            "loadtest",
            "--server",
            remote,
            "--model",
            name,
            "--warmup-from",
            str(version_dir),
            "--concurrency",
            str(clients),
            "--duration",
            str(args.duration),
            "--rows",
            str(args.rows),
            "--out",
            str(out),
        ]
        cmd += ["--grpc"] if protocol == "grpc" else []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = _process_cpu_s(server_pid)
    started = time.perf_counter()
    env = dict(os.environ, KSUITE_PROGRESS="0")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = _process_cpu_s(server_pid) - server_before
    if done.returncode not in (0, 1):
        raise UserError(f"{' '.join(cmd)} failed: {done.stderr[-2000:]}")
    if generator == "wrk":
        line = next((x for x in done.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
        if line is None:
            raise UserError(
                f"wrk printed no summary (exit {done.returncode}): "
                f"{(done.stdout + done.stderr)[-1500:]}"
            )
        w = json.loads(line.removeprefix("WRK_JSON "))
        elapsed = w["duration_us"] / 1e6
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return {
            "concurrency": clients,
            "requests": w["requests"],
            "ok": w["requests"] - w["errors"],
            "errors": w["errors"],
            "elapsed_s": round(elapsed, 3),
            "throughput_rps": round((w["requests"] - w["errors"]) / elapsed, 2),
            "p50_ms": w["p50_us"] / 1000,
            "p95_ms": w["p95_us"] / 1000,
            "p99_ms": w["p99_us"] / 1000,
            "max_ms": w["max_us"] / 1000,
            "client_cpu_cores": round(cpu / wall, 2),
            "server_cpu_cores": round(server_cpu / elapsed, 2),
        }
    report = json.loads(out.read_text())  # client_cpu_cores measured inside, over the run only
    keep = (
        "concurrency",
        "requests",
        "ok",
        "errors",
        "elapsed_s",
        "throughput_rps",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "max_ms",
        "client_cpu_cores",
        "error_messages",
    )
    # The server's CPU is counted over the whole subprocess, which includes the client's
    # TensorFlow import (the server idles then): divided by the run itself, not the wall.
    return {
        **{k: report[k] for k in keep},
        "server_cpu_cores": round(server_cpu / report["elapsed_s"], 2),
    }
