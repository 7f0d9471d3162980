"""The app contract: what every `apps/<name>/` gives the CLI, the training loop, serving
and tflite. docs/adding-an-app.md walks through writing one.

An app package defines `APP = SomeApp()` (lazily, in its `__init__.py`), where `SomeApp`
subclasses `App`. The shared code calls these hooks, in this order, and nothing else.
Every hook but the per-replica steps takes KEYWORD-ONLY arguments with exactly the names
below (tests/contract/test_contract_rules.py checks it), so no app can relax a signature
or reorder arguments:

    ksuite train APP
        cfg       = config.resolve(APP.presets, preset, yaml, --set)
        artifacts = Artifacts(RUN_DIR / "artifacts")               # files kept with the run
        data      = APP.datasets(cfg=, artifacts=)                 # Datasets; info checked
        with strategy.scope():                                     #   (common/info.py)
            state = APP.build_state(cfg=, info=data.info)          # TrainState
        APP.train(ctx)      # default: the shared loop, which runs per replica
                            #   APP.train_step(state, batch, step)   step: StepContext
                            #   APP.test_step(state, batch, step)    (validation line)
                            # and on the chief APP.on_epoch_end(state=, data=, cfg=,
                            #   run_dir=, epoch=)
        metrics   = APP.evaluate(state=, data=, cfg=, run_dir=)    -> RUN_DIR/metrics.json
    ksuite evaluate RUN_DIR   load_run (datasets + build_state + saved weights), evaluate
    ksuite export RUN_DIR
        archive   = APP.export_archive(state=, info=, cfg=, artifacts=)   # ExportArchive
        requests  = APP.sample_requests(data=, info=, cfg=)        # warm-up records
    ksuite convert RUN_DIR
        targets   = APP.tflite_targets(state=, data=, cfg=, workdir=)     # [TFLiteTarget]
        metrics   = APP.tflite_evaluate(run_signature=, data=, cfg=, info=, target=)
    ksuite data check APP
        data = APP.datasets(cfg=, artifacts=scratch); APP.data_report(data=, cfg=)
    ksuite predict RUN_DIR INPUT...
        signature, inputs = APP.predict_request(inputs=, info=, cfg=)
        files     = APP.render_predictions(inputs=, outputs=, info=, out_dir=)
    tests/contract/test_app_contract.py
        inputs    = APP.predict_examples(data=, info=, cfg=, out_dir=)   # what predict takes
    ksuite VERB APP|RUN_DIR ...   verbs from apps/<name>/commands.py (COMMANDS list)

Rules that keep apps simple and distribution-correct:
- Apps are stateless: everything a hook needs arrives as an argument. Data computed once
  and needed later travels in `Datasets.extras` or `TFLiteTarget.extras`, files in
  `Artifacts`, never as attributes on the app object or in module-level variables (the
  one process-wide cache is keras_suite/common/cache.py).
- `Datasets.info` carries the keys shared code reads (keras_suite/common/info.py).
- `train_step` runs once per replica inside `strategy.run`. It returns a dict of scalars
  scaled so that SUMMING them over replicas gives the global value (use
  `keras_suite.common.training.replica_mean` for per-example losses, `replica_weighted_mean` when the
  denominator is a count of tokens or pixels), and applies its gradients itself
  (`keras_suite.common.training.apply_gradients`).
- `test_step` returns per-replica SUMS plus a `count` entry; the loop sums over replicas
  and batches and divides by the total count.
- Apps whose training is not "iterate over a dataset" (DQN) override `train(ctx)` and use
  the checkpoint manager, logger and strategy of the `TrainContext`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from keras_suite.common.errors import UserError


@dataclass
class Datasets:
    """Data for one run.

    train_epoch(epoch) returns the batched (global batch size, drop_remainder=True)
    training dataset of that epoch, shuffled with a seed derived from (seed, epoch) so
    that a resumed run sees exactly the batches the interrupted one would have.
    val/test are batched datasets (partial last batch kept) or None.
    info is JSON-serialisable metadata the model and exports need (class names, input
    size, vocabulary size, ...); it is saved as RUN_DIR/info.json.
    extras holds in-memory things the app's own later hooks need (ground-truth arrays,
    a calibration epoch, ...); the shared code never reads it.
    artifacts is the run's Artifacts folder (set by the shared code).
    """

    train_epoch: Optional[Callable[[int], Any]]
    steps_per_epoch: int
    val: Any = None
    test: Any = None
    info: dict = field(default_factory=dict)
    extras: dict = field(default_factory=dict)
    artifacts: Optional["Artifacts"] = None


@dataclass
class TFLiteTarget:
    """One function to convert to TFLite.

    saved_model_dir: a SavedModel written with keras.export.ExportArchive (docs/design.md §8:
        tf.saved_model.save of a tf.Module holding a Keras 3 model loses the weights in
        conversion), with fixed input shapes and only TFLite-builtin-friendly ops.
    signature: the signature key inside it to convert.
    representative_data: callable yielding dicts {input_name: np.ndarray} (batch 1) from the
        app's own pipeline, for int8 calibration. Draw it from a split that
        `tflite_evaluate` does not score on.
    calibration_split / evaluation_split: which data calibrates int8 and which the parity
        report scores, with sizes ("val (1000 images)"); the report prints both.
    extras: whatever the app's `tflite_evaluate` needs for this target (reference outputs
        of the Keras model, a decoding loop's settings, ...).
    """

    name: str
    saved_model_dir: str
    signature: str = "serving_default"
    representative_data: Optional[Callable[[], Any]] = None
    calibration_split: str = ""
    evaluation_split: str = ""
    extras: dict = field(default_factory=dict)


class Artifacts:
    """Files an app keeps with a run: vocabularies, tokenizer models, statistics.

    They live in RUN_DIR/artifacts/. `datasets()` writes them the first time (when a
    vocabulary is learned from the training split) and reads them back on resume, in
    `ksuite evaluate/export/convert`, and in `predict`; `export_archive` packs them into
    the SavedModel (as `tf.saved_model.Asset`s or lookup-table initialisers, which TF
    Serving copies along with the model). Writes are atomic.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def path(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"artifact names are plain file names, got {name!r}")
        return self.folder / name

    def exists(self, name: str) -> bool:
        return self.path(name).is_file()

    def names(self) -> list[str]:
        return sorted(p.name for p in self.folder.glob("*") if p.is_file() and ".tmp" not in p.name)

    def write_bytes(self, name: str, data: bytes) -> Path:
        final = self.path(name)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(final.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(final)
        return final

    def write_text(self, name: str, text: str) -> Path:
        return self.write_bytes(name, text.encode("utf-8"))

    def read_bytes(self, name: str) -> bytes:
        if not self.exists(name):
            raise UserError(
                f"the run has no artifact {name!r} in {self.folder}; it was not trained "
                "to completion, or the folder was moved without its artifacts/"
            )
        return self.path(name).read_bytes()

    def read_text(self, name: str) -> str:
        return self.read_bytes(name).decode("utf-8")


@dataclass
class StepContext:
    """What the shared loop hands every train/test step (inside `strategy.run`).

    cfg: the run's config. global_batch_size: examples per step over all replicas.
    step: the global step as an int64 tensor (0 for the first step), epoch likewise.
    Randomness inside a step should be stateless and derived from `seed()`, so that a
    resumed run draws the same numbers and each replica draws different ones.
    """

    cfg: Any
    global_batch_size: int
    step: Any = 0
    epoch: Any = 0

    def seed(self, salt: int = 0):
        """A shape-[2] int64 seed for tf.random.stateless_*: differs by step, replica and
        `salt` (use one salt per random draw in a step), same after a resume."""
        import tensorflow as tf

        ctx = tf.distribute.get_replica_context()
        replica = ctx.replica_id_in_sync_group if ctx is not None else 0
        replica = tf.cast(replica, tf.int64)
        step = tf.cast(self.step, tf.int64)
        base = int(getattr(getattr(self.cfg, "train", None), "seed", 0))
        return tf.stack([tf.constant(base * 1_000_003 + salt, tf.int64), step * 1024 + replica])


class App:
    """Base class of every app. Required hooks raise NotImplementedError; optional ones
    have defaults that do the right thing for an app that does not need them."""

    name: str = ""
    description: str = ""
    #: preset name -> zero-argument callable returning a fresh config dataclass
    presets: dict = {}
    #: what `ksuite predict RUN_DIR INPUT...` takes, shown in its help
    predict_inputs: str = "input files"
    #: how far a converted TFLite model's metric may fall behind the Keras reference before
    #: `ksuite convert` flags the mode (docs/tflite.md). metric: a key of `tflite_evaluate`
    #: ("" = the first); max_drop: a fraction of the Keras value when relative, else in the
    #: metric's own units; higher_is_better: False for FID, bits/char, negative ELBO.
    parity_tolerance: dict = {
        "metric": "",
        "max_drop": 0.05,
        "relative": True,
        "higher_is_better": True,
    }

    # ---- data and model (required) --------------------------------------------------
    def datasets(self, *, cfg, artifacts: Artifacts | None) -> Datasets:
        """The run's data. Learn vocabularies/statistics here and write them to
        `artifacts` if they are not there yet; read them back if they are."""
        raise NotImplementedError

    def build_state(self, *, cfg, info: dict):
        """A `keras_suite.common.training.TrainState` (models, optimizers, exported model names);
        called inside `strategy.scope()`."""
        raise NotImplementedError

    def data_report(self, *, data: Datasets, cfg) -> dict:
        """What `ksuite data check APP` prints about the data a run would see (the loaders'
        warnings about skipped files are printed with it). Default: classes, split sizes
        and origins, source image sizes, read from `data.info`; override to add more."""
        info = data.info
        report = {"source": info.get("source", "")}
        if "class_names" in info:
            report["classes"] = list(info["class_names"])
        report["split_sizes"] = info.get("split_sizes") or {
            s: info[f"num_{s}"] for s in ("train", "val", "test") if info.get(f"num_{s}")
        }
        for key in ("split_origin", "image_sizes", "evaluation_split"):
            if key in info:
                report[key] = info[key]
        report["steps_per_epoch"] = data.steps_per_epoch
        return report

    # ---- training ---------------------------------------------------------------------
    def train_step(self, state, batch, step: StepContext) -> dict:
        """One optimisation step on this replica's part of the batch (see module doc)."""
        raise NotImplementedError

    def test_step(self, state, batch, step: StepContext) -> dict:
        """Per-replica sums plus `count`, for the per-epoch validation line. Optional."""
        return {}

    @property
    def has_test_step(self) -> bool:
        return type(self).test_step is not App.test_step

    def on_epoch_end(self, *, state, data: Datasets, cfg, run_dir, epoch: int) -> dict:
        """Called by the shared loop on the chief after each epoch (1-based `epoch`) is
        checkpointed and validated: progress pictures (a GAN's sample grid), extra numbers
        to log (returned scalars join the epoch record). Default: nothing."""
        return {}

    def tensorboard_images(self, *, state, data: Datasets, cfg) -> dict:
        """Pictures of what the model does now, {tag: uint8 array [N, H, W, 3]}, written to
        TensorBoard (RUN_DIR/logs/tensorboard/train, step = epoch) by the shared loop on the
        chief after each epoch. Keep them cheap and on fixed inputs (a handful of
        validation images, fixed seeds), never the test split. Default: none."""
        return {}

    def tensorboard_text(self, *, state, data: Datasets, cfg) -> dict:
        """Text for TensorBoard after each epoch, like `tensorboard_images`: {tag: markdown
        string, or a list of strings shown as a table}. Default: none."""
        return {}

    def train(self, ctx) -> list[dict]:
        """Train and return the per-epoch records. Default: the shared epoch loop over
        `datasets().train_epoch`. Override for training that is not over a dataset (RL)."""
        return ctx.fit()

    # ---- evaluation (required) --------------------------------------------------------
    def evaluate(self, *, state, data: Datasets, cfg, run_dir) -> dict:
        """The field's metrics on the test split, plots in RUN_DIR/plots; returns the dict
        written as metrics.json (scalars first; nested tables allowed)."""
        raise NotImplementedError

    # ---- serving ---------------------------------------------------------------------
    def export_archive(self, *, state, info: dict, cfg, artifacts: Artifacts | None):
        """A keras.export.ExportArchive whose endpoints are the serving signatures
        (`serving_default` always). Pack artifacts the graph reads as assets."""
        raise NotImplementedError

    def sample_requests(self, *, data: Datasets, info: dict, cfg) -> dict:
        """{signature_name: [{input_name: np.ndarray (with batch dim)}, ...]} for TF
        Serving warm-up records and serving tests."""
        raise NotImplementedError

    def predict_request(self, *, inputs: list[str], info: dict, cfg) -> tuple[str, dict]:
        """Turn what the user typed after `ksuite predict RUN_DIR` (file paths, sentences,
        a prompt, seeds: see `predict_inputs`) into (signature, {input: array})."""
        raise UserError(
            f"the {self.name} app takes no inputs on the command line; send "
            "--input-json REQUEST.json (columnar TF Serving `inputs`)"
        )

    def render_predictions(self, *, inputs: list[str], outputs: dict, info: dict, out_dir) -> list:
        """Write what a person looks at (overlays, grids, text) for a predict call;
        return the paths written. Default: nothing besides predictions.json."""
        return []

    def predict_examples(self, *, data: Datasets, info: dict, cfg, out_dir) -> list[str]:
        """Inputs for `ksuite predict` made from the test split (files written to
        out_dir, or strings), so the contract test can run predict like a user."""
        raise NotImplementedError

    # ---- TFLite ----------------------------------------------------------------------
    def tflite_targets(self, *, state, data: Datasets, cfg, workdir) -> list[TFLiteTarget]:
        """SavedModels (written under workdir) with fixed shapes to convert."""
        raise NotImplementedError

    def tflite_evaluate(
        self,
        *,
        run_signature: Callable[[dict], dict],
        data: Datasets,
        cfg,
        info: dict,
        target: TFLiteTarget | None,
    ) -> dict:
        """The app's metric computed by calling `run_signature({input: batch-1 array})`,
        which runs the converted model (or its SavedModel reference), over the
        evaluation split. The first key is the headline metric of the parity report."""
        raise NotImplementedError
