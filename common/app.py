"""The app contract: what every `apps/<name>/` exposes to the CLI, serving and tflite.

An app module defines `APP = SomeApp()` where `SomeApp` subclasses `App`. The shared
pipeline calls, in order:

    cfg   = config.resolve(APP.presets, preset, yaml, overrides)
    data  = APP.datasets(cfg)                       # Datasets (train/val/test + info)
    with strategy.scope():
        state = APP.build_state(cfg, data.info)     # TrainState: models + optimizers
    Trainer(...).fit()  ->  calls APP.train_step / APP.test_step under strategy.run
    metrics = APP.evaluate(state, data, cfg, run_dir)
    archive = APP.export_archive(state, data.info, cfg)      # keras.export.ExportArchive
    targets = APP.tflite_targets(state, data, cfg)           # list[TFLiteTarget]
    APP.tflite_evaluate(runner_factory, data, cfg)           # app metric on a .tflite

Rules for the step functions (they run once per replica inside `strategy.run`):
- `train_step` returns a dict of scalars already scaled so that SUMMING them over
  replicas gives the global value (use `common.training.replica_mean`, which divides by
  the GLOBAL batch size), and applies gradients itself (`common.training.apply_gradients`).
- `test_step` returns a dict of per-replica SUMS plus a `count` entry; the loop sums over
  replicas and batches and divides by the total count.

Apps whose training is not "iterate over a dataset" (DQN) override `train(ctx)` and use
the same checkpoint manager, logger and strategy from the `TrainContext`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional


@dataclass
class Datasets:
    """Data for one run.

    train_epoch(epoch) returns the batched (global batch size, drop_remainder=True)
    training dataset of that epoch, shuffled with a seed derived from (seed, epoch) so
    that a resumed run sees exactly the batches the interrupted one would have.
    val/test are batched datasets (partial last batch kept) or None.
    info is JSON-serialisable metadata the model and exports need (class names, input
    size, ...); it is saved as RUN_DIR/info.json.
    """

    train_epoch: Optional[Callable[[int], Any]]
    steps_per_epoch: int
    val: Any = None
    test: Any = None
    info: dict = field(default_factory=dict)


@dataclass
class TFLiteTarget:
    """One function to convert to TFLite.

    saved_model_dir: a SavedModel written with keras.export.ExportArchive (DESIGN.md §11:
        tf.saved_model.save of a tf.Module holding a Keras 3 model loses the weights in
        conversion), with fixed input shapes and only TFLite-builtin-friendly ops.
    signature: the signature key inside it to convert.
    representative_data: callable yielding dicts {input_name: np.ndarray} (batch 1) from the
        app's own pipeline, for int8 calibration.
    """

    name: str
    saved_model_dir: str
    signature: str = "serving_default"
    representative_data: Optional[Callable[[], Any]] = None


class App:
    name: str = ""
    description: str = ""
    #: preset name -> zero-argument callable returning a fresh config dataclass
    presets: dict = {}

    # ---- data and model -------------------------------------------------------------
    def datasets(self, cfg) -> Datasets:
        raise NotImplementedError

    def build_state(self, cfg, info: dict):
        """Models and optimizers (a `common.training.TrainState`); called in strategy scope."""
        raise NotImplementedError

    # ---- training -------------------------------------------------------------------
    def train_step(self, state, batch, global_batch_size: int) -> dict:
        raise NotImplementedError

    def test_step(self, state, batch) -> dict:
        """Per-replica sums plus `count`; used for the per-epoch validation line."""
        return {}

    def train(self, ctx) -> list[dict]:
        """Default: the shared epoch loop. Override for non-dataset training (RL)."""
        from common.training import Trainer

        return Trainer(self, ctx).fit()

    # ---- evaluation and deployment ----------------------------------------------------
    def evaluate(self, state, data: Datasets, cfg, run_dir) -> dict:
        raise NotImplementedError

    def export_archive(self, state, info: dict, cfg):
        """A keras.export.ExportArchive whose endpoints are the serving signatures."""
        raise NotImplementedError

    def sample_requests(self, data: Datasets, info: dict, cfg) -> dict:
        """{signature_name: [ {input_name: np.ndarray (with batch dim)} , ...]} for
        TF Serving warm-up records and serving tests."""
        raise NotImplementedError

    def tflite_targets(self, state, data: Datasets, cfg, workdir) -> list[TFLiteTarget]:
        raise NotImplementedError

    def tflite_evaluate(self, run_signature: Callable[[dict], dict], data: Datasets,
                        cfg, info: dict) -> dict:
        """The app's metric computed by calling `run_signature({input: batch-1 array})`,
        which runs the converted model, over the evaluation set."""
        raise NotImplementedError
