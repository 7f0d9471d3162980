"""Prometheus metrics in the text exposition format, named as tensorflow_model_server names
them (`:tensorflow:serving:request_count`, `:tensorflow:serving:request_latency`, ...), so
dashboards and alerts written for TF Serving work against the embedded server too.
"""
from __future__ import annotations

import threading
from collections import defaultdict

# Request latency buckets in microseconds (TF Serving reports latency in µs).
LATENCY_BUCKETS_US = [50 * 2 ** i for i in range(18)]  # 50 µs .. ~6.5 s
BATCH_SIZE_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]


def _labels(names, values) -> str:
    def esc(v):
        return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

    return ",".join(f'{n}="{esc(v)}"' for n, v in zip(names, values))


class _Histogram:
    def __init__(self, buckets):
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.total = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.total += 1
        self.sum += value


class Metrics:
    def __init__(self):
        self._lock = threading.Lock()
        self.request_count = defaultdict(int)          # (model, api, entrypoint, status)
        self.request_latency = {}                      # (model, api, entrypoint) -> hist
        self.batch_size = {}                           # (model,) -> hist of real rows
        self.padding_rows = defaultdict(int)           # (model,)
        self.load_count = defaultdict(int)             # (model, status)

    def observe_request(self, model: str, api: str, entrypoint: str, status: str, micros: float):
        with self._lock:
            self.request_count[(model, api, entrypoint, status)] += 1
            hist = self.request_latency.setdefault((model, api, entrypoint), _Histogram(LATENCY_BUCKETS_US))
            hist.observe(micros)

    def observe_batch(self, model: str, rows: int, padded: int) -> None:
        with self._lock:
            self.batch_size.setdefault((model,), _Histogram(BATCH_SIZE_BUCKETS)).observe(rows)
            self.padding_rows[(model,)] += padded - rows

    def observe_load(self, model: str, status: str) -> None:
        with self._lock:
            self.load_count[(model, status)] += 1

    def render(self) -> str:
        out = []
        with self._lock:
            self._counter(out, ":tensorflow:serving:request_count",
                          "The total number of requests.",
                          ("model_name", "API", "entrypoint", "status"), self.request_count)
            self._histogram(out, ":tensorflow:serving:request_latency",
                            "Distribution of wall time (in microseconds) for each request.",
                            ("model_name", "API", "entrypoint"), self.request_latency)
            self._histogram(out, ":tensorflow:serving:batching_session:processed_batch_size",
                            "Rows in each batch the batching layer ran (before padding).",
                            ("model_name",), self.batch_size)
            self._counter(out, ":tensorflow:serving:batching_session:padding_rows",
                          "Rows added to reach an allowed batch size.", ("model_name",), self.padding_rows)
            self._counter(out, ":tensorflow:cc:saved_model:load_attempt_count",
                          "The number of times a SavedModel version was loaded.",
                          ("model_path", "status"), self.load_count)
        return "\n".join(out) + "\n"

    @staticmethod
    def _counter(out, name, help_, label_names, data):
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} counter")
        for key, value in sorted(data.items()):
            out.append(f"{name}{{{_labels(label_names, key)}}} {value}")

    @staticmethod
    def _histogram(out, name, help_, label_names, data):
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} histogram")
        for key, hist in sorted(data.items()):
            base = _labels(label_names, key)
            for bound, count in zip(hist.buckets, hist.counts):
                out.append(f'{name}_bucket{{{base},le="{bound}"}} {count}')
            out.append(f'{name}_bucket{{{base},le="+Inf"}} {hist.total}')
            out.append(f"{name}_sum{{{base}}} {hist.sum:g}")
            out.append(f"{name}_count{{{base}}} {hist.total}")
