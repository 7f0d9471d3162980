"""Keras callbacks in the shared training loop, and the built-in early stopping.

The loop in common/training.py is a `strategy.run` loop, not `model.fit`, but it drives a
`keras.callbacks.CallbackList` from the records it builds anyway:

    on_train_begin()                      after a resume too
    on_epoch_begin(epoch)                 0-based, like Keras
    on_train_batch_end(batch, logs)       every train.log_every_steps steps; logs: the step's
                                          metrics and examples_per_sec
    on_epoch_end(epoch, logs)             logs: the epoch record's numbers, training metrics
                                          and the val_ metrics of the validation split
    on_train_end()

`callback.model` is the run's main model (the first model the app saves). Setting
`stop_training = True` on any model of the run stops training after the current epoch.
Every worker runs the callbacks (so all of them stop at the same epoch); only the chief
writes files.

A callback that needs every model of the run, or state that must survive a kill, subclasses
`RunCallback`: the loop hands it the TrainState and puts its `checkpoint_state()` into the
run's checkpoint, so a resumed run continues exactly where the killed one was.
"""

from __future__ import annotations

import math

from keras_suite import common
from keras_suite.common.errors import UserError
from keras_suite.common.runlog import log

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402

# Metric names that get better as they grow: mode "auto" maximises these.
_HIGHER_IS_BETTER = (
    "acc",
    "auc",
    "bleu",
    "chrf",
    "dice",
    "exact_match",
    "f1",
    "iou",
    "map",
    "precision",
    "recall",
    "top1",
    "top5",
)


class RunCallback(keras.callbacks.Callback):
    """A callback that sees the whole TrainState and can keep state in the checkpoint."""

    train_state = None

    def set_train_state(self, state) -> None:
        """Called once, before the run's checkpoint is restored."""
        self.train_state = state

    def checkpoint_state(self):
        """A trackable (a tf.Module of tf.Variables) saved and restored with the run's
        checkpoint, or None."""
        return None


def monitor_mode(monitor: str, mode: str = "auto") -> str:
    """ "min" or "max": which direction improves `monitor`."""
    if mode in ("min", "max"):
        return mode
    name = monitor.lower()
    return "max" if any(word in name for word in _HIGHER_IS_BETTER) else "min"


class _EarlyStoppingState(tf.Module):
    """What early stopping must remember across a kill: the best value, the epochs since
    it, and a copy of every model's weights at that epoch."""

    def __init__(self, models: dict):
        super().__init__(name="early_stopping")
        self.best = tf.Variable(math.nan, dtype=tf.float64, trainable=False)
        self.best_epoch = tf.Variable(0, dtype=tf.int64, trainable=False)  # 1-based, 0 = none
        self.wait = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.stopped_epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.best_weights = [
            tf.Variable(tf.zeros(w.shape, w.dtype), trainable=False)
            for model in models.values()
            for w in model.weights
        ]


class EarlyStopping(RunCallback):
    """Stop when a validation metric has not improved for `patience` epochs, then put back
    the weights of the best epoch (every model of the run, not only the main one).

    Only `val_` metrics may be watched: they come from the validation split, never from the
    test split that the final evaluation reports. Its state is part of the run's
    checkpoint, so a run killed and resumed stops at the same epoch with the same weights
    as one that ran through.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 3,
        mode: str = "auto",
        min_delta: float = 0.0,
        restore_best_weights: bool = True,
    ):
        super().__init__()
        self.monitor = monitor
        self.patience = int(patience)
        self.mode = monitor_mode(monitor, mode)
        self.min_delta = abs(float(min_delta))
        self.restore_best_weights = restore_best_weights
        self._state = None

    @classmethod
    def from_config(cls, train_cfg) -> EarlyStopping | None:
        """The one `--set train.early_stopping=val_loss` asks for, or None."""
        if not train_cfg.early_stopping:
            return None
        return cls(
            train_cfg.early_stopping,
            train_cfg.early_stopping_patience,
            train_cfg.early_stopping_mode,
            train_cfg.early_stopping_min_delta,
        )

    def check_monitor(self, val_keys: list[str]) -> None:
        """Refuse, before any training, a metric that is not one of the run's val_ keys."""
        setting = f"train.early_stopping={self.monitor}"
        # the run folder already holds the refused config: the corrected command replaces it
        again = " (nothing was trained: add --overwrite to the corrected command)"
        if not val_keys:
            raise UserError(
                f"{setting}: this run computes no validation metrics (no validation split, "
                "or an app without a test_step); leave train.early_stopping empty" + again
            )
        if not self.monitor.startswith("val_"):
            raise UserError(
                f"{setting}: early stopping watches a validation metric only; use one of "
                + ", ".join(val_keys)
                + again
            )
        if self.monitor not in val_keys:
            raise UserError(
                f"{setting}: the run has no such validation metric; use one of "
                + ", ".join(val_keys)
                + again
            )

    # ---- state ---------------------------------------------------------------------------
    def set_train_state(self, state) -> None:
        super().set_train_state(state)
        self._state = _EarlyStoppingState(state.models)

    def checkpoint_state(self):
        return self._state

    def _weights(self) -> list:
        return [w for model in self.train_state.models.values() for w in model.weights]

    @property
    def best(self) -> float:
        return float(self._state.best.numpy())

    @property
    def best_epoch(self) -> int:
        return int(self._state.best_epoch.numpy())

    @property
    def stopped_epoch(self) -> int:
        return int(self._state.stopped_epoch.numpy())

    def _improved(self, value: float) -> bool:
        best = self.best
        if math.isnan(best):
            return True
        if self.mode == "min":
            return value < best - self.min_delta
        return value > best + self.min_delta

    # ---- the callback --------------------------------------------------------------------
    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:  # check_monitor ran before training: this is a bug
            raise KeyError(f"early stopping: {self.monitor} not in the epoch's logs {list(logs)}")
        value = float(logs[self.monitor])
        state = self._state
        if math.isfinite(value) and self._improved(value):
            state.best.assign(value)
            state.best_epoch.assign(epoch + 1)
            state.wait.assign(0)
            for copy, weight in zip(state.best_weights, self._weights()):
                copy.assign(weight.value)
            return
        state.wait.assign_add(1)
        if int(state.wait.numpy()) >= self.patience:
            state.stopped_epoch.assign(epoch + 1)
            self.model.stop_training = True
            log.info(
                "early stopping after epoch %d: %s has not improved on %.5g (epoch %d) for %d "
                "epoch(s)",
                epoch + 1,
                self.monitor,
                self.best,
                self.best_epoch,
                int(state.wait.numpy()),
            )

    def on_train_end(self, logs=None):
        if not self.restore_best_weights or self.best_epoch == 0:
            return
        for weight, copy in zip(self._weights(), self._state.best_weights):
            weight.assign(copy)
        log.info(
            "restored the weights of epoch %d (%s %.5g)", self.best_epoch, self.monitor, self.best
        )


def builtin_callbacks(train_cfg) -> list:
    """The callbacks the run's config asks for."""
    early = EarlyStopping.from_config(train_cfg)
    return [early] if early is not None else []
