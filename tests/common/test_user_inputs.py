"""Users' own data and inputs (issue 26): the data the user named is used or refused in one
line, run directories stand alone (absolute data path, --data-path for moved data), a
resume keeps no killed attempt's records, bad values and inputs are one line, quantized
models far off the float one are flagged, and the smaller things users trip over."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_suite.cli import main
from keras_suite.common import config as config_lib
from keras_suite.common.errors import UserError
from tests.fake_runs import PNG, make_fake_run, presets
from tests.helpers import ROOT, subprocess_env


def ksuite(capsys, *argv):
    """`ksuite ARGV` in this process: (exit status, stdout, stderr)."""
    try:
        rc = main(list(argv))
    except SystemExit as exc:  # argparse's own exit (usage errors before issue 26)
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def write_shapes(folder: Path, per_class: int = 20, size: int = 32) -> Path:
    """A class-per-folder image tree: bright squares and dark discs on noise."""
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    for cls in ("disc", "square"):
        (folder / cls).mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
            c, r = rng.integers(10, size - 10, 2), rng.integers(5, 9)
            if cls == "disc":
                img[(yy - c[0]) ** 2 + (xx - c[1]) ** 2 < r * r] = (40, 40, 220)
            else:
                img[c[0] - r : c[0] + r, c[1] - r : c[1] + r] = (230, 230, 40)
            Image.fromarray(img).save(folder / cls / f"{i}.png")
    return folder


# ---- 1: data.path without data.source ---------------------------------------------------


@pytest.mark.parametrize(
    "app,source",
    [("gan", "folder"), ("vae", "folder"), ("textgen", "files"), ("translation", "tsv")],
)
def test_data_path_alone_reads_the_apps_one_kind_of_user_data(app, source, tmp_path, caplog):
    caplog.set_level("INFO", logger="ksuite")
    cfg = config_lib.resolve(presets(app), "smoke", overrides=[f"data.path={tmp_path}"])
    assert (cfg.data.source, cfg.data.path) == (source, str(tmp_path))
    assert f"data.source={source}" in caplog.text  # the choice is logged


def test_data_path_alone_follows_the_folder_layout_or_is_refused(tmp_path):
    (tmp_path / "classes" / "cat").mkdir(parents=True)
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "train-00000.tfrecord").write_bytes(b"")
    (tmp_path / "pairs" / "images").mkdir(parents=True)
    (tmp_path / "voc" / "JPEGImages").mkdir(parents=True)
    (tmp_path / "voc" / "SegmentationClass").mkdir()
    (tmp_path / "empty").mkdir()

    def source(app, folder):
        cfg = config_lib.resolve(presets(app), "smoke", overrides=[f"data.path={folder}"])
        return cfg.data.source

    assert source("classification", tmp_path / "classes") == "folder"
    assert source("classification", tmp_path / "records") == "tfrecord"
    assert source("segmentation", tmp_path / "pairs") == "pairs"
    assert source("segmentation", tmp_path / "voc") == "voc"
    for app, choices in (
        ("classification", ("folder", "tfrecord")),
        ("segmentation", ("pairs", "voc")),
    ):
        with pytest.raises(UserError) as refused:
            source(app, tmp_path / "empty")
        assert all(f"data.source={c}" in str(refused.value) for c in choices)


def test_a_built_in_source_named_together_with_a_path_is_refused(tmp_path):
    with pytest.raises(UserError, match="data.source=folder"):
        config_lib.resolve(
            presets("vae"), "smoke", overrides=["data.source=shapes", f"data.path={tmp_path}"]
        )


def test_data_check_with_a_path_alone_reads_that_path(capsys, tmp_path):
    """Before issue 26 this trained-data check ran on the built-in shapes and exited 0."""
    rc, _, err = ksuite(
        capsys,
        "--log-level",
        "WARNING",
        "data",
        "check",
        "vae",
        "--preset",
        "smoke",
        "--set",
        f"data.path={tmp_path / 'nope'}",
    )
    assert rc == 2
    assert "nope" in one_error_line(err)


def test_the_readme_tilde_example_works_as_typed(capsys, tmp_path, monkeypatch):
    """README: `--set data.source=folder --set data.path=~/photos` (a shell leaves that ~)."""
    readme = (ROOT / "README.md").read_text()
    assert "--set data.source=folder --set data.path=~/photos" in readme
    monkeypatch.setenv("HOME", str(tmp_path))
    write_shapes(tmp_path / "photos", per_class=12)
    rc, out, err = ksuite(
        capsys,
        "data",
        "check",
        "classification",
        "--preset",
        "smoke",
        "--set",
        "data.source=folder",
        "--set",
        "data.path=~/photos",
        "--set",
        "train.batch_size=8",
    )
    assert rc == 0, err
    assert "classes (2): disc, square" in out


# ---- 5: run directories stand alone ------------------------------------------------------


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """A classification run trained from a RELATIVE data.path: (work dir, run dir)."""
    work = tmp_path_factory.mktemp("work")
    write_shapes(work / "photos")
    before = os.getcwd()
    os.chdir(work)
    try:
        rc = main(
            [
                "--log-level",
                "WARNING",
                "train",
                "classification",
                "--preset",
                "smoke",
                "--strategy",
                "default",
                "--run-dir",
                "run",
                "--set",
                "data.source=folder",
                "--set",
                "data.path=photos",
                "--set",
                "train.epochs=1",
                "--set",
                "train.batch_size=8",
            ]
        )
    finally:
        os.chdir(before)
    assert rc == 0
    return work, work / "run"


def test_config_yaml_keeps_the_data_path_absolute(folder_run):
    work, run = folder_run
    saved = config_lib.load_yaml(run / "config.yaml")
    assert saved["data"]["path"] == str(work / "photos")


def test_a_run_evaluates_from_another_folder_and_from_moved_data(
    folder_run, capsys, tmp_path, monkeypatch
):
    work, run = folder_run
    monkeypatch.chdir(tmp_path)  # not the folder the run was trained from
    rc, _, err = ksuite(capsys, "evaluate", str(run))
    assert rc == 0, err
    (work / "photos").rename(work / "photos-moved")
    try:
        rc, _, err = ksuite(capsys, "evaluate", str(run))
        assert rc == 2
        line = one_error_line(err)
        assert "--data-path" in line and str(work / "photos") in line
        for flags in (
            ["--data-path", str(work / "photos-moved")],
            ["--set", f"data.path={work / 'photos-moved'}"],
        ):
            rc, out, err = ksuite(capsys, "evaluate", str(run), *flags)
            assert rc == 0, err
            assert "top1" in out
        rc, _, err = ksuite(capsys, "evaluate", str(run), "--set", "train.epochs=9")
        assert rc == 2 and "data.path" in one_error_line(err)
        # predict never reads the data: it works with the data gone, from anywhere, and
        # each call gets its own folder
        (tmp_path / "in.png").write_bytes(PNG)
        folders = []
        for _ in range(2):
            rc, out, err = ksuite(capsys, "predict", str(run), "in.png")
            assert rc == 0, err
            folders.append(Path(out.split("outputs: ")[1].split()[0]).parent)
        assert folders[0] != folders[1]
        assert all((f / "predictions.json").is_file() for f in folders)
        assert folders[0].parent.resolve() == (tmp_path / "predictions").resolve()
    finally:
        (work / "photos-moved").rename(work / "photos")


def test_export_reads_the_data_only_when_the_app_needs_it(folder_run, tmp_path, monkeypatch):
    from keras_suite.common.registry import get_app
    from keras_suite.export.writer import export_run

    work, run = folder_run
    (work / "photos").rename(work / "photos-moved")
    try:
        with pytest.raises(UserError, match="--data-path"):  # warm-up images come from data
            export_run(run, tmp_path / "models")
        version = export_run(run, tmp_path / "models", data_path=str(work / "photos-moved"))
        assert (version / "saved_model.pb").is_file()
        app = get_app("classification")
        blank = np.zeros([1, 32, 32, 3], np.float32)
        monkeypatch.setattr(
            type(app),
            "sample_requests",
            lambda self, *, data, info, cfg: {"serving_default": [{"images": blank}]},
        )
        version = export_run(run, tmp_path / "models")  # needs no data: reads none
        assert (version / "saved_model.pb").is_file()
    finally:
        (work / "photos-moved").rename(work / "photos")


def test_resume_allows_moved_data_and_names_the_keys_that_changed(folder_run, tmp_path):
    """Item 5 (data.path may differ on resume) and item 11 (the refusal names the keys)."""
    from keras_suite.common.run import _check_run_dir

    _, run = folder_run
    cfg = config_lib.load_saved(presets("classification")["smoke"](), run / "config.yaml")
    moved = config_lib.with_data_path(cfg, str(tmp_path / "elsewhere"))
    _check_run_dir(run, moved, overwrite=False, app_name="classification")  # allowed
    changed = config_lib.merge(cfg, {"train": {"epochs": 7}, "model": {"dropout": 0.5}})
    with pytest.raises(UserError) as refused:
        _check_run_dir(run, changed, overwrite=False, app_name="classification")
    assert "train.epochs: 1 -> 7" in str(refused.value)
    assert "model.dropout: 0.0 -> 0.5" in str(refused.value)
    with pytest.raises(UserError, match="classification run, not a gan run"):
        _check_run_dir(run, cfg, overwrite=False, app_name="gan")


# ---- 6: a run killed before its first checkpoint -------------------------------------------


def test_a_resume_before_the_first_checkpoint_keeps_no_records_of_the_killed_attempt(tmp_path):
    from dataclasses import dataclass, field

    import keras

    from keras_suite import common
    from keras_suite.common.app import App, Datasets
    from keras_suite.common.config import TrainConfig
    from keras_suite.common.runlog import RunLogger, read_jsonl
    from keras_suite.common.training import (
        TrainContext,
        Trainer,
        TrainState,
        apply_gradients,
        make_optimizer,
        replica_mean,
    )

    tf = common.quiet_import_tensorflow()

    class Killed(Exception):
        pass

    class Line(App):
        def build_state(self, *, cfg, info):
            model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
            return TrainState(
                models={"model": model}, optimizers={"model": make_optimizer(cfg.train, 0)}
            )

        def train_step(self, state, batch, step):
            x, y = batch
            with tf.GradientTape() as tape:
                loss = replica_mean(tf.square(state.model(x)[:, 0] - y), step.global_batch_size)
            apply_gradients(tape, loss, state.model.trainable_variables, state.optimizers["model"])
            return {"loss": loss}

    @dataclass
    class Cfg:
        train: TrainConfig = field(
            default_factory=lambda: TrainConfig(
                epochs=1, batch_size=4, log_every_steps=1, checkpoint_every_steps=0
            )
        )

    x = np.random.default_rng(0).normal(size=(16, 2)).astype(np.float32)
    ds = tf.data.Dataset.from_tensor_slices((x, x.sum(1)))
    data = Datasets(train_epoch=lambda e: ds.batch(4, drop_remainder=True), steps_per_epoch=4)

    def attempt(kill_at=None):
        app, cfg = Line(), Cfg()
        state = app.build_state(cfg=cfg, info={})
        state.build_optimizers()
        logger = RunLogger(tmp_path)
        ctx = TrainContext(
            app=app,
            cfg=cfg,
            run_dir=tmp_path,
            strategy=tf.distribute.get_strategy(),
            data=data,
            state=state,
            logger=logger,
        )
        trainer = Trainer(app, ctx)
        if kill_at:
            compiled = trainer._compiled_train

            def counting():
                fn, calls = compiled(), [0]

                def step(*args):
                    calls[0] += 1
                    if calls[0] == kill_at:
                        raise Killed
                    return fn(*args)

                return step

            trainer._compiled_train = counting
        try:
            trainer.fit()
        except Killed:
            pass
        finally:
            logger.close()
        return read_jsonl(tmp_path / "logs" / "metrics.jsonl")

    killed = attempt(kill_at=4)  # three steps logged, the epoch's checkpoint never written
    assert [r["step"] for r in killed if r.get("kind") == "step"] == [1, 2, 3]
    resumed = attempt()
    steps = [r["step"] for r in resumed if r.get("kind") == "step"]
    assert steps == [1, 2, 3, 4], steps


# ---- 7: image sizes ---------------------------------------------------------------------


@pytest.mark.parametrize("app", ["classification", "detection", "gan", "segmentation", "vae"])
@pytest.mark.parametrize("size", [0, -32])
def test_a_non_positive_image_size_is_one_line(app, size):
    with pytest.raises(UserError, match=f"data.image_size={size}"):
        config_lib.resolve(presets(app), "smoke", overrides=[f"data.image_size={size}"])


# ---- 8: predict and the app verbs on wrong inputs ------------------------------------------


@pytest.fixture(scope="module")
def fake_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fake-runs")
    return {
        app: make_fake_run(root / app, app)
        for app in ("classification", "dqn", "gan", "translation", "vae", "textgen")
    }


@pytest.mark.parametrize(
    "app,inputs,says",
    [
        ("translation", ["texts/missing.txt"], "does not exist"),
        ("translation", ["missing.txt"], "does not exist"),
        ("gan", ["@IMAGE"], "not a text file of seeds"),
        ("gan", [str(2**63)], "64 bits"),
        ("gan", ["0", "truncation=high"], "truncation"),
        ("vae", ["missing.png"], "does not exist"),
        ("vae", ["@FOLDER"], "is a folder"),
        ("dqn", ["@EMPTY"], "not a .npy observation file"),
    ],
)
def test_predict_refuses_wrong_inputs_in_one_line(
    fake_runs, capsys, tmp_path, monkeypatch, app, inputs, says
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "image.png").write_bytes(PNG)
    (tmp_path / "empty.npy").write_bytes(b"")
    (tmp_path / "folder").mkdir()
    where = {"@IMAGE": "image.png", "@FOLDER": "folder", "@EMPTY": "empty.npy"}
    rc, _, err = ksuite(capsys, "predict", str(fake_runs[app]), *[where.get(i, i) for i in inputs])
    assert rc == 2
    assert says in one_error_line(err)
    assert not (tmp_path / "predictions").exists()


@pytest.mark.parametrize(
    "argv,says",
    [
        (["sample", "gan", "@classification"], "is a classification run"),
        (["sample", "@gan", "--n", "abc"], "invalid int value"),
        (["sample", "@gan", "--seed", str(2**63)], "--seed"),
        (["sample", "@vae", "--seed", str(2**63)], "--seed"),
        (["generate", "@textgen", "--seed", "-1"], "--seed"),
        (["play", "@dqn", "--fps", "0"], "--fps"),
    ],
)
def test_app_verbs_refuse_wrong_inputs_in_one_line(fake_runs, capsys, argv, says):
    argv = [str(fake_runs[a[1:]]) if a.startswith("@") else a for a in argv]
    rc, _, err = ksuite(capsys, *argv)
    assert rc == 2
    assert says in one_error_line(err)


# ---- 10: TFLite parity ------------------------------------------------------------------


def _parity_report(bleu_by_mode: dict) -> dict:
    return {
        "app": "translation",
        "run_dir": "runs/translation-smoke",
        "targets": [
            {
                "name": "decoder_step",
                "signature": "serving_default",
                "keras": {"metrics": {"bleu": 100.0, "chrf": 100.0}},
                "modes": [
                    {
                        "mode": mode,
                        "io_type": "float32",
                        "size_bytes": 1024,
                        "size_ratio": 1.0,
                        "metrics": {"bleu": bleu, "chrf": bleu},
                        "max_abs_diff": 0.1,
                        "mean_abs_diff": 0.01,
                        "latency": {},
                    }
                    for mode, bleu in bleu_by_mode.items()
                ],
            }
        ],
    }


def test_a_quantized_mode_far_off_the_float_one_is_flagged_in_the_report(tmp_path):
    from keras_suite.common.registry import get_app
    from keras_suite.tflite import report as report_lib

    report = _parity_report({"float32": 100.0, "float16": 98.0, "int8": 6.2})
    flags = report_lib.check_parity(report, get_app("translation").parity_tolerance)
    assert [(f["mode"], f["metric"]) for f in flags] == [("int8", "bleu")]
    report_lib.write(report, tmp_path)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert [f["mode"] for f in saved["parity_warnings"]] == ["int8"]
    modes = saved["targets"][0]["modes"]
    assert [m["parity"]["flagged"] for m in modes] == [False, False, True]
    assert (
        "WARNING: decoder_step int8: bleu 6.2000 vs Keras 100.0000"
        in (tmp_path / "report.md").read_text()
    )


def test_convert_prints_a_warning_per_flagged_mode_and_fails_only_when_strict(
    fake_runs, capsys, monkeypatch
):
    from keras_suite.common.registry import get_app
    from keras_suite.tflite import pipeline
    from keras_suite.tflite import report as report_lib

    report = _parity_report({"float32": 100.0, "dynamic": 40.0, "int8": 6.2})
    report_lib.check_parity(report, get_app("translation").parity_tolerance)
    monkeypatch.setattr(pipeline, "convert_run", lambda *a, **k: {"files": [], "report": report})
    rc, _, err = ksuite(capsys, "convert", str(fake_runs["translation"]))
    warnings = [line for line in err.splitlines() if line.startswith("WARNING: ")]
    assert rc == 0 and len(warnings) == 2
    assert "int8" in warnings[1] and "bleu 6.2" in warnings[1]
    rc, _, _ = ksuite(capsys, "convert", str(fake_runs["translation"]), "--strict")
    assert rc == 1


# ---- 11: the smaller things ---------------------------------------------------------------


def test_training_curves_wrap_into_a_grid(tmp_path):
    from PIL import Image

    from keras_suite.common.plots import plot_training_curves

    names = [f"loss_{i}" for i in range(8)]  # a GAN logs about this many
    records = [{"kind": "epoch", "epoch": e, **{n: 1.0 / e for n in names}} for e in (1, 2, 3)]
    path = plot_training_curves(records, tmp_path / "curves.png")
    width, height = Image.open(path).size
    assert width <= 4 * 430 and height >= 2 * 300, (width, height)


HARMLESS = (
    b"E0000 00:00:1718000000.000000   4242 mkl_util.h:100] oneDNN supports DT_UINT8 only on "
    b"platforms with AVX-512. Falling back to the default Eigen-based implementation if present.\n"
)
REAL = b"E0000 00:00:1718000000.000000   4242 some_op.cc:1] a real error a user must see\n"


def test_the_command_line_hides_known_harmless_tensorflow_lines_only():
    """`ksuite` (main() without arguments) filters fd 2; a real error still shows."""
    script = (
        "import os, sys\n"
        "import keras_suite.cli as cli\n"
        "def fake(args):\n"
        f"    os.write(2, {HARMLESS!r})\n"
        f"    os.write(2, {REAL!r})\n"
        "    print('python stderr line', file=sys.stderr)\n"
        "    return 0\n"
        "cli._cmd_apps = fake\n"
        "sys.argv = ['ksuite', 'apps']\n"
        "sys.exit(cli.main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        env=subprocess_env(),
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert b"oneDNN supports" not in done.stderr
    assert REAL in done.stderr and b"python stderr line" in done.stderr
