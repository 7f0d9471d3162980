"""The Python API: what `ksuite` does, from a notebook (docs/python-api.md).

    import keras_suite as ks

    cfg = ks.config("classification", preset="smoke")   # a typed config object
    cfg.train.epochs = 2                                  # change fields as attributes
    run = ks.train(cfg, run_dir="runs/notebook")          # any tf.distribute strategy
    run.metrics["top1"]
    run.predict(images)                                   # numpy arrays, strings, files
    run.export("models")                                  # TF Serving layout
    run.convert("float32,int8")                           # TFLite + parity report
    run = ks.load("runs/notebook")                        # a finished run, later

Every `ksuite` command calls the same functions underneath (keras_suite/common/run.py,
keras_suite/export/writer.py, keras_suite/tflite/pipeline.py, keras_suite/predict.py),
so a run trained here is a run directory the CLI can evaluate, export, convert and serve,
and the other way round.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from keras_suite.common import config as config_lib
from keras_suite.common.errors import UserError
from keras_suite.common.registry import app_names, get_app

__all__ = ["app_names", "presets", "config", "train", "load", "Run"]


def presets(app: str) -> list[str]:
    """The preset names of an app (`smoke`, `default`, `full`, ...)."""
    return list(get_app(app).presets)


def config(app: str, preset: str = "default", **sections: dict) -> Any:
    """The app's config for `preset` as a dataclass tree (`cfg.data`, `cfg.model`,
    `cfg.train`). Keyword arguments override whole sections' fields the way a YAML file
    does: `ks.config("vae", "smoke", train={"epochs": 3})`."""
    app_obj = get_app(app)
    cfg = config_lib.resolve(app_obj.presets, preset)
    if sections:
        cfg = config_lib.merge(cfg, sections)
        config_lib.validate(cfg)
    return cfg


def _app_of(cfg) -> str:
    """The app a config object belongs to, from its class's module
    (keras_suite.apps.<app>.config)."""
    parts = type(cfg).__module__.split(".")
    if len(parts) >= 3 and parts[:2] == ["keras_suite", "apps"] and parts[2] in app_names():
        return parts[2]
    raise UserError(
        f"{type(cfg).__name__} is not a Keras Suite app config; make one with "
        "keras_suite.config(APP, preset)"
    )


def _check_fields(cfg, where: str = "cfg") -> None:
    """Dataclass instances accept any attribute; a typo (`cfg.train.epoch = 3`) would be
    silently ignored. Refuse attributes that are not fields, naming the valid ones."""
    names = {f.name for f in dataclasses.fields(cfg)}
    for key in vars(cfg):
        if key not in names:
            raise UserError(
                f"{where}.{key} is not a config field; {where} has: {', '.join(sorted(names))}"
            )
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            _check_fields(value, f"{where}.{f.name}")


def _checked(app: str, cfg):
    """A fresh config with every field coerced and validated exactly as `--set` would
    (cfg.train.epochs = "3" becomes 3; a bad value is one clear error)."""
    _check_fields(cfg)
    app_obj = get_app(app)
    base = next(iter(app_obj.presets.values()))()
    checked = config_lib.merge(base, config_lib.to_dict(cfg))
    config_lib.validate(checked)
    return checked


def _preset_name(app: str, cfg) -> str:
    """The preset this config equals, or "custom" (recorded in run.json)."""
    target = config_lib.to_dict(cfg)
    for name, make in get_app(app).presets.items():
        if config_lib.to_dict(make()) == target:
            return name
    return "custom"


def train(
    cfg,
    run_dir: str | Path | None = None,
    *,
    strategy="auto",
    cpu_devices: int = 0,
    overwrite: bool = False,
    callbacks=(),
    evaluate: bool = True,
) -> Run:
    """Train (or resume) a run with `cfg` and return it, evaluated.

    strategy: "auto" | "default" | "mirrored" | "multiworker" | "tpu", or a
        `tf.distribute.Strategy` you built. `cpu_devices=N` splits the CPU into N logical
        devices for "mirrored" (it must happen before TensorFlow starts: a fresh kernel).
    callbacks: keras.callbacks.Callback objects driven by the training loop.
    run_dir: default runs/<app>-<preset>. An existing run with the same config resumes;
        `overwrite=True` starts over.
    """
    from keras_suite.common.run import default_run_dir, train_run

    app = _app_of(cfg)
    cfg = _checked(app, cfg)
    preset = _preset_name(app, cfg)
    run_dir = Path(run_dir) if run_dir else default_run_dir(app, preset)
    extra = {"callbacks": list(callbacks)} if callbacks else {}
    train_run(
        app,
        preset,
        strategy_name=strategy,
        run_dir=run_dir,
        cpu_devices=cpu_devices,
        overwrite=overwrite,
        evaluate=evaluate,
        command=f"keras_suite.train({app} config, run_dir={str(run_dir)!r})",
        cfg=cfg,
        **extra,
    )
    return load(run_dir)


def load(run_dir: str | Path, data_path: str | Path | None = None) -> Run:
    """A finished run: its app, config, info, metrics, artifacts and models. `data_path`:
    where the run's training data is now, if it moved since training (evaluate, export
    and convert read it; predict never does)."""
    from keras_suite.common.run import load_run

    data_path = str(data_path) if data_path else None
    return Run(load_run(run_dir, data_path=data_path), data_path)


class Run:
    """A finished run directory, loaded. Attributes:

    app (name), cfg (config object), info (dataset metadata), metrics (metrics.json),
    models ({name: keras.Model} with the final weights), artifacts (files the app kept:
    vocabularies, ...), run_dir.
    """

    def __init__(self, loaded, data_path: str | None = None):
        self._loaded = loaded
        self._data_path = data_path
        self._servable = None  # the in-memory serving graph, built on first predict

    def __repr__(self) -> str:
        return f"Run(app={self.app!r}, run_dir={str(self.run_dir)!r})"

    @property
    def app(self) -> str:
        return self._loaded.app.name

    @property
    def cfg(self):
        return self._loaded.cfg

    @property
    def info(self) -> dict:
        return self._loaded.info

    @property
    def run_dir(self) -> Path:
        return Path(self._loaded.run_dir)

    @property
    def artifacts(self):
        return self._loaded.artifacts

    @property
    def models(self) -> dict:
        state = self._loaded.state
        return {name: state.models[name] for name in state.saved_models}

    @property
    def metrics(self) -> dict:
        path = self.run_dir / "metrics.json"
        return json.loads(path.read_text()) if path.exists() else {}

    # ---- the pipeline -------------------------------------------------------------
    def evaluate(self) -> dict:
        """Recompute the app's metrics on the test split; rewrites metrics.json."""
        from keras_suite.common.run import evaluate_run

        return evaluate_run(self.run_dir, data_path=self._data_path)

    def export(
        self, base: str | Path | None = None, name: str | None = None, version: int | None = None
    ) -> Path:
        """A TF-Serving-ready SavedModel at BASE/NAME/VERSION (default base RUN_DIR/exports,
        name the app, version the next free one); returns the version folder."""
        from keras_suite.export.writer import export_run

        base = Path(base) if base else self.run_dir / "exports"
        return export_run(self.run_dir, base, name=name, version=version, data_path=self._data_path)

    def convert(self, modes="float32", io_type: str = "float32", evaluate: bool = True) -> dict:
        """TFLite files in RUN_DIR/tflite for each mode ("float32", "dynamic", "float16",
        "int8", "int16x8", a comma-separated list or "all") and, with evaluate, the parity
        report ({"files": [...], "report": {...}})."""
        from keras_suite.tflite.pipeline import convert_run

        return convert_run(
            self.run_dir, modes, io_type, evaluate=evaluate, data_path=self._data_path
        )

    def predict(self, inputs, signature: str | None = None) -> dict:
        """Run the serving graph in-process and return {output name: np.ndarray}.

        inputs:
          - a dict {input name: array}: sent to `signature` (default serving_default);
          - a numpy array: the single input of `signature` (e.g. float32 images
            [N, H, W, 3] in 0..255 for the image apps, at the run's input size);
          - a string, an int or a list of them: what `ksuite predict` takes for this app
            (image file paths, sentences, a prompt, seeds; `ksuite apps` lists it).
        """
        servable = self._serving_graph()
        if isinstance(inputs, dict):
            return self._call(servable, signature or "serving_default", dict(inputs))
        if isinstance(inputs, np.ndarray):
            name = signature or "serving_default"
            expected = sorted(self._signature(servable, name).inputs)
            if len(expected) != 1:
                raise UserError(
                    f"signature {name!r} takes {len(expected)} inputs ({', '.join(expected)}); "
                    "pass a dict {input name: array}"
                )
            return self._call(servable, name, {expected[0]: inputs})
        items = [inputs] if isinstance(inputs, (str, int, Path)) else list(inputs)
        if not items:
            raise UserError("predict() got no inputs")
        app = self._loaded.app
        chosen, feeds = app.predict_request(
            inputs=[str(x) for x in items], info=self.info, cfg=self.cfg
        )
        return self._call(servable, signature or chosen, feeds)

    # ---- helpers --------------------------------------------------------------------
    def _serving_graph(self):
        if self._servable is None:
            from keras_suite.predict import load_run_servable

            self._servable = load_run_servable(self._loaded)
        return self._servable

    @staticmethod
    def _signature(servable, name: str):
        from keras_suite.serving.errors import ServingError

        try:
            return servable.signature(name)[1]
        except ServingError as exc:
            raise UserError(f"predict: {exc}") from None

    @staticmethod
    def _call(servable, signature: str, feeds: dict) -> dict:
        from keras_suite.serving.errors import ServingError

        try:
            _, sig = servable.signature(signature)
            feeds = {k: _as_input_dtype(v, sig.inputs.get(k)) for k, v in feeds.items()}
            _, outputs = servable.predict(signature, feeds)
        except ServingError as exc:
            raise UserError(f"predict: {exc}") from None
        return {k: np.asarray(v) for k, v in outputs.items()}


def _as_input_dtype(value, tensor_info):
    """numpy's defaults (float64, int64, Python str) cast to the signature's dtype when the
    kind matches (float64 -> float32, a list of str -> strings); anything else is left
    for the signature check to refuse with its own message."""
    from keras_suite.serving.tensors import numpy_dtype

    array = np.asarray(value)
    if tensor_info is None:
        return array
    want = np.dtype(numpy_dtype(tensor_info.dtype))
    if want == object:
        return array.astype(object) if array.dtype.kind in "UOS" else array
    same_kind = (array.dtype.kind == "f" and want.kind == "f") or (
        array.dtype.kind in "iu" and want.kind in "iu"
    )
    return array.astype(want) if same_kind and array.dtype != want else array
