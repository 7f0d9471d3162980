"""Keras callbacks in the shared loop: the order of the calls a user callback sees, a stop
asked for by any callback, the built-in early stopping (its refusals, its stop, the best
weights it puts back, its state across a kill) and all of it under MirroredStrategy."""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass, field

import numpy as np
import pytest

from keras_suite import common
from keras_suite.common.app import App, Datasets
from keras_suite.common.callbacks import EarlyStopping, monitor_mode
from keras_suite.common.config import TrainConfig
from keras_suite.common.errors import UserError
from keras_suite.common.runlog import RunLogger, read_jsonl
from keras_suite.common.training import TrainContext, Trainer, TrainState
from tests.helpers import ROOT, subprocess_env

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402

# The validation loss of epoch e (0-based) is SCHEDULE[e]: the best is epoch 3 (1.0), then
# two worse epochs stop a run with patience 2 after epoch 5, before the 0.5 of epoch 6.
SCHEDULE = [5.0, 3.0, 1.0, 2.0, 4.0, 0.5, 6.0, 7.0]
STEPS = 4


class Killed(Exception):
    """Stands in for SIGKILL: nothing after it runs."""


class Scripted(App):
    """A one-weight model whose training step sets the weight to SCHEDULE[epoch] and whose
    validation loss is that weight: the metrics of every epoch are known in advance."""

    name = "scripted"

    def build_state(self, *, cfg, info):
        model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
        return TrainState(models={"model": model})

    def train_step(self, state, batch, step):
        value = tf.gather(tf.constant(SCHEDULE, tf.float32), step.epoch)
        state.model.weights[0].assign(tf.reshape(value, (1, 1)))
        return {"loss": value}

    def test_step(self, state, batch, step):
        out = state.model(batch, training=False)
        return {"loss": tf.reduce_sum(out), "count": tf.cast(tf.shape(batch)[0], tf.float32)}


class NoValidation(Scripted):
    test_step = App.test_step


class OwnLoop(Scripted):
    def train(self, ctx):
        return []


def _cfg(**train):
    settings = {"epochs": len(SCHEDULE), "batch_size": 2, "log_every_steps": 2, **train}

    @dataclass
    class Cfg:
        train: TrainConfig = field(default_factory=lambda: TrainConfig(**settings))

    return Cfg()


def _data():
    ones = tf.data.Dataset.from_tensor_slices(np.ones((2 * STEPS, 1), np.float32))
    return Datasets(
        train_epoch=lambda epoch: ones.batch(2, drop_remainder=True),
        steps_per_epoch=STEPS,
        val=ones.take(4).batch(2),
    )


def _trainer(run_dir, cfg, app=None, callbacks=()):
    keras.utils.set_random_seed(0)
    app = app or Scripted()
    state = app.build_state(cfg=cfg, info={})
    ctx = TrainContext(
        app=app,
        cfg=cfg,
        run_dir=run_dir,
        strategy=tf.distribute.get_strategy(),
        data=_data(),
        state=state,
        logger=RunLogger(run_dir),
        callbacks=tuple(callbacks),
    )
    return Trainer(app, ctx), state


def _train(run_dir, cfg, kill_at_call=None, callbacks=()):
    """One process's worth of training: (epoch numbers logged so far, final weight)."""
    trainer, state = _trainer(run_dir, cfg, callbacks=callbacks)
    if kill_at_call:
        compiled, calls = trainer._compiled_train, [0]

        def counting():
            fn = compiled()

            def wrapped(*args):
                calls[0] += 1
                if calls[0] == kill_at_call:
                    raise Killed
                return fn(*args)

            return wrapped

        trainer._compiled_train = counting
    try:
        trainer.fit()
    except Killed:
        pass
    finally:
        trainer.logger.close()
    records = read_jsonl(run_dir / "logs" / "metrics.jsonl")
    epochs = [r["epoch"] for r in records if r["kind"] == "epoch"]
    return epochs, float(state.model.weights[0].numpy().ravel()[0])


class Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.calls = []
        self.models = set()

    def on_train_begin(self, logs=None):
        self.calls.append(("train_begin",))
        self.models.add(id(self.model))

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(("epoch_begin", epoch))

    def on_train_batch_end(self, batch, logs=None):
        self.calls.append(("batch_end", batch, sorted(logs)))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch_end", epoch, logs["loss"], logs["val_loss"]))

    def on_train_end(self, logs=None):
        self.calls.append(("train_end",))


def test_a_user_callback_sees_the_calls_in_order(tmp_path):
    recorder = Recorder()
    trainer, state = _trainer(tmp_path, _cfg(epochs=2), callbacks=[recorder])
    trainer.fit()
    trainer.logger.close()
    keys = ["examples_per_sec", "loss"]
    # log_every_steps=2: global steps 2 and 4 (batches 1 and 3 of the first epoch), 6 and 8
    assert recorder.calls == [
        ("train_begin",),
        ("epoch_begin", 0),
        ("batch_end", 1, keys),
        ("batch_end", 3, keys),
        ("epoch_end", 0, SCHEDULE[0], SCHEDULE[0]),
        ("epoch_begin", 1),
        ("batch_end", 1, keys),
        ("batch_end", 3, keys),
        ("epoch_end", 1, SCHEDULE[1], SCHEDULE[1]),
        ("train_end",),
    ]
    assert recorder.models == {id(state.model)}


class StopAfterSecondEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            self.model.stop_training = True


def test_a_callback_that_sets_stop_training_ends_the_run_after_that_epoch(tmp_path):
    epochs, _ = _train(tmp_path, _cfg(), callbacks=[StopAfterSecondEpoch()])
    assert epochs == [1, 2]
    # A rerun of the stopped run trains no further (the stop is in the checkpoint).
    again, _ = _train(tmp_path, _cfg())
    assert again == [1, 2]


def _early(**extra):
    return _cfg(early_stopping="val_loss", early_stopping_patience=2, **extra)


def test_early_stopping_stops_and_restores_the_best_weights(tmp_path):
    epochs, weight = _train(tmp_path, _early())
    assert epochs == [1, 2, 3, 4, 5]  # two epochs without improving on epoch 3
    assert weight == SCHEDULE[2]  # epoch 3's weight, not epoch 5's (4.0)
    again, weight_again = _train(tmp_path, _early())
    assert again == epochs and weight_again == SCHEDULE[2]


def test_early_stopping_state_survives_a_kill(tmp_path):
    # Killed during epoch 5, after epoch 4's checkpoint: the resumed run must remember that
    # epoch 3 was best and that epoch 4 did not improve, and keep epoch 3's weights.
    killed, _ = _train(tmp_path, _early(), kill_at_call=4 * STEPS + 2)
    assert killed == [1, 2, 3, 4]
    epochs, weight = _train(tmp_path, _early())
    assert epochs == [1, 2, 3, 4, 5]
    assert weight == SCHEDULE[2]


def test_early_stopping_mode_max(tmp_path):
    # Maximising the scripted loss: epoch 1 (5.0) is best until epoch 7 (6.0), but with
    # patience 2 the run stops after epoch 3.
    epochs, weight = _train(tmp_path, _early(early_stopping_mode="max"))
    assert epochs == [1, 2, 3] and weight == SCHEDULE[0]
    assert monitor_mode("val_accuracy") == "max" and monitor_mode("val_loss") == "min"
    assert monitor_mode("val_miou") == "max" and monitor_mode("val_neg_elbo") == "min"


def test_early_stopping_min_delta(tmp_path):
    # Improvements of 2.0 (5 -> 3) and 4.0 (5 -> 1) do not count when 4.5 is asked for.
    epochs, weight = _train(tmp_path, _early(early_stopping_min_delta=4.5))
    assert epochs == [1, 2, 3] and weight == SCHEDULE[0]


@pytest.mark.parametrize(
    "monitor, app, message",
    [
        ("loss", Scripted(), "watches a validation metric only; use one of val_loss"),
        ("val_accuracy", Scripted(), "no such validation metric; use one of val_loss"),
        ("val_loss", NoValidation(), "computes no validation metrics"),
    ],
)
def test_early_stopping_refuses_what_is_not_a_validation_metric(tmp_path, monitor, app, message):
    trainer, _ = _trainer(tmp_path, _cfg(early_stopping=monitor), app=app)
    with pytest.raises(UserError, match=message) as err:
        trainer.fit()
    trainer.logger.close()
    assert "\n" not in str(err.value)
    assert not (tmp_path / "checkpoints").exists()  # refused before any training


def test_an_app_with_its_own_loop_refuses_callbacks(tmp_path):
    with pytest.raises(UserError, match="own loop"):
        _trainer(tmp_path, _cfg(early_stopping="val_loss"), app=OwnLoop())
    with pytest.raises(UserError, match="own loop"):
        _trainer(tmp_path, _cfg(), app=OwnLoop(), callbacks=[EarlyStopping()])


MIRRORED = textwrap.dedent(
    """
    import json, sys
    import keras
    from keras_suite.common.run import train_run

    class Recorder(keras.callbacks.Callback):
        calls = []
        def on_train_begin(self, logs=None):
            self.calls.append(["train_begin"])
        def on_epoch_end(self, epoch, logs=None):
            self.calls.append(["epoch_end", epoch, logs["val_loss"]])
        def on_train_end(self, logs=None):
            self.calls.append(["train_end"])

    metrics = train_run(
        "classification", "smoke", run_dir=sys.argv[1], strategy_name="mirrored",
        cpu_devices=2, callbacks=[Recorder()],
        overrides=["train.epochs=8", "train.learning_rate=0.05",
                   "train.early_stopping=val_loss", "train.early_stopping_patience=0"],
    )
    print("RESULT " + json.dumps({"calls": Recorder.calls, "val_top1": metrics["val_top1"]}))
    """
)


@pytest.mark.slow
def test_callbacks_and_early_stopping_under_mirrored_strategy(tmp_path):
    import subprocess
    import sys

    run_dir = tmp_path / "mirrored"
    proc = subprocess.run(
        [sys.executable, "-c", MIRRORED, str(run_dir)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env=subprocess_env(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT ")[1])
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["replicas"] == 2 and "MirroredStrategy" in meta["strategy"]
    records = [r for r in read_jsonl(run_dir / "logs" / "metrics.jsonl") if r["kind"] == "epoch"]
    losses = [r["val_loss"] for r in records]
    # patience 0: the run stops at the first epoch that does not improve on the best
    assert 2 <= len(records) < 8, losses
    assert losses[-1] >= min(losses[:-1]) and losses[:-1] == sorted(losses[:-1], reverse=True)
    # the user's callback saw every epoch, with the logged validation loss
    assert result["calls"][0] == ["train_begin"] and result["calls"][-1] == ["train_end"]
    assert [c[1:] for c in result["calls"][1:-1]] == [[i, v] for i, v in enumerate(losses)]
    # the model evaluated at the end is the best epoch's: its validation accuracy, computed
    # by `evaluate` on the restored weights, is the one logged for that epoch
    best = records[int(np.argmin(losses))]
    assert result["val_top1"] == pytest.approx(best["val_accuracy"], abs=1e-6)
