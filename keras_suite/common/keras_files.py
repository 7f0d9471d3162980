"""RUN_DIR/<name>.keras: every exported model of a run as a Keras model file.

A `.keras` file holds a model's config (each class by name and module) and its weights,
and `keras.saving.load_model` rebuilds it. Keras 3 rebuilds a class only when it comes
from Keras or keras-hub, or when it is registered in the loading process
(`_retrieve_class_or_fn` in keras/src/saving/serialization_lib.py). A layer defined in
this package therefore loads only where its module has been imported. A file is
*portable* (it loads with Keras and TensorFlow alone, no keras_suite) when the model it
holds is made of stock classes only. What gives each model that form:

- A Functional model whose classes are all stock is written as it is.
- A Functional model with layers of this package is cloned with each of them replaced:
  `layer.stock_layer()` returns a stock layer with the same variables (the fused batch
  norm gives keras.layers.BatchNormalization), and `layer.stock_call(*args, **kwargs)`
  computes the layer's output from stock layers and Keras ops on the symbolic inputs
  (DQN's dueling head, the VQ-VAE's quantiser).
- A subclassed model gives `keras_file_inputs()` (name -> InputSpec) and
  `keras_file_call(inputs)` (its own outputs on those named inputs), and, when it can be
  written with stock layers, `stock_model()`: a Functional copy with its weights.

Every stock copy is checked before it replaces anything: its config may name no class
outside Keras and keras-hub, and the written file, loaded back, must give the trained
model's outputs on example inputs (to float tolerance). A model without a stock form, or
whose copy fails a check, is written as itself, with its classes registered
(`keras.saving.register_keras_serializable`): that file loads once the modules listed
in the manifest are imported (`load_keras_file` does that).

RUN_DIR/keras_files.json, the manifest, says for each model whether its file is
portable, what the loading process needs, why a file is not portable, the model's
inputs, and the largest output difference the check measured.
"""

from __future__ import annotations

import importlib
import json
import os
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from keras_suite import common
from keras_suite.common.runlog import log, write_json_atomic

common.quiet_import_tensorflow()
import keras  # noqa: E402

MANIFEST = "keras_files.json"
# Outputs may differ by float rounding (a stock layer may order its arithmetic
# differently): |difference| <= TOLERANCE * max(1, |largest output|).
TOLERANCE = 1e-5
# Packages whose classes Keras rebuilds from a file without registration.
STOCK_PACKAGES = ("keras", "keras_hub")
# Size given to a dimension a model leaves open (detection's image side: a multiple of 32).
OPEN_DIMENSION = 32


@dataclass
class InputSpec:
    """One model input: shape without the batch axis (None where open), dtype, the range
    example values are drawn from, and the shape those examples have."""

    name: str
    shape: tuple
    dtype: str
    low: float = 0.0
    high: float = 1.0
    example_shape: tuple | None = None

    def __post_init__(self):
        self.shape = tuple(self.shape)
        if self.example_shape is None:
            self.example_shape = tuple(OPEN_DIMENSION if d is None else d for d in self.shape)

    def symbolic(self):
        """A keras.Input for this spec."""
        return keras.Input(self.shape, dtype=self.dtype, name=self.name)


# ---- inputs and calls ------------------------------------------------------------------


def input_specs(model) -> list[InputSpec]:
    """The model's inputs in call order: its own `keras_file_inputs()`, or a Functional
    model's inputs (float examples in [0, 1), uint8 in 0..255, other integers 0 or 1)."""
    if hasattr(model, "keras_file_inputs"):
        return list(model.keras_file_inputs().values())
    if isinstance(model.input, dict):
        named = list(model.input.items())
    else:
        named = [(tensor.name, tensor) for tensor in keras.tree.flatten(model.input)]
    specs = []
    for name, tensor in named:
        dtype = keras.backend.standardize_dtype(tensor.dtype)
        high = 256 if dtype == "uint8" else 2 if "int" in dtype else 1.0
        specs.append(InputSpec(name, tuple(tensor.shape[1:]), dtype, 0, high))
    return specs


def example_inputs(specs, batch: int = 2, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = []
    for spec in specs:
        shape = (batch, *spec.example_shape)
        if "int" in spec.dtype:
            arrays.append(rng.integers(spec.low, spec.high, shape).astype(spec.dtype))
        else:
            arrays.append(rng.uniform(spec.low, spec.high, shape).astype(spec.dtype))
    return arrays


def call_keras_model(model, specs, arrays) -> list[np.ndarray]:
    """Outputs (flattened, as numpy) of `model` on inputs given in `specs` order: through
    `keras_file_call` for a subclassed model, by name for a model with named inputs (a
    dict), else in the order of `model.inputs`."""
    named = {s.name: a for s, a in zip(specs, arrays)}
    if hasattr(model, "keras_file_call"):
        outputs = model.keras_file_call(named)
    elif isinstance(model.input, dict):
        outputs = model(named, training=False)
    else:
        outputs = model(keras.tree.pack_sequence_as(model.input, list(arrays)), training=False)
    return [keras.ops.convert_to_numpy(o) for o in keras.tree.flatten(outputs)]


def max_difference(reference, outputs) -> float:
    """The largest |difference| relative to max(1, |largest reference value|); inf when
    the outputs differ in number, shape or kind, or integer outputs (codes) differ at all."""
    if len(reference) != len(outputs):
        return float("inf")
    worst = 0.0
    for ref, out in zip(reference, outputs):
        exact = ref.dtype.kind in "iub"
        if ref.shape != out.shape or exact != (out.dtype.kind in "iub"):
            return float("inf")
        if exact:
            if not np.array_equal(ref, out):
                return float("inf")
            continue
        ref64, out64 = ref.astype(np.float64), out.astype(np.float64)
        scale = max(1.0, float(np.max(np.abs(ref64), initial=0.0)))
        worst = max(worst, float(np.max(np.abs(ref64 - out64), initial=0.0)) / scale)
    return worst


# ---- stock copies --------------------------------------------------------------------------


def stock_layer(layer, **changes):
    """An unbuilt copy of `layer` (config entries in `changes` replaced): its stock form
    when it has one, else the same class."""
    if hasattr(layer, "stock_layer") and not changes:
        return layer.stock_layer()
    return layer.__class__.from_config({**layer.get_config(), **changes})


class LayerCopies:
    """Stock copies of a model's layers for a Functional copy of it: `copies(layer)` gives
    the copy of `layer` (the same one each time, so a layer used twice stays shared), and
    `copy_weights()` copies the weights once the copies are built (called)."""

    def __init__(self):
        self.copies = {}

    def __call__(self, layer, **changes):
        if id(layer) not in self.copies:
            self.copies[id(layer)] = (stock_layer(layer, **changes), layer)
        return self.copies[id(layer)][0]

    def copy_weights(self) -> None:
        for copy, original in self.copies.values():
            copy.set_weights(original.get_weights())


def _clone_functional(model):
    """`model` cloned with every layer that has a stock form replaced by it."""

    def clone(operation):
        if hasattr(operation, "stock_call"):
            return operation  # read, not called: stock_call builds its own stock layers
        return stock_layer(operation)

    def call(operation, *args, **kwargs):
        if hasattr(operation, "stock_call"):
            return operation.stock_call(*args, **kwargs)
        return operation(*args, **kwargs)

    copy = keras.models.clone_model(model, clone_function=clone, call_function=call, recursive=True)
    copied = {layer.name: layer for layer in copy.layers}
    for layer in model.layers:
        if layer.name in copied and not hasattr(layer, "stock_call"):
            copied[layer.name].set_weights(layer.get_weights())
    return copy


def stock_form(model):
    """(a model of stock classes computing what `model` computes, None) or (None, why not)."""
    if isinstance(model, keras.Sequential) or _is_functional(model):
        if not foreign_classes(model):
            return model, None
        return _clone_functional(model), None
    if hasattr(model, "stock_model"):
        return model.stock_model(), None
    why = getattr(model, "keras_file_note", None)
    return None, why or f"{type(model).__name__} is a subclassed model with no stock form"


def _is_functional(model) -> bool:
    from keras.src.models.functional import Functional

    package = type(model).__module__.split(".")[0]
    return isinstance(model, Functional) and package in STOCK_PACKAGES


# ---- what a config needs ---------------------------------------------------------------


def _modules(config) -> set:
    """Every (module, class name) named in a serialized config."""
    found = set()
    if isinstance(config, dict):
        if "class_name" in config and "module" in config:
            found.add((config["module"] or "", config["class_name"]))
        for value in config.values():
            found |= _modules(value)
    elif isinstance(config, list):
        for value in config:
            found |= _modules(value)
    return found


def foreign_classes(model) -> list[str]:
    """Classes in `model`'s config that Keras cannot rebuild without registration."""
    config = keras.saving.serialize_keras_object(model)
    return sorted(
        f"{module}.{name}"
        for module, name in _modules(config)
        if module.split(".")[0] not in STOCK_PACKAGES and module != "builtins"
    )


def _file_modules(path: Path) -> set:
    with zipfile.ZipFile(path) as archive:
        return _modules(json.loads(archive.read("config.json")))


def _needs(modules: set) -> tuple[list, list]:
    """(packages the loading process needs, modules it must import first)."""
    packages = {module.split(".")[0] for module, _ in modules if module}
    imports = sorted({m for m, _ in modules if m and m.split(".")[0] not in STOCK_PACKAGES})
    imports = [m for m in imports if m != "builtins"]
    needs = ["keras", "tensorflow"]
    needs += [p for p in ("keras_hub", "keras_suite") if p in packages]
    return needs, imports


# ---- writing -------------------------------------------------------------------------------


def _write_checked(model, final: Path, specs, arrays, reference) -> float:
    """Write `model` to a temporary file, load it back and compare its outputs with
    `reference`; only a file that passes replaces `final`. Returns the difference."""
    tmp = final.with_name(f".{final.stem}.tmp-{os.getpid()}.keras")
    try:
        model.save(tmp)
        loaded = keras.saving.load_model(tmp)
        difference = max_difference(reference, call_keras_model(loaded, specs, arrays))
        if not difference <= TOLERANCE:
            raise ValueError(f"the file's outputs differ from the model's by {difference:.3g}")
        os.replace(tmp, final)
        return difference
    finally:
        tmp.unlink(missing_ok=True)


def save_keras_file(model, path: str | Path) -> dict:
    """Write `model` to `path` (portable when it can be), checked; the manifest entry."""
    path = Path(path)
    specs = input_specs(model)
    arrays = example_inputs(specs)
    reference = call_keras_model(model, specs, arrays)
    entry = {"file": path.name, "inputs": [asdict(s) for s in specs]}
    try:
        candidate, reason = stock_form(model)
    except Exception as exc:  # a stock copy that could not be built: the model as it is
        candidate, reason = None, f"the stock copy failed: {_first_line(exc)}"
    if candidate is not None and candidate is not model:
        foreign = foreign_classes(candidate)
        if foreign:
            candidate, reason = None, f"classes outside Keras remain: {', '.join(foreign)}"
    if candidate is not None:
        try:
            difference = _write_checked(candidate, path, specs, arrays, reference)
        except Exception as exc:
            reason = f"the stock copy did not pass its check: {_first_line(exc)}"
        else:
            needs, _ = _needs(_file_modules(path))
            return {**entry, "portable": True, "needs": needs, "max_difference": difference}
    try:
        difference = _write_checked(model, path, specs, arrays, reference)
    except Exception as exc:
        raise RuntimeError(f"{_first_line(exc)} (no portable file either: {reason})") from exc
    needs, imports = _needs(_file_modules(path))
    return {
        **entry,
        "portable": False,
        "needs": needs,
        "imports": imports,
        "reason": reason,
        "max_difference": difference,
    }


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


def save_keras_files(state, run_dir: str | Path) -> dict:
    """RUN_DIR/<name>.keras for every exported model of `state`, and the manifest.

    A model that cannot be written at all is logged and recorded with its error: the
    run's other results (weights, metrics) stand without it."""
    run_dir = Path(run_dir)
    models = {}
    for name in state.exported:
        try:
            models[name] = save_keras_file(state.models[name], run_dir / f"{name}.keras")
        except Exception as exc:
            log.warning("could not write %s.keras: %s", name, _first_line(exc))
            models[name] = {"file": None, "portable": False, "error": _first_line(exc)}
    manifest = {"keras": keras.__version__, "tolerance": TOLERANCE, "models": models}
    write_json_atomic(run_dir / MANIFEST, manifest)
    portable = [n for n, e in models.items() if e.get("portable")]
    log.info(
        "wrote %d .keras file(s), portable (Keras + TensorFlow only): %s",
        sum(1 for e in models.values() if e.get("file")),
        ", ".join(portable) or "none",
    )
    return manifest


# ---- reading -------------------------------------------------------------------------------


def read_manifest(run_dir: str | Path) -> dict:
    path = Path(run_dir) / MANIFEST
    if not path.exists():
        from keras_suite.common.errors import UserError

        raise UserError(
            f"{run_dir} has no {MANIFEST}: the run has not finished, or was trained before "
            "runs wrote .keras files; rerun `ksuite train` to write them"
        )
    return json.loads(path.read_text())


def load_keras_file(run_dir: str | Path, name: str = "model"):
    """A run's `<name>.keras`, after importing the modules a non-portable file needs."""
    manifest = read_manifest(run_dir)
    entry = manifest["models"].get(name)
    if not entry or not entry.get("file"):
        from keras_suite.common.errors import UserError

        raise UserError(
            f"{run_dir} has no .keras file for {name!r}; it has: "
            + ", ".join(n for n, e in manifest["models"].items() if e.get("file"))
        )
    for module in entry.get("imports", []):
        importlib.import_module(module)
    return keras.saving.load_model(Path(run_dir) / entry["file"])


def specs_from_manifest(entry: dict) -> list[InputSpec]:
    return [InputSpec(**spec) for spec in entry["inputs"]]
