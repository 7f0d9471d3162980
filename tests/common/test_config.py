"""Config presets, YAML files and --set overrides."""

import dataclasses

import pytest

from keras_suite.apps.classification.config import PRESETS
from keras_suite.common import config
from keras_suite.common.errors import UserError


def test_presets_differ_and_resolve():
    smoke = config.resolve(PRESETS, "smoke")
    default = config.resolve(PRESETS, "default")
    assert smoke.data.num_train < default.data.num_train
    assert smoke.train.epochs < default.train.epochs


def test_override_types_are_coerced():
    cfg = config.resolve(
        PRESETS,
        "smoke",
        overrides=[
            "train.epochs=5",
            "train.learning_rate=1e-2",
            "data.augment=true",
            "model.blocks=3,2",
        ],
    )
    assert cfg.train.epochs == 5 and isinstance(cfg.train.epochs, int)
    assert cfg.train.learning_rate == pytest.approx(0.01)
    assert cfg.data.augment is True
    assert cfg.model.blocks == (3, 2)


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 7\n  batch_size: 16\nmodel:\n  arch: mobilenetv2\n")
    cfg = config.resolve(PRESETS, "smoke", str(path), ["train.epochs=9"])
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.model.arch) == (9, 16, "mobilenetv2")


def test_unknown_key_names_valid_keys():
    with pytest.raises(UserError) as err:
        config.resolve(PRESETS, "smoke", overrides=["train.epoch=3"])
    message = str(err.value)
    assert "'epoch'" in message and "Did you mean 'epochs'" in message and "batch_size" in message


def test_unknown_section_and_bad_value():
    with pytest.raises(UserError, match="unknown config key 'trian'"):
        config.resolve(PRESETS, "smoke", overrides=["trian.epochs=3"])
    with pytest.raises(UserError, match="expects int"):
        config.resolve(PRESETS, "smoke", overrides=["train.epochs=many"])
    with pytest.raises(UserError, match="precision"):
        config.resolve(PRESETS, "smoke", overrides=["train.precision=fp8"])


def test_save_and_reload_roundtrip(tmp_path):
    cfg = config.resolve(PRESETS, "smoke", overrides=["train.epochs=4", "model.blocks=2,2"])
    config.save(cfg, tmp_path / "config.yaml")
    again = config.load_saved(PRESETS["default"](), tmp_path / "config.yaml")
    assert dataclasses.asdict(again) == dataclasses.asdict(cfg)


def test_missing_and_invalid_yaml(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        config.resolve(PRESETS, "smoke", str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(UserError, match="mapping"):
        config.resolve(PRESETS, "smoke", str(bad))
