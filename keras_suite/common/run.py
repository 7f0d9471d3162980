"""A run from start to finish, and loading a finished run back.

RUN_DIR layout (docs/run-directory.md):
    config.yaml            resolved config (preset + YAML + --set)
    run.json               app, preset, strategy, replicas, versions, command line
    info.json              dataset metadata the model needs (class names, input size)
    artifacts/             files the app keeps with the run (vocabularies, statistics)
    checkpoints/           tf.train.CheckpointManager files (resume point)
    logs/metrics.jsonl     one JSON record per logged step and per epoch
    logs/tensorboard/      TensorBoard scalars (train, train_steps)
    <name>.weights.h5      final weights of each saved model (model.weights.h5, ...)
    metrics.json           final evaluation metrics
    plots/                 PNGs (training curves, confusion matrix, ...)
    exports/               SavedModels of `ksuite demo` and the API's run.export() (ksuite export
                           --base DIR writes under DIR)
    tflite/                .tflite files and parity reports
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from keras_suite import common
from keras_suite.common import config as config_lib
from keras_suite.common.app import Artifacts
from keras_suite.common.errors import UserError
from keras_suite.common.info import check_info, with_evaluation_split
from keras_suite.common.precision import resolve_precision
from keras_suite.common.registry import get_app, read_run_meta
from keras_suite.common.runlog import RunLogger, log, read_jsonl, write_json_atomic

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402


def default_run_dir(app_name: str, preset: str) -> Path:
    return Path("runs") / f"{app_name}-{preset}"


def _check_run_dir(run_dir: Path, cfg, overwrite: bool, app_name: str = "") -> None:
    """Refuse to mix two different runs in one folder (resume needs the same config). The
    data path alone may differ: the same data, moved, resumes from its new place."""
    saved = run_dir / "config.yaml"
    if app_name and not overwrite and (run_dir / "run.json").is_file():
        other = read_run_meta(run_dir)["app"]
        if other != app_name:
            raise UserError(
                f"{run_dir} holds a {other} run, not a {app_name} run; pass --run-dir NEW_DIR "
                "for a new run"
            )
    if not saved.exists():
        return
    if overwrite:
        shutil.rmtree(run_dir)
        return
    old, new = config_lib.load_yaml(saved), config_lib.to_dict(cfg)
    key = config_lib.data_path_key(cfg)
    old_path = (old.get("data") or {}).get(key) if key else None
    new_path = config_lib.data_location(cfg)
    builtin = getattr(cfg.data, "builtin_sources", ()) if key else ()
    if old_path and new_path and old_path not in builtin and old_path != new_path:
        log.info("data.%s moved: %s -> %s; resuming with the new path", key, old_path, new_path)
        old = {**old, "data": {**old["data"], key: new_path}}
    added = _added_fields(old, new)
    if added:  # fields the suite gained after this run was made: they were never chosen
        log.info(
            "config fields added since %s was made take their values: %s", run_dir, ", ".join(added)
        )
    if old != new:
        changes = config_lib.config_changes(old, new)
        shown = "; ".join(changes[:6]) + (f"; {len(changes) - 6} more" if len(changes) > 6 else "")
        raise UserError(
            f"{run_dir} already holds a run with a different config ({shown}); resume it with "
            "the same options, pass --run-dir NEW_DIR for a new run, or --overwrite to replace it"
        )


def _added_fields(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Copy into `old` (in place) the fields of `new` that `old` lacks; return their names."""
    added = []
    for key, value in new.items():
        if key not in old:
            old[key] = value
            added.append(prefix + key)
        elif isinstance(value, dict) and isinstance(old[key], dict):
            added += _added_fields(old[key], value, f"{prefix}{key}.")
    return added


def set_precision(precision: str) -> None:
    keras.mixed_precision.set_global_policy(precision)


def run_artifacts(run_dir: str | Path) -> Artifacts:
    return Artifacts(Path(run_dir) / "artifacts")


def build_datasets(app, cfg, run_dir: str | Path):
    """app.datasets with the run's Artifacts folder, attached to the result."""
    artifacts = run_artifacts(run_dir)
    data = app.datasets(cfg=cfg, artifacts=artifacts)
    check_info(app.name, data.info)
    data.artifacts = artifacts
    return data


@dataclass
class RunContext:
    """A finished run's app, config and dataset metadata, without its models."""

    app: object
    cfg: object
    info: dict
    meta: dict
    run_dir: Path

    @property
    def artifacts(self) -> Artifacts:
        return run_artifacts(self.run_dir)

    def datasets(self):
        self.require_data()
        return build_datasets(self.app, self.cfg, self.run_dir)

    def lazy_datasets(self) -> "LazyDatasets":
        """The datasets, built only if a hook looks at them (see LazyDatasets)."""
        return LazyDatasets(self.datasets)

    def require_data(self) -> None:
        """One clear error when the data the run was trained on is not where config.yaml
        says (moved, deleted, or a relative path from another working directory)."""
        where = config_lib.data_location(self.cfg)
        if not where or os.path.exists(where):
            return
        missing = [p for p in where.split(",") if p and not os.path.exists(p)]
        if not missing:
            return
        key = config_lib.data_path_key(self.cfg)
        raise UserError(
            f"{self.run_dir} was trained on data at {missing[0]}, which does not exist now "
            f"(moved or deleted?); point the run at it with --data-path NEW_PATH "
            f"(or --set data.{key}=NEW_PATH)"
        )


class LazyDatasets:
    """A run's Datasets, built on first attribute access. A verb hands this to hooks that
    may not need the data (a GAN's export warm-up requests are seeds), so a run whose data
    moved away still exports, and nothing reads the data for nothing."""

    def __init__(self, build):
        self._build, self._data = build, None

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        if self._data is None:
            self._data = self._build()
        return getattr(self._data, name)


@dataclass
class LoadedRun(RunContext):
    state: object = None  # keras_suite.common.training.TrainState with the final weights


def read_run(run_dir: str | Path, data_path: str | None = None) -> RunContext:
    """App, config and info of a run directory (cheap: builds no model). `data_path`: where
    the run's data is now, if it moved since training (`--data-path`)."""
    run_dir = Path(run_dir)
    meta = read_run_meta(run_dir)
    app = get_app(meta["app"])
    preset = meta.get("preset", "default")
    # config.yaml holds every field; the preset only gives the config's type. "custom" is
    # a config built in Python (keras_suite.train) that equals no preset.
    if preset == "custom":
        make = next(iter(app.presets.values()))
    elif preset in app.presets:
        make = app.presets[preset]
    else:
        raise UserError(
            f"{run_dir} was trained with preset {preset!r}, which the {app.name} app "
            f"no longer has ({', '.join(app.presets)})"
        )
    cfg = config_lib.load_saved(make(), run_dir / "config.yaml")
    if data_path:
        cfg = config_lib.with_data_path(cfg, data_path)
    info = json.loads((run_dir / "info.json").read_text())
    return RunContext(app=app, cfg=cfg, info=info, meta=meta, run_dir=run_dir)


def train_run(
    app_name: str,
    preset: str = "default",
    config_file: str | None = None,
    overrides=(),
    strategy_name: str = "auto",
    run_dir: str | Path | None = None,
    cpu_devices: int = 0,
    overwrite: bool = False,
    evaluate: bool = True,
    callbacks=(),
    command: str = "",
    cfg=None,
) -> dict:
    """Train (or resume) a run, evaluate it and write metrics.json; returns the metrics.

    `cfg` (a config object, as `keras_suite.config()` returns) replaces preset + file +
    overrides; `strategy_name` may also be a `tf.distribute.Strategy` object."""
    from keras_suite.common.strategy import describe, make_strategy, worker_info
    from keras_suite.common.training import TrainContext

    app = get_app(app_name)
    if cfg is None:
        cfg = config_lib.resolve(app.presets, preset, config_file, overrides)
    else:
        config_lib.validate(cfg)
    run_dir = Path(run_dir) if run_dir else default_run_dir(app_name, preset)

    if isinstance(strategy_name, str):
        strategy = make_strategy(strategy_name, cpu_devices)
    else:
        strategy = strategy_name
    task_type, task_id, is_chief = worker_info(strategy)
    if is_chief:
        _check_run_dir(run_dir, cfg, overwrite, app_name)
    worker_dir = None if is_chief else run_dir / f".{task_type}-{task_id}"
    out_dir = run_dir if is_chief else worker_dir
    created = is_chief and not run_dir.exists()  # removed if the data cannot be read
    out_dir.mkdir(parents=True, exist_ok=True)

    keras.utils.set_random_seed(cfg.train.seed)
    precision = resolve_precision(cfg.train.precision, strategy)
    set_precision(precision)
    log.info(
        "app %s, preset %s, strategy %s, precision %s, run dir %s",
        app_name,
        preset,
        describe(strategy),
        precision,
        run_dir,
    )
    try:
        data = build_datasets(app, cfg, out_dir)
    except BaseException:
        if created:  # bad data leaves no half-made run directory behind
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    if is_chief:
        config_lib.save(cfg, run_dir / "config.yaml")
        write_json_atomic(run_dir / "info.json", data.info)
        write_json_atomic(
            run_dir / "run.json",
            {
                "app": app_name,
                "preset": preset,
                "strategy": describe(strategy),
                "replicas": strategy.num_replicas_in_sync,
                "command": command or " ".join(sys.argv),
                "python": platform.python_version(),
                "tensorflow": tf.__version__,
                "keras": keras.__version__,
                "precision": precision,
            },
        )
    with strategy.scope():
        state = app.build_state(cfg=cfg, info=data.info)
        state.build_optimizers()
    logger = RunLogger(run_dir if is_chief else None)
    ctx = TrainContext(
        app=app,
        cfg=cfg,
        run_dir=run_dir,
        strategy=strategy,
        data=data,
        state=state,
        is_chief=is_chief,
        worker_dir=worker_dir,
        logger=logger,
        callbacks=tuple(callbacks),  # keras.callbacks.Callback instances (docs/training.md)
    )
    try:
        history = app.train(ctx)
    finally:
        logger.close()
    state.save_weights(out_dir)
    if not is_chief:
        return {}
    from keras_suite.common.keras_files import save_keras_files

    save_keras_files(state, run_dir)  # <name>.keras + keras_files.json (docs/run-directory.md)
    from keras_suite.common.plots import plot_training_curves

    plot_training_curves(
        read_jsonl(run_dir / "logs" / "metrics.jsonl"), run_dir / "plots" / "training_curves.png"
    )
    if not evaluate:
        return {"history": history}
    metrics = app.evaluate(state=state, data=data, cfg=cfg, run_dir=run_dir)
    metrics = with_evaluation_split(metrics, data.info)
    write_json_atomic(run_dir / "metrics.json", metrics)
    return metrics


def load_run(
    run_dir: str | Path, precision: str = "float32", data_path: str | None = None
) -> LoadedRun:
    """Rebuild a finished run's models from config.yaml + info.json + final weights.

    precision="float32" (the default) builds the models for deployment: SavedModels and
    TFLite files are float32 graphs whatever the run trained with, because TFLite has no
    bfloat16 kernels and a bfloat16 graph runs slowly on CPUs without native support.
    The variables are float32 under every mixed policy, so the same weights load.
    precision="trained" rebuilds them with the run's own policy (what `ksuite evaluate` uses,
    so it reproduces the metrics written at the end of training). `data_path`: see read_run."""
    ctx = read_run(run_dir, data_path)
    if precision == "trained":
        precision = ctx.meta.get("precision") or resolve_precision(ctx.cfg.train.precision)
    set_precision(precision)
    state = ctx.app.build_state(cfg=ctx.cfg, info=ctx.info)
    missing = [
        f"{n}.weights.h5"
        for n in state.saved_models
        if not (ctx.run_dir / f"{n}.weights.h5").exists()
    ]
    if missing:
        raise UserError(
            f"{ctx.run_dir} has no final weights ({', '.join(missing)}): the run has not "
            "finished; rerun the same `ksuite train` command to resume it"
        )
    state.load_weights(ctx.run_dir)
    return LoadedRun(
        app=ctx.app, cfg=ctx.cfg, info=ctx.info, meta=ctx.meta, run_dir=ctx.run_dir, state=state
    )


def evaluate_run(run_dir: str | Path, data_path: str | None = None) -> dict:
    run = load_run(run_dir, precision="trained", data_path=data_path)
    data = run.datasets()
    metrics = run.app.evaluate(state=run.state, data=data, cfg=run.cfg, run_dir=run.run_dir)
    metrics = with_evaluation_split(metrics, data.info)
    write_json_atomic(Path(run_dir) / "metrics.json", metrics)
    return metrics
