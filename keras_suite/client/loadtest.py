"""`ksuite loadtest`: N concurrent clients against a TF Serving endpoint, REST or gRPC.

Each client thread owns its own connection and sends the same request in a loop until the
shared request budget or the time limit runs out. The report has throughput, latency
percentiles (p50/p95/p99, computed from every request, not sampled) and errors.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np

from keras_suite.common.errors import UserError


def percentiles_ms(latencies_s: list[float]) -> dict:
    if not latencies_s:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "mean_ms": None, "max_ms": None}
    ms = np.asarray(latencies_s) * 1000.0
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {
        "p50_ms": round(float(p50), 3),
        "p95_ms": round(float(p95), 3),
        "p99_ms": round(float(p99), 3),
        "mean_ms": round(float(ms.mean()), 3),
        "max_ms": round(float(ms.max()), 3),
    }


def run_load(
    make_caller,
    concurrency: int,
    requests: int | None = None,
    duration_s: float | None = None,
    progress_desc: str | None = None,
) -> dict:
    """Run `concurrency` threads; each calls make_caller()() repeatedly.

    Stops after `requests` calls in total or `duration_s` seconds, whichever comes first
    (at least one of them must be given). Returns counts, throughput and latencies.
    """
    if not requests and not duration_s:
        raise UserError("give a request budget (--requests N) or a time limit (--duration S)")
    if concurrency < 1:
        raise UserError("--concurrency must be >= 1")
    lock = threading.Lock()
    state = {"issued": 0}
    latencies: list[float] = []
    errors: dict[str, int] = {}
    callers = [make_caller() for _ in range(concurrency)]  # connect before the clock starts
    start_barrier = threading.Barrier(concurrency + 1)
    deadline_box = {}
    bar = None
    if progress_desc:
        from keras_suite.common.runlog import progress

        bar = progress(requests, progress_desc, unit="req")

    def take_ticket() -> bool:
        with lock:
            if requests is not None and state["issued"] >= requests:
                return False
            if duration_s is not None and time.perf_counter() >= deadline_box["deadline"]:
                return False
            state["issued"] += 1
            return True

    def worker(call):
        start_barrier.wait()
        local_lat, local_err = [], {}
        while take_ticket():
            t0 = time.perf_counter()
            try:
                call()
                local_lat.append(time.perf_counter() - t0)
            except Exception as exc:  # noqa: BLE001 - every failure is counted, not raised
                key = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
                local_err[key] = local_err.get(key, 0) + 1
            if bar is not None:
                bar.update(1)
        with lock:
            latencies.extend(local_lat)
            for k, v in local_err.items():
                errors[k] = errors.get(k, 0) + v

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in callers]
    for thread in threads:
        thread.start()
    t_start = time.perf_counter()
    cpu_start = time.process_time()  # this process's CPU, every thread: the client's own cost
    deadline_box["deadline"] = t_start + duration_s if duration_s else float("inf")
    start_barrier.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - t_start
    client_cpu = time.process_time() - cpu_start
    if bar is not None:
        bar.close()
    n_err = sum(errors.values())
    return {
        "concurrency": concurrency,
        "requests": len(latencies) + n_err,
        "ok": len(latencies),
        "errors": n_err,
        "error_messages": errors,
        "elapsed_s": round(elapsed, 3),
        "throughput_rps": round(len(latencies) / elapsed, 2) if elapsed > 0 else None,
        "client_cpu_cores": round(client_cpu / elapsed, 2) if elapsed > 0 else None,
        **percentiles_ms(latencies),
    }


def load_inputs(
    input_json: str | None, warmup_from: str | None, signature: str = ""
) -> tuple[str, dict]:
    """(signature_name, {input: array}) from a request JSON or an export's warm-up file
    (its first record for `signature`, or its first record when no signature is named)."""
    if input_json:
        path = Path(input_json)
        if not path.exists():
            raise UserError(f"--input-json {path} does not exist")
        try:
            doc = json.loads(path.read_text())
        except ValueError as exc:
            raise UserError(f"--input-json {path} is not JSON: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), dict):
            raise UserError(
                f"--input-json {path} must be a columnar request: "
                '{"signature_name": "...", "inputs": {"name": [...]}}'
            )
        from keras_suite.client.clients import _from_json

        return doc.get("signature_name", ""), {
            k: _from_json(v, None) for k, v in doc["inputs"].items()
        }
    if warmup_from:
        from keras_suite.export.signatures import WARMUP_RELPATH
        from keras_suite.export.warmup import read_warmup_file

        path = Path(warmup_from) / WARMUP_RELPATH
        if not path.exists():
            raise UserError(
                f"{warmup_from} has no {WARMUP_RELPATH}; pass a version folder written by "
                "`ksuite export`, or --input-json"
            )
        import tensorflow as tf

        for log in read_warmup_file(path):
            if log.WhichOneof("log_type") == "predict_log":
                req = log.predict_log.request
                if signature and (req.model_spec.signature_name or "serving_default") != signature:
                    continue
                return req.model_spec.signature_name, {
                    k: tf.make_ndarray(v) for k, v in req.inputs.items()
                }
        raise UserError(
            f"{path} has no predict requests"
            + (f" for signature {signature!r}" if signature else "")
        )
    raise UserError(
        "say what to send: --input-json REQUEST.json or --warmup-from BASE/NAME/VERSION"
    )


def make_caller_factory(
    protocol: str,
    target: str,
    model: str,
    signature: str,
    inputs: dict,
    timeout: float,
    version=None,
    label=None,
):
    """A factory of per-thread callables sending one prepared request."""
    if protocol == "rest":
        from keras_suite.client.clients import RestClient, _jsonable

        body = {"inputs": {k: _jsonable(v) for k, v in inputs.items()}}
        if signature:
            body["signature_name"] = signature
        payload = json.dumps(body)

        def factory():
            client = RestClient(target, timeout=timeout)
            path = client._path(model, version, label) + ":predict"
            return lambda: client._request("POST", path, payload)

        return factory
    if protocol == "grpc":
        from keras_suite.client.clients import GrpcClient

        def factory():
            client = GrpcClient(target, timeout=timeout)
            request = client.predict_request(model, inputs, signature, version, label)
            return lambda: client.predict_proto(request)

        return factory
    raise UserError(f"--protocol {protocol!r}: choose rest or grpc")
