"""The bad-input matrix: every user-facing verb of every app, given the mistakes users make.

For each app: `train` and `data check` with a bad data path (missing, an empty folder, a
zero-byte file, a folder of zero-byte files, the wrong kind of file), a wrong option type,
and `train` into another app's run; `predict` with a missing file, a folder, a zero-byte
file, the wrong kind of file, another app's run as an input, and a wrong option type; and
each verb of apps/*/commands.py with a missing or empty run directory, another app's run,
an unknown flag, a non-numeric value for each numeric option and a seed past int64.

Each case must exit non-zero with ONE line on stderr (`error: ...`, no traceback) and
write nothing: the fake run directories, the data and the working folder are the same
before and after. Nothing here trains: tests/fake_runs.py makes runs without weights, so
a verb that reaches for the weights before checking its inputs fails the case.
"""

from __future__ import annotations

import argparse
import re

import pytest

from keras_suite.cli import main
from keras_suite.common import config as config_lib
from keras_suite.common.commands import app_commands
from keras_suite.common.registry import app_names
from tests.fake_runs import make_bad_inputs, make_fake_run, presets, snapshot

APPS = app_names()
NO_WEIGHTS = "has no final weights"  # a fake run's answer when a check came too late

# Apps whose predict takes free text: a file name is a valid prompt there.
TAKES_ANY_STRING = {"textgen"}


def _other_app(app: str) -> str:
    return APPS[(APPS.index(app) + 1) % len(APPS)]


def _data_overrides(app: str, path: str) -> list[str] | None:
    """--set flags naming `path` as the app's user data (None: the app reads no files)."""
    cfg = presets(app)["smoke"]()
    key = config_lib.data_path_key(cfg)
    if key is None:
        return None
    if key == "source":  # detection: data.source is the data.yaml
        return [f"data.source={path}"]
    return [f"data.source={cfg.data.path_sources[0]}", f"data.path={path}"]


def _is_image_app(app: str) -> bool:
    return hasattr(getattr(presets(app)["smoke"](), "data", None), "image_size")


def _cases() -> list[tuple[str, list[str]]]:
    """(case id, argv template). Templates name things by @KEY (alone or inside an
    argument, as in data.path=@missing): @RUN:<app> is a fake run,
    @NEW_RUN a run folder that must not appear, others are make_bad_inputs() paths."""
    cases = []
    for app in APPS:
        smoke = ["--preset", "smoke"]
        bad_data = {
            "missing": "@missing",
            "empty-folder": "@empty_dir",
            "zero-byte-file": "@zero_yaml" if app == "detection" else "@zero_txt",
            "zero-byte-files": "@zero_tree",
            "wrong-kind": "@image" if not _is_image_app(app) or app == "detection" else "@text_dir",
        }
        for kind, path in bad_data.items():
            overrides = _data_overrides(app, path)
            if overrides is None:
                continue
            flags = [x for o in overrides for x in ("--set", o)]
            cases.append(
                (f"train-{app}-{kind}", ["train", app, *smoke, *flags, "--run-dir", "@NEW_RUN"])
            )
            cases.append((f"data-check-{app}-{kind}", ["data", "check", app, *smoke, *flags]))
        cases.append(
            (
                f"train-{app}-option-type",
                ["train", app, *smoke, "--set", "train.epochs=abc", "--run-dir", "@NEW_RUN"],
            )
        )
        cases.append(
            (
                f"train-{app}-other-apps-run",
                ["train", app, *smoke, "--run-dir", f"@RUN:{_other_app(app)}"],
            )
        )
        cases.append(
            (
                f"data-check-{app}-option-type",
                ["data", "check", app, *smoke, "--set", "train.batch_size=abc"],
            )
        )

        run = f"@RUN:{app}"
        inputs = {
            "missing": "@missing",
            "folder": "@empty_dir",
            "zero-byte-file": "@zero_file_for_predict",
            "wrong-kind": "@text" if _is_image_app(app) else "@image_as_txt",
            "other-apps-run": f"@RUN:{_other_app(app)}",
        }
        if app not in TAKES_ANY_STRING:
            for kind, value in inputs.items():
                cases.append((f"predict-{app}-{kind}", ["predict", run, value]))
        else:
            cases.append((f"predict-{app}-no-input", ["predict", run]))
        cases.append((f"predict-{app}-option-type", ["predict", run, "--timeout", "abc"]))
        cases.append((f"predict-{app}-missing-run", ["predict", "@missing_run", "x"]))
    for app, commands in app_commands().items():
        for cmd in commands:
            cases += _verb_cases(app, cmd)
    return cases


def _numeric_options(cmd) -> list[str]:
    parser = argparse.ArgumentParser()
    cmd.add_arguments(parser)
    return [
        a.option_strings[-1] for a in parser._actions if a.option_strings and a.type in (int, float)
    ]


def _verb_cases(app: str, cmd) -> list[tuple[str, list[str]]]:
    name = f"{cmd.name}-{app}"
    numeric = _numeric_options(cmd)
    if not cmd.per_app:  # a top-level checker of a dataset path: segmentation-check, ...
        cases = [
            (f"{name}-missing", [cmd.name, "@missing"]),
            (f"{name}-empty-folder", [cmd.name, "@empty_dir"]),
            (f"{name}-zero-byte-file", [cmd.name, "@zero_yaml"]),
            (f"{name}-wrong-kind", [cmd.name, "@image"]),
            (f"{name}-unknown-flag", [cmd.name, "@empty_dir", "--no-such-flag"]),
        ]
        cases += [(f"{name}-{opt}-abc", [cmd.name, "@empty_dir", opt, "abc"]) for opt in numeric]
        return cases
    run = f"@RUN:{app}"
    cases = [
        (f"{name}-missing-run", [cmd.name, app, "@missing_run"]),
        (f"{name}-empty-folder", [cmd.name, app, "@empty_dir"]),
        (f"{name}-other-apps-run", [cmd.name, app, f"@RUN:{_other_app(app)}"]),
        (f"{name}-unknown-flag", [cmd.name, run, "--no-such-flag"]),
    ]
    cases += [(f"{name}-{opt}-abc", [cmd.name, run, opt, "abc"]) for opt in numeric]
    if "--seed" in numeric:
        cases.append((f"{name}-seed-past-int64", [cmd.name, run, "--seed", str(2**63)]))
    if not any(
        c.name == cmd.name for other in APPS if other != app for c in app_commands().get(other, [])
    ):
        # a run of an app without this verb, named as RUN_DIR alone
        cases.append((f"{name}-run-without-the-verb", [cmd.name, f"@RUN:{_other_app(app)}"]))
    return cases


CASES = _cases()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-inputs")
    paths = {key: str(p) for key, p in make_bad_inputs(root / "inputs").items()}
    tree = root / "inputs" / "zero-tree"  # a dataset folder whose every file is empty
    for sub in ("class_a", "images", "masks", "train"):
        (tree / sub).mkdir(parents=True)
        (tree / sub / "zero.png").write_bytes(b"")
    for name in ("zero.txt", "zero.tsv", "data.yaml"):
        (tree / name).write_bytes(b"")
    paths["zero_tree"] = str(tree)
    paths["zero_file_for_predict"] = paths["zero_png"]
    paths["missing_run"] = str(root / "no-such-run")
    paths["NEW_RUN"] = str(root / "new-run")
    for app in APPS:
        paths[f"RUN:{app}"] = str(make_fake_run(root / "runs" / app, app))
    return root, paths


def test_the_matrix_covers_every_app_and_verb():
    ids = {case_id for case_id, _ in CASES}
    for app in APPS:
        assert any(i.startswith(f"predict-{app}-") for i in ids), app
        assert any(i.startswith(f"train-{app}-") for i in ids), app
    for app, commands in app_commands().items():
        for cmd in commands:
            assert any(i.startswith(f"{cmd.name}-{app}-") for i in ids), (app, cmd.name)


@pytest.mark.parametrize("argv", [argv for _, argv in CASES], ids=[i for i, _ in CASES])
def test_a_wrong_input_is_one_line_and_writes_nothing(world, argv, capsys, tmp_path, monkeypatch):
    root, paths = world
    monkeypatch.chdir(tmp_path)  # predict's ./predictions/ and any stray file would land here
    argv = [re.sub(r"@([\w:]+)", lambda m: paths[m.group(1)], a) for a in argv]
    before = snapshot(root, tmp_path)
    try:
        rc = main(["--log-level", "ERROR", *argv])
    except SystemExit as exc:  # argparse exiting on its own: not one line
        rc = exc.code
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc not in (0, None), f"exit {rc}\n{out}\n{err}"
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert NO_WEIGHTS not in lines[0], "the input check came after loading the model"
    assert snapshot(root, tmp_path) == before, "the refused command wrote files"
