"""Prometheus metrics on `prometheus_client`, named as tensorflow_model_server names them
(`:tensorflow:serving:request_count`, `:tensorflow:serving:request_latency`, ...), so
dashboards and alerts written for TF Serving work against the embedded server too.

Each server owns a CollectorRegistry (not the process-wide one): tests and the benchmark
start several servers in one process, and each must count only its own requests.
"""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics

# Request latency buckets in microseconds (TF Serving reports latency in µs).
LATENCY_BUCKETS_US = [50 * 2**i for i in range(18)]  # 50 µs .. ~6.5 s
BATCH_SIZE_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# TF Serving has no `<name>_created` series; without this every series would gain one.
disable_created_metrics()


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self._requests = Counter(
            ":tensorflow:serving:request_count",
            "The total number of requests.",
            ("model_name", "API", "entrypoint", "status"),
            registry=reg,
        )
        self._latency = Histogram(
            ":tensorflow:serving:request_latency",
            "Distribution of wall time (in microseconds) for each request.",
            ("model_name", "API", "entrypoint"),
            buckets=LATENCY_BUCKETS_US,
            registry=reg,
        )
        self._batch_size = Histogram(
            ":tensorflow:serving:batching_session:processed_batch_size",
            "Rows in each batch the batching layer ran (before padding).",
            ("model_name",),
            buckets=BATCH_SIZE_BUCKETS,
            registry=reg,
        )
        self._padding = Counter(
            ":tensorflow:serving:batching_session:padding_rows",
            "Rows added to reach an allowed batch size.",
            ("model_name",),
            registry=reg,
        )
        self._loads = Counter(
            ":tensorflow:cc:saved_model:load_attempt_count",
            "The number of times a SavedModel version was loaded.",
            ("model_path", "status"),
            registry=reg,
        )

    def observe_request(self, model: str, api: str, entrypoint: str, status: str, micros: float):
        self._requests.labels(model, api, entrypoint, status).inc()
        self._latency.labels(model, api, entrypoint).observe(micros)

    def observe_batch(self, model: str, rows: int, padded: int) -> None:
        self._batch_size.labels(model).observe(rows)
        self._padding.labels(model).inc(padded - rows)

    def observe_load(self, model: str, status: str) -> None:
        self._loads.labels(model, status).inc()

    def render(self) -> str:
        return exposition(self.registry)


def exposition(registry: CollectorRegistry) -> str:
    """The text format as tensorflow_model_server writes it.

    prometheus_client's own writer (generate_latest) renames counters to `<name>_total` and
    sorts labels alphabetically; TF Serving keeps the bare name and the declared label order,
    and dashboards and alerts match on those, so the samples the library collects are
    written here in TF Serving's form.
    """
    out = []
    for family in registry.collect():
        out.append(f"# HELP {family.name} {family.documentation}")
        out.append(f"# TYPE {family.name} {family.type}")
        for sample in family.samples:
            name = family.name if family.type == "counter" else sample.name
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sample.labels.items())
            out.append(
                f"{name}{{{labels}}} {_number(sample.value)}"
                if labels
                else f"{name} {_number(sample.value)}"
            )
    return "\n".join(out) + "\n"


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if float(value).is_integer() else repr(float(value))
