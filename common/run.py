"""A run from start to finish, and loading a finished run back.

RUN_DIR layout (docs/run-directory.md):
    config.yaml            resolved config (preset + YAML + --set)
    run.json               app, preset, strategy, replicas, versions, command line
    info.json              dataset metadata the model needs (class names, input size)
    checkpoints/           tf.train.CheckpointManager files (resume point)
    logs/metrics.jsonl     one JSON record per logged step and per epoch
    logs/tensorboard/      TensorBoard scalars (train, train_steps)
    model.weights.h5       final weights of each model (<name>.weights.h5)
    metrics.json           final evaluation metrics
    plots/                 PNGs (training curves, confusion matrix, ...)
    exports/               SavedModels written by `ksuite export` / convert
    tflite/                .tflite files and parity reports
"""
from __future__ import annotations

import json
import platform
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import common
from common import config as config_lib
from common.errors import UserError
from common.precision import resolve_precision
from common.registry import get_app
from common.runlog import RunLogger, log, read_jsonl, write_json_atomic

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402


def default_run_dir(app_name: str, preset: str) -> Path:
    return Path("runs") / f"{app_name}-{preset}"


def _check_run_dir(run_dir: Path, cfg, overwrite: bool) -> None:
    """Refuse to mix two different runs in one folder (resume needs the same config)."""
    saved = run_dir / "config.yaml"
    if not saved.exists():
        return
    if overwrite:
        shutil.rmtree(run_dir)
        return
    if config_lib.load_yaml(saved) != config_lib.to_dict(cfg):
        raise UserError(
            f"{run_dir} already holds a run with a different config; resume it with the same "
            "options, pass --run-dir NEW_DIR for a new run, or --overwrite to replace it")


def set_precision(precision: str) -> None:
    keras.mixed_precision.set_global_policy(precision)


@dataclass
class LoadedRun:
    app: object
    cfg: object
    info: dict
    state: object  # common.training.TrainState with the final weights
    run_dir: Path

    def datasets(self):
        return self.app.datasets(self.cfg)


def train_run(app_name: str, preset: str = "default", config_file: str | None = None,
              overrides=(), strategy_name: str = "auto", run_dir: str | Path | None = None,
              cpu_devices: int = 0, overwrite: bool = False, evaluate: bool = True,
              command: str = "") -> dict:
    """Train (or resume) a run, evaluate it and write metrics.json; returns the metrics."""
    from common.strategy import describe, make_strategy, worker_info
    from common.training import TrainContext

    app = get_app(app_name)
    cfg = config_lib.resolve(app.presets, preset, config_file, overrides)
    run_dir = Path(run_dir) if run_dir else default_run_dir(app_name, preset)

    strategy = make_strategy(strategy_name, cpu_devices)
    task_type, task_id, is_chief = worker_info(strategy)
    if is_chief:
        _check_run_dir(run_dir, cfg, overwrite)
    worker_dir = None if is_chief else run_dir / f".{task_type}-{task_id}"
    out_dir = run_dir if is_chief else worker_dir
    out_dir.mkdir(parents=True, exist_ok=True)

    keras.utils.set_random_seed(cfg.train.seed)
    precision = resolve_precision(cfg.train.precision, strategy)
    set_precision(precision)
    log.info("app %s, preset %s, strategy %s, precision %s, run dir %s",
             app_name, preset, describe(strategy), precision, run_dir)
    data = app.datasets(cfg)
    if is_chief:
        config_lib.save(cfg, run_dir / "config.yaml")
        write_json_atomic(run_dir / "info.json", data.info)
        write_json_atomic(run_dir / "run.json", {
            "app": app_name, "preset": preset, "strategy": describe(strategy),
            "replicas": strategy.num_replicas_in_sync, "command": command or " ".join(sys.argv),
            "python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "precision": precision})
    with strategy.scope():
        state = app.build_state(cfg, data.info)
        state.build_optimizers()
    logger = RunLogger(run_dir if is_chief else None)
    ctx = TrainContext(app=app, cfg=cfg, run_dir=run_dir, strategy=strategy, data=data,
                       state=state, is_chief=is_chief, worker_dir=worker_dir, logger=logger)
    try:
        history = app.train(ctx)
    finally:
        logger.close()
    state.save_weights(out_dir)
    if not is_chief:
        return {}
    from common.plots import plot_training_curves

    plot_training_curves(read_jsonl(run_dir / "logs" / "metrics.jsonl"), run_dir / "plots" / "training_curves.png")
    if not evaluate:
        return {"history": history}
    metrics = app.evaluate(state, data, cfg, run_dir)
    write_json_atomic(run_dir / "metrics.json", metrics)
    return metrics


def load_run(run_dir: str | Path, precision: str = "float32") -> LoadedRun:
    """Rebuild a finished run's models from config.yaml + info.json + final weights.

    precision="float32" (the default) builds the models for deployment: SavedModels and
    TFLite files are float32 graphs whatever the run trained with, because TFLite has no
    bfloat16 kernels and a bfloat16 graph runs slowly on CPUs without native support.
    The variables are float32 under every mixed policy, so the same weights load.
    precision="trained" rebuilds them with the run's own policy (what `ksuite evaluate` uses,
    so it reproduces the metrics written at the end of training)."""
    run_dir = Path(run_dir)
    meta_path = run_dir / "run.json"
    if not meta_path.exists():
        raise UserError(f"{run_dir} is not a Keras Suite run directory (no run.json); "
                        "pass the --run-dir of a `ksuite train` run")
    meta = json.loads(meta_path.read_text())
    app = get_app(meta["app"])
    preset = meta.get("preset", "default")
    cfg = config_lib.load_saved(app.presets[preset](), run_dir / "config.yaml")
    info = json.loads((run_dir / "info.json").read_text())
    weights = run_dir / "model.weights.h5"
    if not weights.exists():
        raise UserError(f"{run_dir} has no final weights (model.weights.h5): the run has not "
                        "finished; rerun the same `ksuite train` command to resume it")
    if precision == "trained":
        precision = meta.get("precision") or resolve_precision(cfg.train.precision)
    set_precision(precision)
    state = app.build_state(cfg, info)
    state.load_weights(run_dir)
    return LoadedRun(app=app, cfg=cfg, info=info, state=state, run_dir=run_dir)


def evaluate_run(run_dir: str | Path) -> dict:
    run = load_run(run_dir, precision="trained")
    data = run.datasets()
    metrics = run.app.evaluate(run.state, data, run.cfg, run.run_dir)
    write_json_atomic(Path(run_dir) / "metrics.json", metrics)
    return metrics

