"""The command line: help on every command, and one-line errors for bad input."""

import pytest

from keras_suite.cli import build_parser, main


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "no error printed"
    last = err[-1]
    assert last.startswith("error: ") and "Traceback" not in "\n".join(err)
    return last


def test_help_for_every_command(capsys):
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert {"train", "evaluate", "demo", "apps", "bench"} <= set(commands)
    for name, sub in commands.items():
        text = sub.format_help()
        for action in sub._actions:
            if action.help is None and action.option_strings:
                pytest.fail(f"ksuite {name} {action.option_strings} has no help text")
        assert "usage: ksuite" in text


def test_apps_lists_presets(capsys):
    assert main(["apps"]) == 0
    assert "classification" in capsys.readouterr().out


def test_unknown_app(capsys, tmp_path):
    assert main(["train", "clasification", "--run-dir", str(tmp_path / "r")]) == 2
    line = _error_line(capsys)
    assert "unknown app 'clasification'" in line and "classification" in line


def test_unknown_config_key(capsys, tmp_path):
    assert (
        main(
            [
                "train",
                "classification",
                "--preset",
                "smoke",
                "--set",
                "train.epochz=2",
                "--run-dir",
                str(tmp_path / "r"),
            ]
        )
        == 2
    )
    assert "Did you mean 'epochs'" in _error_line(capsys)


def test_missing_data_directory(capsys, tmp_path):
    assert (
        main(
            [
                "train",
                "classification",
                "--preset",
                "smoke",
                "--set",
                "data.source=folder",
                "--set",
                f"data.path={tmp_path / 'nowhere'}",
                "--run-dir",
                str(tmp_path / "r"),
            ]
        )
        == 2
    )
    line = _error_line(capsys)
    assert "does not exist" in line and "data.path" in line


def test_empty_data_directory(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    assert (
        main(
            [
                "train",
                "classification",
                "--preset",
                "smoke",
                "--set",
                "data.source=folder",
                "--set",
                f"data.path={tmp_path / 'empty'}",
                "--run-dir",
                str(tmp_path / "r"),
            ]
        )
        == 2
    )
    assert "no class sub-folders" in _error_line(capsys)


def test_corrupt_image_only(capsys, tmp_path):
    (tmp_path / "data" / "cat").mkdir(parents=True)
    (tmp_path / "data" / "cat" / "x.jpg").write_bytes(b"\xff\xd8 truncated")
    assert (
        main(
            [
                "train",
                "classification",
                "--preset",
                "smoke",
                "--set",
                "data.source=folder",
                "--set",
                f"data.path={tmp_path / 'data'}",
                "--run-dir",
                str(tmp_path / "r"),
            ]
        )
        == 2
    )
    line = _error_line(capsys)
    assert "none of the 1 images" in line and "could be decoded" in line and "x.jpg" in line


def test_evaluate_on_a_folder_that_is_not_a_run(capsys, tmp_path):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "not a Keras Suite run directory" in _error_line(capsys)


def test_rerun_with_a_different_config_is_refused(capsys, smoke_classification_run):
    assert (
        main(
            [
                "train",
                "classification",
                "--preset",
                "smoke",
                "--set",
                "train.epochs=9",
                "--run-dir",
                str(smoke_classification_run),
            ]
        )
        == 2
    )
    assert "different config" in _error_line(capsys)


def test_a_run_made_before_new_config_fields_still_resumes(tmp_path):
    """A field the suite gained after a run was made was never chosen by that run: the
    config check fills it in instead of refusing the resume; a changed field still refuses."""
    import yaml

    from keras_suite.common import config as config_lib
    from keras_suite.common.errors import UserError
    from keras_suite.common.registry import get_app
    from keras_suite.common.run import _check_run_dir

    cfg = get_app("classification").presets["smoke"]()
    saved = config_lib.to_dict(cfg)
    del saved["train"]["seed"]  # as if train.seed did not exist when the run was made
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    _check_run_dir(tmp_path, cfg, overwrite=False)  # no error
    saved["train"]["epochs"] = cfg.train.epochs + 1
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    with pytest.raises(UserError, match="train.epochs"):
        _check_run_dir(tmp_path, cfg, overwrite=False)
