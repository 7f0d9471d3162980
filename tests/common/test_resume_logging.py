"""A run interrupted and resumed logs exactly what an uninterrupted run logs: the epoch's
running sums are part of the checkpoint, records of redone steps are not duplicated, and an
epoch record lost with a kill right after the epoch's checkpoint is written on resume."""

from __future__ import annotations

import numpy as np
import pytest

from keras_suite import common
from keras_suite.common.app import App, Datasets
from keras_suite.common.runlog import RunLogger, read_jsonl
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


class Killed(Exception):
    """Stands in for SIGKILL: nothing after it runs (the JSONL file is line-buffered)."""


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


def _cfg():
    from dataclasses import dataclass, field

    from keras_suite.common.config import TrainConfig

    @dataclass
    class Cfg:
        train: TrainConfig = field(
            default_factory=lambda: TrainConfig(
                epochs=2,
                batch_size=4,
                learning_rate=0.05,
                lr_schedule="constant",
                log_every_steps=1,
                checkpoint_every_steps=2,
            )
        )

    return Cfg()


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 3)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5], np.float32)).astype(np.float32)
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    return Datasets(
        train_epoch=lambda epoch: ds.shuffle(24, seed=epoch).batch(4, drop_remainder=True),
        steps_per_epoch=6,
    )


def _train(run_dir, kill=None):
    """One process's worth of training; `kill(trainer)` installs the interruption."""
    keras.utils.set_random_seed(0)
    app, cfg = TinyRegression(), _cfg()
    state = app.build_state(cfg=cfg, info={})
    state.build_optimizers()
    logger = RunLogger(run_dir)
    ctx = TrainContext(
        app=app,
        cfg=cfg,
        run_dir=run_dir,
        strategy=tf.distribute.get_strategy(),
        data=_data(),
        state=state,
        logger=logger,
    )
    trainer = Trainer(app, ctx)
    if kill:
        kill(trainer)
    try:
        trainer.fit()
    except Killed:
        pass
    finally:
        logger.close()
    return read_jsonl(run_dir / "logs" / "metrics.jsonl")


def _kill_at_train_call(n):
    """Kill during the n-th step: the steps since the last checkpoint are logged but lost."""

    def install(trainer):
        compiled = trainer._compiled_train

        def counting():
            fn, calls = compiled(), [0]

            def wrapped(*args):
                calls[0] += 1
                if calls[0] == n:
                    raise Killed
                return fn(*args)

            return wrapped

        trainer._compiled_train = counting

    return install


def _kill_before_epoch_record(trainer):
    write = trainer.logger.write

    def failing(record, *args, **kwargs):
        if record.get("kind") == "epoch":
            raise Killed
        return write(record, *args, **kwargs)

    trainer.logger.write = failing


def _epochs(records):
    return [(r["epoch"], r["step"], r["loss"]) for r in records if r["kind"] == "epoch"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("whole"))


@pytest.mark.parametrize(
    "kill",
    [_kill_at_train_call(6), _kill_before_epoch_record],
    ids=["mid-epoch", "after-epoch-checkpoint"],
)
def test_resumed_run_logs_what_an_uninterrupted_run_logs(tmp_path, uninterrupted, kill):
    first = _train(tmp_path, kill)
    assert len(_epochs(first)) == 0  # the interruption came before any epoch record
    resumed = _train(tmp_path)
    want, got = _epochs(uninterrupted), _epochs(resumed)
    assert [e[:2] for e in got] == [e[:2] for e in want] == [(1, 6), (2, 12)]
    np.testing.assert_allclose([e[2] for e in got], [e[2] for e in want], rtol=1e-5)
    steps = [r["step"] for r in resumed if r["kind"] == "step"]
    assert steps == sorted(set(steps)) == list(range(1, 13)), steps
