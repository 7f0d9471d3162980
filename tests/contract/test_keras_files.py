"""RUN_DIR/<name>.keras for every exported model (keras_suite/common/keras_files.py),
checked where it matters: in a fresh interpreter.

Each app trains a shortened `smoke` run once. The test draws its own inputs from the
specs in keras_files.json, computes the run's outputs with the model `load_run` rebuilds
from the run's weights, saves both as .npy, and a new Python process loads each file with
`keras.saving.load_model` and compares. A portable file is loaded by a process that
imports only numpy, TensorFlow and Keras, and asserts that no keras_suite module was
imported; a non-portable one by a process that first imports the modules its manifest
entry lists. Other architectures (config variants) are checked the same way on untrained
models: serialization does not depend on training.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from keras_suite.common.registry import app_names

pytestmark = pytest.mark.slow

# Shorter than `smoke` (one epoch, fewer examples): only the files are under test here.
QUICK = {
    "classification": ["train.epochs=1", "data.num_train=128"],
    "detection": ["train.epochs=1", "data.train_images=16", "data.test_images=4"],
    "segmentation": ["train.epochs=1", "data.num_train=32"],
    "translation": ["train.epochs=1", "data.num_train=128"],
    "textgen": ["train.epochs=1"],
    "gan": ["train.epochs=1", "data.num_train=64"],
    "vae": ["train.epochs=1", "data.num_train=64"],
    "dqn": [],
}

# Every smoke model has a stock form; a file that stops being portable is a regression.
NOT_PORTABLE_SMOKE: set = set()

# Other architectures, one per way a file is made: (app, overrides, {model: portable}).
VARIANTS = [
    ("textgen", ["model.arch=rnn", "model.cell=lstm"], {"model": True}),  # a stock_model
    ("vae", ["model.kind=vqvae"], {"encoder": True, "codebook": True, "decoder": True}),
    ("dqn", ["agent.dueling=true"], {"model": True}),  # a stock_call without weights
    ("gan", ["model.conditional=true"], {"generator_ema": True}),  # an integer input
    ("translation", ["model.arch=rnn"], {"model": False}),  # registered classes
    ("gan", ["model.arch=stylegan"], {"generator_ema": False}),
]

# Run in a fresh interpreter: argv = [check dir, "portable" | "registered"]. The check dir
# holds keras_files.json (the entries to check, each with its file's absolute path) and
# <name>.input<i>.npy / <name>.expected<j>.npy.
CHECK = r"""
import importlib, json, sys
from pathlib import Path
import numpy as np
import tensorflow as tf
import keras

check_dir, kind = Path(sys.argv[1]), sys.argv[2]
entries = json.loads((check_dir / "keras_files.json").read_text())
tolerance = 1e-5
result = {}
for name, entry in entries.items():
    if "tensorflow_text" in entry["needs"]:
        import tensorflow_text  # noqa: F401  (registers the TF Text ops the model uses)
    for module in entry.get("imports", []):
        importlib.import_module(module)
    model = keras.saving.load_model(entry["path"])
    arrays = [np.load(check_dir / f"{name}.input{i}.npy") for i in range(len(entry["inputs"]))]
    names = [spec["name"] for spec in entry["inputs"]]
    if hasattr(model, "keras_file_call"):
        outputs = model.keras_file_call(dict(zip(names, arrays)))
    elif isinstance(model.input, dict):
        outputs = model(dict(zip(names, arrays)), training=False)
    else:
        outputs = model(keras.tree.pack_sequence_as(model.input, arrays), training=False)
    outputs = [keras.ops.convert_to_numpy(o) for o in keras.tree.flatten(outputs)]
    expected = sorted(check_dir.glob(f"{name}.expected*.npy"), key=lambda p: int(p.stem.split("expected")[1]))
    assert len(outputs) == len(expected), (name, len(outputs), len(expected))
    worst = 0.0
    for path, out in zip(expected, outputs):
        ref = np.load(path)
        assert out.shape == ref.shape, (name, path.name, out.shape, ref.shape)
        if ref.dtype.kind in "iub":
            assert np.array_equal(out, ref), (name, path.name, "integer outputs differ")
            continue
        diff = float(np.max(np.abs(out.astype(np.float64) - ref)))
        scale = max(1.0, float(np.max(np.abs(ref))))
        assert diff <= tolerance * scale, (name, path.name, "differs by", diff)
        worst = max(worst, diff / scale)
    result[name] = {"class": type(model).__name__, "max_difference": worst}
ours = sorted(m for m in sys.modules if m.split(".")[0] == "keras_suite")
if kind == "portable":
    assert not ours, ("a portable file imported", ours)
print(json.dumps({"checked": result, "keras_suite_modules": len(ours)}))
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """app -> a finished shortened smoke run directory, trained on first use."""
    from keras_suite.common.run import train_run

    done = {}

    def get(app_name):
        if app_name not in done:
            run_dir = tmp_path_factory.mktemp("keras-files") / app_name
            train_run(
                app_name,
                "smoke",
                overrides=QUICK.get(app_name, []),
                run_dir=run_dir,
                strategy_name="default",
                evaluate=False,
            )
            done[app_name] = run_dir
        return done[app_name]

    return get


def _prepare(models: dict, manifest: dict, files_dir, check_dir, seed: int) -> dict:
    """Inputs drawn from each entry's specs, the in-memory model's outputs on them, and
    the manifest entries to check, all written to check_dir."""
    from keras_suite.common import keras_files

    check_dir.mkdir(parents=True, exist_ok=True)
    entries = {}
    for name, model in models.items():
        entry = manifest["models"][name]
        assert entry.get("file"), f"{name}: no .keras file ({entry.get('error')})"
        path = files_dir / entry["file"]
        assert path.exists(), path
        specs = keras_files.specs_from_manifest(entry)
        arrays = keras_files.example_inputs(specs, batch=3, seed=seed)
        for i, array in enumerate(arrays):
            np.save(check_dir / f"{name}.input{i}.npy", array)
        for j, out in enumerate(keras_files.call_keras_model(model, specs, arrays)):
            assert np.all(np.isfinite(out)), f"{name}: output {j} is not finite"
            np.save(check_dir / f"{name}.expected{j}.npy", out)
        entries[name] = {**entry, "path": str(path)}
    return entries


def _check_in_fresh_process(entries: dict, check_dir, cwd) -> dict:
    """Run CHECK over the portable and the registered entries; their results."""
    checked = {}
    for kind in ("portable", "registered"):
        chosen = {n: e for n, e in entries.items() if e["portable"] == (kind == "portable")}
        if not chosen:
            continue
        (check_dir / "keras_files.json").write_text(json.dumps(chosen))
        out = subprocess.run(
            [sys.executable, "-c", CHECK, str(check_dir), kind],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=cwd,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        report = json.loads(out.stdout.strip().splitlines()[-1])
        if kind == "portable":
            assert report["keras_suite_modules"] == 0
        checked.update(report["checked"])
    return checked


@pytest.mark.parametrize("app_name", app_names())
def test_every_exported_model_is_a_keras_file_that_loads_elsewhere(app_name, runs, tmp_path):
    from keras_suite.common.keras_files import read_manifest
    from keras_suite.common.run import load_run

    run_dir = runs(app_name)
    manifest = read_manifest(run_dir)
    run = load_run(run_dir, precision="trained")
    exported = {name: run.state.models[name] for name in run.state.exported}
    assert set(manifest["models"]) == set(exported)
    for name, entry in manifest["models"].items():
        expected = (app_name, name) not in NOT_PORTABLE_SMOKE
        assert entry["portable"] is expected, (name, entry.get("reason") or entry.get("error"))
        assert entry["max_difference"] <= manifest["tolerance"]
        assert "keras_suite" not in entry["needs"] if expected else "keras_suite" in entry["needs"]
    entries = _prepare(exported, manifest, run_dir, tmp_path / "check", seed=1234)
    checked = _check_in_fresh_process(entries, tmp_path / "check", tmp_path)
    assert set(checked) == set(exported)
    for name, result in checked.items():
        if manifest["models"][name]["portable"]:
            assert result["class"] == "Functional", result


def test_other_architectures_write_keras_files_too(runs, tmp_path):
    """Untrained models of other architectures, written by save_keras_files directly and
    checked together (one fresh process per kind of file)."""
    from keras_suite.common import config as config_lib
    from keras_suite.common.keras_files import save_keras_files
    from keras_suite.common.registry import get_app

    entries = {}
    for i, (app_name, overrides, portable) in enumerate(VARIANTS):
        info = json.loads((runs(app_name) / "info.json").read_text())
        app = get_app(app_name)
        cfg = config_lib.resolve(app.presets, "smoke", None, overrides)
        state = app.build_state(cfg=cfg, info=info)
        files_dir = tmp_path / f"variant{i}"
        files_dir.mkdir()
        manifest = save_keras_files(state, files_dir)
        why = {n: e.get("reason") or e.get("error") for n, e in manifest["models"].items()}
        got = {n: e["portable"] for n, e in manifest["models"].items()}
        assert got == portable, (app_name, overrides, why)
        for entry in manifest["models"].values():
            if not entry["portable"]:
                assert entry["reason"] and entry["imports"], entry
        # unique names across variants: "v<i>-<model>"
        models = {f"v{i}-{name}": state.models[name] for name in state.exported}
        manifest["models"] = {f"v{i}-{n}": e for n, e in manifest["models"].items()}
        entries.update(_prepare(models, manifest, files_dir, tmp_path / "check", seed=99))
    checked = _check_in_fresh_process(entries, tmp_path / "check", tmp_path)
    assert set(checked) == set(entries)


def test_the_fresh_process_check_fails_when_an_output_differs(runs, tmp_path):
    """The comparison can fail: one output value moved by 1e-3 is caught."""
    from keras_suite.common.keras_files import read_manifest
    from keras_suite.common.run import load_run

    run_dir = runs("classification")
    run = load_run(run_dir, precision="trained")
    check_dir = tmp_path / "check"
    entries = _prepare({"model": run.state.model}, read_manifest(run_dir), run_dir, check_dir, 7)
    expected = np.load(check_dir / "model.expected0.npy")
    expected[0, 0] += 1e-3 * max(1.0, float(np.abs(expected).max()))
    np.save(check_dir / "model.expected0.npy", expected)
    with pytest.raises(AssertionError, match="differs by"):
        _check_in_fresh_process(entries, check_dir, tmp_path)


def test_a_stock_copy_that_computes_something_else_is_not_written_as_portable(tmp_path):
    """save_keras_file checks the copy it writes: a stock replacement that is wrong (here
    x * 3 for x * 2) is rejected, and the model is written as itself, not portable."""
    import keras

    from keras_suite.common.keras_files import save_keras_file

    @keras.saving.register_keras_serializable(package="tests.keras_files")
    class Doubling(keras.layers.Layer):
        def call(self, x):
            return x * 2.0

        def stock_layer(self):
            return keras.layers.Rescaling(3.0, name=self.name)

    images = keras.Input((4,), name="x")
    model = keras.Model(images, Doubling(name="double")(keras.layers.Dense(3)(images)))
    entry = save_keras_file(model, tmp_path / "model.keras")
    assert entry["portable"] is False
    assert "did not pass its check" in entry["reason"], entry["reason"]
    assert entry["imports"] == [Doubling.__module__]
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    x = np.arange(8, dtype="float32").reshape(2, 4)
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]  # no temporary left

    # the right replacement passes, and the file then holds stock classes only
    Doubling.stock_layer = lambda self: keras.layers.Rescaling(2.0, name=self.name)
    entry = save_keras_file(model, tmp_path / "model.keras")
    assert entry["portable"] is True and entry["needs"] == ["keras", "tensorflow"], entry
    assert type(keras.saving.load_model(tmp_path / "model.keras").get_layer("double")) is (
        keras.layers.Rescaling
    )


@pytest.mark.parametrize(
    "app_name,overrides", [("dqn", ["agent.dueling=true"]), ("gan", []), ("classification", [])]
)
def test_stock_copies_compute_in_the_trained_mixed_precision(app_name, overrides, runs, tmp_path):
    """Under mixed_bfloat16 a stock copy must round where the model rounds (the model's
    inputs cast to bfloat16, /255 in bfloat16), or its check rejects it."""
    import keras

    from keras_suite.common import config as config_lib
    from keras_suite.common.keras_files import save_keras_files
    from keras_suite.common.registry import get_app

    info = json.loads((runs(app_name) / "info.json").read_text())
    app = get_app(app_name)
    cfg = config_lib.resolve(app.presets, "smoke", None, overrides)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        state = app.build_state(cfg=cfg, info=info)
        manifest = save_keras_files(state, tmp_path)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    for name, entry in manifest["models"].items():
        assert entry["portable"], (name, entry.get("reason"))
        assert entry["max_difference"] <= manifest["tolerance"]
