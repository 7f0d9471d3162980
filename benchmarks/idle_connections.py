"""Good requests to `ksuite serve`'s REST API while thousands of idle sockets are open.

Idle clients (connected, sending nothing, or kept alive between requests) must not lock
working clients out: at --rest_max_connections the server closes the connection idle
longest to make room (serving/http_server.py). This script starts `ksuite serve` as its own
process, times M good predict requests (each on a new connection, like a new client), then
opens N idle sockets and times M more with them open. It prints and writes, per phase, the
status codes and latency percentiles, plus the server's thread count and resident memory
(from /proc/<pid>) and how many idle connections the server closed (its Prometheus
metric). It asserts nothing: the numbers are for reading.

    python benchmarks/idle_connections.py                       # 2000 idle, 200 requests
    python benchmarks/idle_connections.py --idle 5000 --max-connections 256
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BODY = json.dumps({"instances": [[0.5, -1.0, 2.0, 0.0], [1.0, 1.0, 1.0, 1.0]]}).encode()
EVICTED_METRIC = ":ksuite:serving:rest_idle_connections_evicted"
METRICS_PATH = "/monitoring/prometheus/metrics"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def start_server(base: Path, name: str, workdir: Path, max_connections: int | None):
    """`ksuite serve` in its own process; returns (process, REST port) once it answers."""
    monitoring = workdir / "monitoring.config"
    monitoring.write_text(f'prometheus_config {{ enable: true, path: "{METRICS_PATH}" }}\n')
    rest_port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "keras_suite.cli",
        "serve",
        "--port=0",
        f"--rest_api_port={rest_port}",
        f"--model_name={name}",
        f"--model_base_path={base}",
        "--file_system_poll_wait_seconds=0",
        f"--monitoring_config_file={monitoring}",
    ]
    if max_connections:
        cmd.append(f"--rest_max_connections={max_connections}")
    env = dict(os.environ, KSUITE_PROGRESS="0")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"ksuite serve exited: {process.stderr.read().decode()[-2000:]}")
        try:
            if get(f"http://127.0.0.1:{rest_port}/v1/models/{name}")[0] == 200:
                return process, rest_port
        except OSError:
            pass
        time.sleep(0.5)
    process.kill()
    raise SystemExit("ksuite serve did not answer within 300 s")


def stop_server(process) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def server_usage(pid: int) -> dict:
    """Threads and resident memory of the server process, read from /proc."""
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return {
        "threads": len(os.listdir(f"/proc/{pid}/task")),
        "rss_mb": round(int(fields["VmRSS"].split()[0]) / 1024, 1),
    }


def evicted_count(port: int) -> float | None:
    status, text = get(f"http://127.0.0.1:{port}{METRICS_PATH}", timeout=10)
    for line in text.splitlines():
        if status == 200 and line.startswith(EVICTED_METRIC + " "):
            return float(line.split()[1])
    return None  # a server without the metric


def predict_once(port: int, name: str) -> tuple[int, float]:
    """(HTTP status, seconds) of one predict on a new connection; status 0: no answer."""
    request = (
        f"POST /v1/models/{name}:predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + BODY
    started = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(request)
            data = b""
            while chunk := sock.recv(65536):  # the server closes after its answer
                data += chunk
    except OSError:
        return 0, time.perf_counter() - started
    elapsed = time.perf_counter() - started
    return (int(data.split()[1]) if data.startswith(b"HTTP/") else 0), elapsed


def timed_requests(port: int, name: str, count: int) -> dict:
    statuses, latencies = {}, []
    for _ in range(count):
        status, seconds = predict_once(port, name)
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        latencies.append(seconds * 1000)
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    return {
        "requests": count,
        "statuses": statuses,
        "latency_ms": {
            "p50": round(cuts[49], 2),
            "p90": round(cuts[89], 2),
            "p99": round(cuts[98], 2),
            "max": round(max(latencies), 2),
        },
    }


def closed_by_server(socks) -> int:
    """How many of `socks` the server has closed (readable: EOF or reset; they sent nothing)."""
    poller = select.poll()
    for sock in socks:
        poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
    return len(poller.poll(500))


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(f"--idle needs {needed} open files; the hard limit (ulimit -Hn) is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--idle", type=int, default=2000, help="idle sockets to open")
    parser.add_argument("--requests", type=int, default=200, help="good requests per phase")
    parser.add_argument(
        "--max-connections", type=int, default=0, help="--rest_max_connections (0: its default)"
    )
    parser.add_argument(
        "--model-base-path", default="", help="BASE/NAME to serve (default: a toy model)"
    )
    parser.add_argument("--model-name", default="toy")
    parser.add_argument("--out", default="bench-results/idle_connections.json")
    args = parser.parse_args(argv)
    if args.idle < 0 or args.requests < 1:
        parser.error("--idle must be 0 or more and --requests 1 or more")
    raise_fd_limit(args.idle + 256)

    with tempfile.TemporaryDirectory(prefix="ksuite-idle-bench-") as tmp:
        workdir = Path(tmp)
        base = Path(args.model_base_path) if args.model_base_path else None
        if base is None:
            from keras_suite.serving.testmodels import publish_keras_toy

            publish_keras_toy(workdir / "models", args.model_name, seed=1, version=1)
            base = workdir / "models" / args.model_name
        process, port = start_server(base, args.model_name, workdir, args.max_connections)
        socks = []
        try:
            timed_requests(port, args.model_name, 5)  # warm-up, not reported
            report = {
                "idle_sockets": args.idle,
                "max_connections": args.max_connections or "default",
                "server_before": server_usage(process.pid),
                "without_idle": timed_requests(port, args.model_name, args.requests),
            }
            started = time.perf_counter()
            for _ in range(args.idle):
                socks.append(socket.create_connection(("127.0.0.1", port), timeout=30))
            report["open_idle_s"] = round(time.perf_counter() - started, 2)
            report["with_idle"] = timed_requests(port, args.model_name, args.requests)
            report["server_after"] = server_usage(process.pid)
            report["idle_closed_by_server"] = closed_by_server(socks)
            report["evicted_metric"] = evicted_count(port)
        finally:
            for sock in socks:
                sock.close()
            stop_server(process)

    for phase in ("without_idle", "with_idle"):
        r = report[phase]
        lat = r["latency_ms"]
        print(
            f"{phase:13s} {r['requests']} requests, statuses {r['statuses']}: latency ms "
            f"p50 {lat['p50']} p90 {lat['p90']} p99 {lat['p99']} max {lat['max']}"
        )
    before, after = report["server_before"], report["server_after"]
    print(
        f"opened {args.idle} idle sockets in {report['open_idle_s']} s; server closed "
        f"{report['idle_closed_by_server']} of them (metric {EVICTED_METRIC}: "
        f"{report['evicted_metric']})"
    )
    print(
        f"server threads {before['threads']} -> {after['threads']}, "
        f"RSS {before['rss_mb']} MB -> {after['rss_mb']} MB"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
