"""Progress inside an epoch: without a terminal, periodic log lines with the epoch's running
metrics; on a terminal, a tqdm bar instead."""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass, field

import numpy as np
import pytest

from keras_suite import common
from keras_suite.common import runlog
from keras_suite.common.app import App, Datasets
from keras_suite.common.config import TrainConfig
from keras_suite.common.runlog import EpochProgress, RunLogger, read_jsonl
from keras_suite.common.training import (
    TrainContext,
    Trainer,
    TrainState,
    apply_gradients,
    make_optimizer,
    replica_mean,
)

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402

STEPS = 6
LINE = re.compile(r"epoch (\d)/2: step (\d)/6, \d+ ex/s, loss ([\d.]+), ETA \d:\d\d:\d\d$")


class TinyRegression(App):
    def build_state(self, *, cfg, info):
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        return TrainState(
            models={"model": model}, optimizers={"model": make_optimizer(cfg.train, 0)}
        )

    def train_step(self, state, batch, step):
        x, y = batch
        with tf.GradientTape() as tape:
            loss = replica_mean(tf.square(state.model(x)[:, 0] - y), step.global_batch_size)
        apply_gradients(tape, loss, state.model.trainable_variables, state.optimizers["model"])
        return {"loss": loss}


def _train(run_dir, **train):
    @dataclass
    class Cfg:
        train: TrainConfig = field(
            default_factory=lambda: TrainConfig(
                epochs=2, batch_size=4, learning_rate=0.05, lr_schedule="constant", **train
            )
        )

    rng = np.random.default_rng(0)
    x = rng.normal(size=(4 * STEPS, 3)).astype(np.float32)
    y = x @ np.array([1.0, -2.0, 0.5], np.float32)
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    keras.utils.set_random_seed(0)
    app, cfg = TinyRegression(), Cfg()
    state = app.build_state(cfg=cfg, info={})
    state.build_optimizers()
    logger = RunLogger(run_dir)
    data = Datasets(
        train_epoch=lambda epoch: ds.shuffle(24, seed=epoch).batch(4, drop_remainder=True),
        steps_per_epoch=STEPS,
    )
    ctx = TrainContext(
        app=app,
        cfg=cfg,
        run_dir=run_dir,
        strategy=tf.distribute.get_strategy(),
        data=data,
        state=state,
        logger=logger,
    )
    try:
        Trainer(app, ctx).fit()
    finally:
        logger.close()
    return read_jsonl(run_dir / "logs" / "metrics.jsonl")


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def messages():
    """The ksuite logger's INFO messages, whatever handlers it has."""
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger = logging.getLogger("ksuite")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_without_a_terminal_progress_lines_carry_the_running_loss(tmp_path, messages, monkeypatch):
    monkeypatch.delenv("KSUITE_PROGRESS", raising=False)
    monkeypatch.setattr("sys.stderr", io.StringIO())  # not a tty
    records = _train(tmp_path, log_every_steps=1, progress_seconds=0)
    lines = [LINE.search(m) for m in messages]
    lines = [(int(m[1]), int(m[2]), float(m[3])) for m in lines if m]
    # a line after every step but the last of each epoch (the epoch line follows it)
    assert [(e, s) for e, s, _ in lines] == [(e, s) for e in (1, 2) for s in range(1, STEPS)]
    # each line's loss is the mean of that epoch's step losses so far (metrics.jsonl has
    # every step with log_every_steps=1)
    steps = [r["loss"] for r in records if r["kind"] == "step"]
    for epoch, step, loss in lines:
        done = steps[(epoch - 1) * STEPS : (epoch - 1) * STEPS + step]
        assert loss == pytest.approx(np.mean(done), abs=6e-5)


def test_progress_lines_follow_log_every_steps_when_progress_seconds_is_0(
    tmp_path, messages, monkeypatch
):
    monkeypatch.setenv("KSUITE_PROGRESS", "0")  # off even on a terminal
    monkeypatch.setattr("sys.stderr", FakeTerminal())
    _train(tmp_path, log_every_steps=2, progress_seconds=0)
    lines = [m for m in messages if LINE.search(m)]
    assert [LINE.search(m)[2] for m in lines] == ["2", "4", "2", "4"]


def test_on_a_terminal_a_bar_replaces_the_lines(tmp_path, messages, monkeypatch):
    monkeypatch.delenv("KSUITE_PROGRESS", raising=False)
    monkeypatch.setenv("COLUMNS", "200")  # a wide terminal: the bar's postfix is not cut
    terminal = FakeTerminal()
    monkeypatch.setattr("sys.stderr", terminal)
    _train(tmp_path, log_every_steps=1, progress_seconds=0)
    shown = terminal.getvalue()
    # tqdm redraws at most every 0.1 s: some step of each epoch, with its postfix
    assert re.search(r"epoch 1/2: .*\| \d/6 \[.*loss=[\d.]+, ex/s=\d+\]", shown), shown
    assert "epoch 2/2" in shown
    assert not [m for m in messages if LINE.search(m)]  # the bar, not log lines


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


def test_without_a_terminal_lines_come_every_progress_seconds(messages, monkeypatch):
    monkeypatch.setenv("KSUITE_PROGRESS", "0")
    clock = FakeClock()
    monkeypatch.setattr(runlog, "time", clock)
    bar = EpochProgress(100, "epoch 1/1", batch_size=8, every_seconds=30.0, every_steps=1)
    for step in range(1, 11):  # ten steps 10 s apart
        clock.now = 10.0 * step
        bar.update({"loss": 1.0 / step})
    bar.close()
    lines = [m for m in messages if m.startswith("epoch 1/1: step")]
    # 30 s after the start (step 3), then 30 s after that line (steps 6 and 9)
    assert [line.split(",")[0] for line in lines] == [
        "epoch 1/1: step 3/100",
        "epoch 1/1: step 6/100",
        "epoch 1/1: step 9/100",
    ]
    # 0.1 steps/s = 0.8 examples/s; 97 steps left at step 3 take 970 s
    assert lines[0] == "epoch 1/1: step 3/100, 1 ex/s, loss 0.3333, ETA 0:16:10"
