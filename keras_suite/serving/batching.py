"""Server-side batching, following TF Serving's batching parameters.

Concurrent requests for the same signature (and the same non-batch input shapes) queue
up; a batch thread takes them as soon as `max_batch_size` rows are waiting or the oldest
request has waited `batch_timeout_micros`, concatenates them along dimension 0, pads up
to the next `allowed_batch_sizes` entry by repeating the last row, runs the model once and
hands each request its own rows back. A full queue is refused with UNAVAILABLE, as TF
Serving does, instead of growing without bound.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future

import numpy as np

from keras_suite.serving.configs import BatchingConfig
from keras_suite.serving.errors import ServingError, invalid


class _Task:
    __slots__ = ("inputs", "size", "future", "enqueued")

    def __init__(self, inputs: dict, size: int):
        self.inputs = inputs
        self.size = size
        self.future: Future = Future()
        self.enqueued = time.monotonic()


class Batcher:
    def __init__(self, cfg: BatchingConfig, run_batch, on_batch=None, name: str = "batcher"):
        """run_batch(signature, {input: array}) -> {output: array}; on_batch(size, padded)."""
        self.cfg = cfg
        self._run_batch = run_batch
        self._on_batch = on_batch
        self._queues: dict[tuple, deque] = {}
        self._queued_rows = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._worker, name=f"{name}-{i}", daemon=True)
            for i in range(cfg.num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    # ---- client side ---------------------------------------------------------------------
    def run(self, signature: str, inputs: dict) -> dict:
        sizes = {v.shape[0] for v in inputs.values()}
        if len(sizes) != 1:
            raise invalid("Batching Run() input tensors must have equal 0th-dimension size")
        size = sizes.pop()
        if size > self.cfg.max_batch_size:
            if not self.cfg.enable_large_batch_splitting:
                raise invalid(
                    f"Task size {size} is larger than maximum input batch size "
                    f"{self.cfg.max_batch_size}"
                )
            return self._split_and_run(signature, inputs, size)
        if size == 0:
            return self._run_batch(signature, inputs)
        key = (signature,) + tuple(sorted((k, v.shape[1:], v.dtype.str) for k, v in inputs.items()))
        task = _Task(inputs, size)
        with self._cond:
            if self._stopping:
                raise ServingError("UNAVAILABLE", "the server is shutting down")
            limit = self.cfg.max_enqueued_batches * self.cfg.max_batch_size
            if self._queued_rows + size > limit:
                raise ServingError(
                    "UNAVAILABLE",
                    "The batch scheduling queue to which this task was submitted is full",
                )
            self._queues.setdefault(key, deque()).append(task)
            self._queued_rows += size
            self._cond.notify()
        return task.future.result()

    def _split_and_run(self, signature, inputs, size):
        step = self.cfg.max_batch_size
        parts = [
            self.run(signature, {k: v[i : i + step] for k, v in inputs.items()})
            for i in range(0, size, step)
        ]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=5)

    # ---- batch threads -------------------------------------------------------------------
    def _ready_key(self, now: float):
        """The queue to run now (full, or its oldest task timed out); else (None, wait_s)."""
        timeout = self.cfg.batch_timeout_micros / 1e6
        best, best_age, wait = None, -1.0, None
        for key, queue in self._queues.items():
            if not queue:
                continue
            rows = sum(t.size for t in queue)
            age = now - queue[0].enqueued
            if rows >= self.cfg.max_batch_size or age >= timeout or self._stopping:
                if age > best_age:
                    best, best_age = key, age
            else:
                remaining = timeout - age
                wait = remaining if wait is None else min(wait, remaining)
        return best, wait

    def _take(self, key) -> list[_Task]:
        queue = self._queues[key]
        tasks, rows = [], 0
        while queue and rows + queue[0].size <= self.cfg.max_batch_size:
            task = queue.popleft()
            tasks.append(task)
            rows += task.size
        if not queue:
            del self._queues[key]
        self._queued_rows -= rows
        return tasks

    def _worker(self) -> None:
        while True:
            with self._cond:
                while True:
                    key, wait = self._ready_key(time.monotonic())
                    if key is not None:
                        tasks = self._take(key)
                        break
                    if self._stopping and not self._queues:
                        return
                    self._cond.wait(timeout=wait)
            self._process(key[0], tasks)

    def _padded_size(self, rows: int) -> int:
        for allowed in self.cfg.allowed_batch_sizes:
            if allowed >= rows:
                return allowed
        return rows

    def _process(self, signature: str, tasks: list[_Task]) -> None:
        rows = sum(t.size for t in tasks)
        target = self._padded_size(rows)
        try:
            batch = {}
            for name in tasks[0].inputs:
                parts = [t.inputs[name] for t in tasks]
                if target > rows:
                    parts.append(np.repeat(parts[-1][-1:], target - rows, axis=0))
                batch[name] = np.concatenate(parts) if len(parts) > 1 else parts[0]
            outputs = self._run_batch(signature, batch)
            if self._on_batch:
                self._on_batch(rows, target)
            start = 0
            for task in tasks:
                task.future.set_result(
                    {k: v[start : start + task.size] for k, v in outputs.items()}
                )
                start += task.size
        except Exception as exc:  # noqa: BLE001 - every waiting request gets the error
            for task in tasks:
                if not task.future.done():
                    task.future.set_exception(exc)
