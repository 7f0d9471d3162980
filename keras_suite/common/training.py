"""The shared distributed training loop (docs/design.md §5: a `strategy.run` loop, not
`model.fit`, because Keras 3 `fit` fails under MultiWorkerMirroredStrategy).

Apps supply per-replica `train_step`/`test_step`; this module supplies the optimizer,
loss scaling by the global batch size, mixed precision, cross-replica reduction,
checkpoints that survive SIGKILL (and the exact position inside an epoch), logging,
progress inside epochs, Keras callbacks (common/callbacks.py: early stopping) and
TensorBoard pictures, hparams and profiles (common/tensorboard.py). docs/training.md
describes what a user sees and sets.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from keras_suite import common
from keras_suite.common import tensorboard
from keras_suite.common.app import App, StepContext
from keras_suite.common.callbacks import RunCallback, builtin_callbacks
from keras_suite.common.errors import UserError
from keras_suite.common.runlog import EpochProgress, RunLogger, log

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402

# ---- pieces apps use inside their steps ---------------------------------------------


def replica_mean(per_example, global_batch_size: int):
    """Sum of per-example values / GLOBAL batch size: summing over replicas gives the mean."""
    return tf.nn.compute_average_loss(
        tf.cast(per_example, tf.float32), global_batch_size=global_batch_size
    )


def global_sum(value):
    """`value` summed over every replica (and worker); call inside a step. Outside
    `strategy.run` (or with one replica) it is `value`."""
    value = tf.cast(value, tf.float32)
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return value
    return ctx.all_reduce(tf.distribute.ReduceOp.SUM, value)


def replica_weighted_mean(values, weights):
    """sum(values * weights) on this replica / sum(weights) over ALL replicas.

    For losses whose denominator is not the batch size: tokens that are not padding,
    pixels that are not the ignore label. Summing the result over replicas gives the
    weighted mean of the whole global batch, exactly what one device would compute, even
    when replicas hold different numbers of real tokens. The denominator is all-reduced
    in the step (a collective that works under Mirrored and MultiWorkerMirrored); it
    carries no gradient. An all-zero weight gives 0, not NaN.
    """
    values = tf.cast(values, tf.float32)
    weights = tf.cast(weights, tf.float32)
    total = tf.stop_gradient(global_sum(tf.reduce_sum(weights)))
    return tf.math.divide_no_nan(tf.reduce_sum(values * weights), total)


def apply_gradients(tape, loss, variables, optimizer, clip_norm: float = 0.0):
    """Gradients of `loss` applied with loss scaling when the optimizer does it (float16)."""
    scaled = optimizer.scale_loss(loss) if hasattr(optimizer, "scale_loss") else loss
    grads = tape.gradient(scaled, variables)
    if clip_norm and clip_norm > 0:
        grads, _ = tf.clip_by_global_norm(grads, clip_norm)
    optimizer.apply_gradients(zip(grads, variables))
    return grads


class EpochTimer(keras.callbacks.Callback):
    """Wall seconds of every `model.fit` epoch in `.seconds`: how the benchmarks time the
    keras-io recipes they compare against."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._t0)


def sync_batch_norm() -> bool:
    """True when models are being built for several replicas.

    Apps pass it as BatchNormalization(synchronized=...): batch statistics are then
    all-reduced across replicas, so every replica (and every worker) updates the moving
    mean/variance identically. Without it, MultiWorkerMirroredStrategy workers end with
    different moving statistics (seen here: identical kernels, different BN moving means).
    """
    return tf.distribute.get_strategy().num_replicas_in_sync > 1


def make_optimizer(opt_cfg, total_steps: int, wrap_schedule=None):
    """Adam/AdamW/SGD with optional warm-up + cosine decay, loss-scaled under float16.

    opt_cfg is the run's `train` section or a `keras_suite.common.config.OptimizerConfig` (one per
    network when an app trains several with different settings)."""
    lr = opt_cfg.learning_rate
    warmup = opt_cfg.warmup_steps
    if opt_cfg.lr_schedule == "cosine" and total_steps > 0:
        decay_steps = max(1, total_steps - warmup)
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else lr,
            decay_steps,
            alpha=0.01,
            warmup_target=lr if warmup else None,
            warmup_steps=warmup,
        )
    else:
        schedule = lr
    if wrap_schedule is not None:  # fine-tuning's lower rate after unfreezing (common/finetune.py)
        schedule = wrap_schedule(schedule)
    beta_1, beta_2 = opt_cfg.beta_1, opt_cfg.beta_2
    if opt_cfg.optimizer == "adamw":
        opt = keras.optimizers.AdamW(
            schedule, weight_decay=opt_cfg.weight_decay or 1e-4, beta_1=beta_1, beta_2=beta_2
        )
    elif opt_cfg.optimizer == "sgd":
        opt = keras.optimizers.SGD(schedule, momentum=beta_1, nesterov=True)
    else:
        opt = keras.optimizers.Adam(schedule, beta_1=beta_1, beta_2=beta_2)
    if keras.mixed_precision.global_policy().name == "mixed_float16":
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


def current_lr(optimizer) -> float:
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    lr = inner.learning_rate
    if callable(lr) and not isinstance(lr, tf.Variable):
        lr = lr(inner.iterations)
    return float(keras.ops.convert_to_numpy(lr))


def pipeline_options():
    """Options for the training input pipelines.

    tf.data autotuning is off: with it on, destroying an epoch's iterator left the whole
    process idle for ~35 s on about one epoch in three (py-spy: `del` of the iterator; top:
    every thread at 0 % CPU), and its tuning threads took CPU from the steps on 2 cores.
    Detection `default`: with autotune, 3 of 7 epochs took 81.9 s and the others 43-48 s;
    without, 42-45 s and no stall (docs/detection.md). AUTOTUNE parallelism then means one
    call per core, which is what these pipelines need.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


@dataclass
class TrainState:
    """What a run trains, checkpoints, saves and exports.

    models: name -> Keras model. optimizers: name -> optimizer; `optimizer_models` says
    which models' trainable variables each one updates (default: the model of the same
    name, else "model"). variables: extra tf.Variables to checkpoint (counters, EMA
    state). exported: the models `export_archive`/`tflite_targets` use, first one the main
    one (`state.model`); saved: the models whose final weights are written as
    RUN_DIR/<name>.weights.h5 and loaded back by `load_run` (default all).
    """

    models: dict
    optimizers: dict = field(default_factory=dict)
    variables: dict = field(default_factory=dict)
    optimizer_models: dict = field(default_factory=dict)
    exported: tuple = ("model",)
    saved: tuple | None = None

    @property
    def model(self):
        """The main exported model."""
        return self.models[self.exported[0]]

    def trainable_variables(self, optimizer_name: str) -> list:
        names = self.optimizer_models.get(optimizer_name)
        if names is None:
            names = [optimizer_name if optimizer_name in self.models else self.exported[0]]
        return [v for n in names for v in self.models[n].trainable_variables]

    def build_optimizers(self):
        """Create optimizer slots now so a checkpoint restores into them (not lazily)."""
        for name, opt in self.optimizers.items():
            opt.build(self.trainable_variables(name))

    def learning_rates(self) -> dict:
        """Current learning rate of every optimizer: {"learning_rate": x} for one,
        {"learning_rate_<name>": x, ...} for several."""
        if len(self.optimizers) == 1:
            return {"learning_rate": current_lr(next(iter(self.optimizers.values())))}
        return {f"learning_rate_{k}": current_lr(v) for k, v in self.optimizers.items()}

    def checkpoint(self, **extra):
        items = dict(self.models)
        items.update({f"optimizer_{k}": v for k, v in self.optimizers.items()})
        items.update(self.variables)
        items.update(extra)
        return tf.train.Checkpoint(**items)

    @property
    def saved_models(self) -> dict:
        names = self.models if self.saved is None else self.saved
        return {n: self.models[n] for n in names}

    def save_weights(self, run_dir: str | Path) -> None:
        for name, model in self.saved_models.items():
            final = Path(run_dir) / f"{name}.weights.h5"
            tmp = final.with_name(final.name + ".tmp.weights.h5")
            model.save_weights(tmp)
            tmp.replace(final)

    def load_weights(self, run_dir: str | Path) -> None:
        for name, model in self.saved_models.items():
            model.load_weights(Path(run_dir) / f"{name}.weights.h5")


@dataclass
class TrainContext:
    """Everything a run's training needs, built by `keras_suite.common.run.train_run`."""

    app: object
    cfg: object
    run_dir: Path
    strategy: object
    data: object  # keras_suite.common.app.Datasets
    state: TrainState
    is_chief: bool = True
    worker_dir: Path | None = None  # where a non-chief worker writes (checkpoints, weights)
    logger: RunLogger | None = None
    callbacks: tuple = ()  # keras.callbacks.Callback instances (common/callbacks.py)

    def __post_init__(self):
        own_loop = type(self.app).train is not App.train
        if own_loop and (self.callbacks or getattr(self.cfg.train, "early_stopping", "")):
            raise UserError(
                f"the {getattr(self.app, 'name', 'this')} app trains with its own loop, which "
                "takes no callbacks and no train.early_stopping; leave them out"
            )

    @property
    def checkpoint_dir(self) -> Path:
        base = self.run_dir if self.is_chief else self.worker_dir
        return Path(base) / "checkpoints"

    def fit(self) -> list[dict]:
        """The shared epoch loop (what `App.train` does unless an app overrides it)."""
        return Trainer(self.app, self).fit()


class Trainer:
    """Epoch loop over `data.train_epoch(epoch)` with `strategy.run(app.train_step)`."""

    def __init__(self, app, ctx: TrainContext):
        self.app, self.ctx = app, ctx
        self.cfg = ctx.cfg.train
        self.strategy = ctx.strategy
        self.state = ctx.state
        with self.strategy.scope():
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            self.step_in_epoch = tf.Variable(
                0, dtype=tf.int64, trainable=False, name="step_in_epoch"
            )
            self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        # The epoch's running sums (and the epoch record about to be logged) as JSON, so a
        # resumed run logs exactly what an uninterrupted one would.
        self.log_state = tf.Variable("{}", dtype=tf.string, trainable=False, name="log_state")
        # Set when a callback stopped training: a rerun of a stopped run trains no further.
        self.stopped = tf.Variable(False, trainable=False, name="stopped")
        # The user's callbacks, then the built-in ones the config asks for; those with
        # state (early stopping's best value and weights) are part of the checkpoint.
        self.callbacks = [*ctx.callbacks, *builtin_callbacks(self.cfg)]
        for cb in self.callbacks:
            if isinstance(cb, RunCallback):
                cb.set_train_state(self.state)
        callback_states = [
            cb.checkpoint_state() for cb in self.callbacks if isinstance(cb, RunCallback)
        ]
        self.checkpoint = self.state.checkpoint(
            epoch=self.epoch,
            step_in_epoch=self.step_in_epoch,
            global_step=self.global_step,
            log_state=self.log_state,
            stopped=self.stopped,
            **{f"callback_{i}": st for i, st in enumerate(callback_states) if st is not None},
        )
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, str(ctx.checkpoint_dir), max_to_keep=self.cfg.keep_checkpoints
        )
        self.logger = ctx.logger or RunLogger(None)
        self.global_batch = self.cfg.batch_size
        self._train_fn = None
        self._test_fn = None

    # -- restore -----------------------------------------------------------------------
    def restore(self) -> bool:
        """Resume from the chief's latest checkpoint (every worker reads the same one)."""
        latest = tf.train.latest_checkpoint(str(Path(self.ctx.run_dir) / "checkpoints"))
        if not latest:
            # a run killed before its first checkpoint starts again from step 0: the step
            # records it logged describe work about to be redone
            self.logger.drop_after(0)
            return False
        self.checkpoint.restore(latest).assert_existing_objects_matched()
        # Records logged after this checkpoint describe work that is about to be redone.
        self.logger.drop_after(int(self.global_step.numpy()))
        pending = self._log_state().get("epoch_record")
        if pending:  # killed after the epoch's checkpoint, before its record was written
            self.logger.write_once(pending, "train", pending["epoch"])
        log.info(
            "resumed from %s (epoch %d, step %d of that epoch, global step %d)",
            Path(latest).name,
            int(self.epoch.numpy()) + 1,
            int(self.step_in_epoch.numpy()),
            int(self.global_step.numpy()),
        )
        return True

    def _log_state(self) -> dict:
        return json.loads(self.log_state.numpy().decode() or "{}")

    def save(self) -> None:
        # Every worker takes part in a save (the variables may need collectives); non-chief
        # workers write into their own worker_dir, and everyone restores from the chief's.
        path = self.manager.save(checkpoint_number=int(self.global_step.numpy()))
        log.debug("checkpoint %s", path)

    # -- compiled steps ----------------------------------------------------------------
    def _step_context(self, step, epoch):
        return StepContext(
            cfg=self.ctx.cfg, global_batch_size=self.global_batch, step=step, epoch=epoch
        )

    def _compiled_train(self):
        app, state = self.app, self.state

        @tf.function
        def train_fn(iterator, step, epoch):
            batch = next(iterator)
            out = self.strategy.run(
                app.train_step, args=(state, batch, self._step_context(step, epoch))
            )
            return {k: self.strategy.reduce("SUM", v, axis=None) for k, v in out.items()}

        return train_fn

    def _compiled_test(self):
        app, state = self.app, self.state

        @tf.function
        def test_fn(batch, step, epoch):
            out = self.strategy.run(
                app.test_step, args=(state, batch, self._step_context(step, epoch))
            )
            return {k: self.strategy.reduce("SUM", v, axis=None) for k, v in out.items()}

        return test_fn

    def validate(self) -> dict:
        data = self.ctx.data
        if data.val is None or not self.app.has_test_step:
            return {}
        self._test_fn = self._test_fn or self._compiled_test()
        totals: dict = {}
        val = data.val.with_options(pipeline_options())
        step = tf.constant(int(self.global_step.numpy()), tf.int64)
        epoch = tf.constant(int(self.epoch.numpy()), tf.int64)
        for batch in self.strategy.experimental_distribute_dataset(val):
            for k, v in self._test_fn(batch, step, epoch).items():
                totals[k] = totals.get(k, 0.0) + float(v)
        count = totals.pop("count", 0.0) or 1.0
        return {f"val_{k}": v / count for k, v in totals.items()}

    def validation_keys(self) -> list[str]:
        """The val_ keys `validate` will log, from one validation batch (no full pass)."""
        data = self.ctx.data
        if data.val is None or not self.app.has_test_step:
            return []
        self._test_fn = self._test_fn or self._compiled_test()
        first = data.val.take(1).with_options(pipeline_options())
        zero = tf.constant(0, tf.int64)
        for batch in self.strategy.experimental_distribute_dataset(first):
            return sorted(f"val_{k}" for k in self._test_fn(batch, zero, zero) if k != "count")
        return []

    # -- callbacks and TensorBoard -------------------------------------------------------
    def _callback_list(self, steps: int):
        """The callbacks as one CallbackList whose model is the main model (the first one
        the app saves); refuses an early-stopping metric the run does not compute."""
        for cb in self.callbacks:
            if hasattr(cb, "check_monitor"):
                cb.check_monitor(self.validation_keys())
        main = next(iter(self.state.saved_models.values()))
        for model in self.state.models.values():
            model.stop_training = False
        return keras.callbacks.CallbackList(
            self.callbacks, model=main, epochs=self.cfg.epochs, steps=steps, verbose=0
        )

    def _stop_requested(self) -> bool:
        return any(getattr(m, "stop_training", False) for m in self.state.models.values())

    def _write_hparams(self) -> None:
        writer = self.logger.writer("")
        if writer is not None and int(self.global_step.numpy()) == 0:
            tensorboard.write_hparams(writer, self.ctx.cfg, Path(self.ctx.run_dir).name)

    def _write_pictures(self, epoch: int) -> None:
        writer = self.logger.writer("train")
        if writer is None or not self.cfg.tensorboard_images:
            return
        t0 = time.perf_counter()
        tags = tensorboard.write_epoch_summaries(
            self.app,
            state=self.state,
            data=self.ctx.data,
            cfg=self.ctx.cfg,
            writer=writer,
            epoch=epoch,
        )
        if tags:
            log.debug("tensorboard %s (%.1fs)", ", ".join(tags), time.perf_counter() - t0)

    # -- the loop ----------------------------------------------------------------------
    def fit(self) -> list[dict]:
        data, cfg = self.ctx.data, self.cfg
        steps = data.steps_per_epoch
        if steps <= 0:
            raise UserError(
                f"the training set has fewer examples than one global batch ({self.global_batch}); "
                "add data or lower train.batch_size"
            )
        self.restore()
        callbacks = self._callback_list(steps)
        self._train_fn = self._compiled_train()
        self._write_hparams()
        profiler = tensorboard.StepProfiler(
            cfg.profile_steps, self.logger.tensorboard_dir, self.ctx.is_chief
        )
        try:
            history = self._epochs(steps, callbacks, profiler)
        finally:
            profiler.close()
        return history

    def _epochs(self, steps: int, callbacks, profiler) -> list[dict]:
        data, cfg = self.ctx.data, self.cfg
        history = []
        options = pipeline_options()
        callbacks.on_train_begin()
        while int(self.epoch.numpy()) < cfg.epochs and not bool(self.stopped.numpy()):
            epoch = int(self.epoch.numpy())
            callbacks.on_epoch_begin(epoch)
            start = int(self.step_in_epoch.numpy())
            ds = data.train_epoch(epoch).take(steps)
            if start:
                ds = ds.skip(start)  # the batches the interrupted run already trained on
            dist = iter(self.strategy.experimental_distribute_dataset(ds.with_options(options)))
            restored = self._log_state() if start else {}
            sums: dict = dict(restored.get("sums", {}))
            n = int(restored.get("n", 0))
            n_here = 0  # steps run by this process in this epoch: the rate's numerator
            t0 = time.perf_counter()
            bar = EpochProgress(
                steps,
                f"epoch {epoch + 1}/{cfg.epochs}",
                enabled=self.ctx.is_chief,
                initial=start,
                batch_size=self.global_batch,
                every_seconds=cfg.progress_seconds,
                every_steps=cfg.log_every_steps,
            )
            gstep = int(self.global_step.numpy())
            epoch_t = tf.constant(epoch, tf.int64)
            profiler.update(gstep)
            for step in range(start, steps):
                out = self._train_fn(dist, tf.constant(gstep, tf.int64), epoch_t)
                values = {k: float(v) for k, v in out.items()}
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + v
                n += 1
                n_here += 1
                gstep += 1
                profiler.update(gstep)
                elapsed = time.perf_counter() - t0
                rate = n_here * self.global_batch / max(elapsed, 1e-9)
                bar.update({k: v / n for k, v in sums.items()})
                if cfg.log_every_steps and gstep % cfg.log_every_steps == 0:
                    self.logger.write(
                        {
                            "kind": "step",
                            "epoch": epoch + 1,
                            "step": gstep,
                            **values,
                            "examples_per_sec": rate,
                        },
                        "train_steps",
                        gstep,
                    )
                    callbacks.on_train_batch_end(step, {**values, "examples_per_sec": rate})
                if not all(math.isfinite(v) for v in values.values()):
                    raise UserError(
                        f"training diverged at step {gstep} ({values}); lower "
                        "train.learning_rate or use train.precision=float32"
                    )
                if (
                    cfg.checkpoint_every_steps
                    and gstep % cfg.checkpoint_every_steps == 0
                    and step + 1 < steps
                ):
                    # the counters live in Python during the epoch; the checkpoint needs them
                    self.step_in_epoch.assign(step + 1)
                    self.global_step.assign(gstep)
                    self.log_state.assign(json.dumps({"sums": sums, "n": n}))
                    self.save()
            self.global_step.assign(gstep)
            bar.close()
            del dist  # this epoch's input pipeline: its threads stop now, not at the next epoch
            elapsed = time.perf_counter() - t0
            record = {
                "kind": "epoch",
                "epoch": epoch + 1,
                "step": int(self.global_step.numpy()),
                **{k: v / max(n, 1) for k, v in sums.items()},
                "examples_per_sec": n_here * self.global_batch / max(elapsed, 1e-9),
                "epoch_seconds": elapsed,
                **(
                    self.state.learning_rates()
                    if self.state.optimizers
                    else {"learning_rate": None}
                ),
            }
            record.update(self.validate())
            if self.ctx.is_chief:
                record.update(
                    self.app.on_epoch_end(
                        state=self.state,
                        data=data,
                        cfg=self.ctx.cfg,
                        run_dir=self.ctx.run_dir,
                        epoch=epoch + 1,
                    )
                )
                self._write_pictures(epoch + 1)
            # Before the checkpoint: what the callbacks decide (early stopping's best value
            # and weights, a stop) is saved with the epoch it belongs to.
            callbacks.on_epoch_end(epoch, _numbers(record))
            stop = self._stop_requested()
            self.epoch.assign(epoch + 1)
            self.step_in_epoch.assign(0)
            self.stopped.assign(stop)
            self.log_state.assign(json.dumps({"epoch_record": record}))
            self.save()
            self.logger.write(record, "train", epoch + 1)
            history.append(record)
            shown = ", ".join(
                f"{k} {v:.4f}"
                for k, v in record.items()
                if isinstance(v, float) and k not in ("epoch_seconds",)
            )
            log.info("epoch %d/%d: %s (%.1fs)", epoch + 1, cfg.epochs, shown, elapsed)
        callbacks.on_train_end()
        return history


def _numbers(record: dict) -> dict:
    """An epoch record as Keras callback logs: its metrics, without the bookkeeping."""
    return {
        k: v
        for k, v in record.items()
        if isinstance(v, (int, float))
        and not isinstance(v, bool)
        and k not in ("epoch", "step", "time")
    }
