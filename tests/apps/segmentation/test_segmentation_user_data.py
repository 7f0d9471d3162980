"""User datasets the way users have them: binary masks stored as 0/255, broken files, a
Pascal VOC folder, folder layouts without a test split, copies of training images in the
test folder. Each case reads the data through the app's own entry points."""

import argparse
import dataclasses
import logging
import shutil

import cv2
import numpy as np
import pytest

from keras_suite.apps.segmentation import APP
from keras_suite.apps.segmentation import config as config_lib
from keras_suite.apps.segmentation.data import load_splits
from keras_suite.common.app import Artifacts
from keras_suite.common.errors import UserError
from tests.apps.segmentation.test_segmentation_data import _png


def _dcfg(path, **kw):
    base = dict(source="pairs", path=str(path), image_size=32, val_fraction=0.2, test_fraction=0.2)
    return dataclasses.replace(config_lib.smoke().data, **{**base, **kw})


def _write_pairs(folder, n, foreground=255, size=(40, 32), seed=0, prefix="im"):
    """n images with a bright rectangle and masks marking it with `foreground` (0 elsewhere);
    every image has its own random texture, so no two are equal."""
    rng = np.random.default_rng(seed)
    w, h = size
    for i in range(n):
        image = rng.integers(0, 120, (h, w, 3))
        mask = np.zeros((h, w), np.uint8)
        x, y = int(rng.integers(2, w // 2)), int(rng.integers(2, h // 2))
        mask[y : y + h // 3, x : x + w // 3] = foreground
        image[mask > 0] += 120
        _png(folder / "images" / f"{prefix}{i}.png", image)
        _png(folder / "masks" / f"{prefix}{i}.png", mask)


def _check(path, *extra):
    from keras_suite.apps.segmentation.commands import COMMANDS

    cmd = next(c for c in COMMANDS if c.name == "segmentation-check")
    parser = argparse.ArgumentParser()
    cmd.add_arguments(parser)
    return cmd.run(parser.parse_args([str(path), *extra]))


# ---- issue 26: masks, broken files, VOC folders ---------------------------------------------


def test_binary_0_255_masks_are_read_as_foreground_not_ignore(tmp_path, caplog):
    _write_pairs(tmp_path, 10, foreground=255)
    with caplog.at_level(logging.INFO, logger="ksuite"):
        splits, names = load_splits(_dcfg(tmp_path), 0)
    assert names == ["background", "foreground"]
    masks = np.concatenate([s.masks for s in splits.values()])
    assert set(np.unique(masks)) == {0, 1}  # no pixel left as "ignore"
    # the same pixels as the files' 255s, resized with nearest neighbour
    want = np.stack(
        [
            cv2.resize(
                (cv2.imread(str(tmp_path / "masks" / f"im{i}.png"), 0) == 255).astype(np.uint8),
                (32, 32),
                interpolation=cv2.INTER_NEAREST,
            )
            for i in range(10)
        ]
    )
    assert masks.sum() == want.sum() > 0
    assert "0 and 255" in caplog.text and "binary" in caplog.text  # the choice is logged


def test_255_stays_ignore_when_masks_hold_other_class_ids(tmp_path):
    """VOC-style masks (0, 1, 2 and 255 on boundaries): 255 is the ignore value."""
    _write_pairs(tmp_path, 8, foreground=1)
    _write_pairs(tmp_path, 4, foreground=2, seed=1, prefix="two")
    mask = cv2.imread(str(tmp_path / "masks" / "two0.png"), 0)
    mask[0, :] = 255
    _png(tmp_path / "masks" / "two0.png", mask)
    splits, names = load_splits(_dcfg(tmp_path), 0)
    assert names == ["class_0", "class_1", "class_2"]
    masks = np.concatenate([s.masks for s in splits.values()])
    assert set(np.unique(masks)) == {0, 1, 2, 255}


def test_check_calls_0_255_masks_binary_and_usable(tmp_path, capsys):
    _write_pairs(tmp_path, 6, foreground=255)
    assert _check(tmp_path, "--strict") == 0
    out = capsys.readouterr().out
    assert "classes (2): background, foreground" in out
    assert "read as binary" in out
    assert "foreground 0.0%" not in out


def test_training_on_0_255_masks_scores_the_foreground(tmp_path):
    from keras_suite.common.run import train_run

    _write_pairs(tmp_path / "data", 30, foreground=255)
    metrics = train_run(
        "segmentation",
        "smoke",
        run_dir=tmp_path / "run",
        strategy_name="default",
        overrides=["data.source=pairs", f"data.path={tmp_path / 'data'}", "train.batch_size=8"],
    )
    assert list(metrics["per_class"]) == ["background", "foreground"]
    assert metrics["per_class"]["foreground"]["pixels"] > 0
    assert (tmp_path / "run" / "metrics.json").exists()


def test_zero_byte_files_are_skipped_and_named(tmp_path, caplog):
    _write_pairs(tmp_path, 8, foreground=1)
    (tmp_path / "images" / "empty.png").write_bytes(b"")
    shutil.copy(tmp_path / "masks" / "im0.png", tmp_path / "masks" / "empty.png")
    shutil.copy(tmp_path / "images" / "im0.png", tmp_path / "images" / "nomask.png")
    (tmp_path / "masks" / "nomask.png").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="ksuite"):
        splits, _ = load_splits(_dcfg(tmp_path), 0)
    assert sum(len(s) for s in splits.values()) == 8
    assert "skipped 2 of 10 image/mask pairs" in caplog.text
    assert "empty.png: is an empty file (0 bytes)" in caplog.text
    assert "nomask.png: is an empty file (0 bytes)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ksuite"):
        assert _check(tmp_path, "--strict") == 1  # skipped pairs, no traceback
    assert "empty.png" in caplog.text


@pytest.mark.parametrize("size", ["0", "-16", "-64"])
def test_a_bad_image_size_is_one_line(size):
    from keras_suite.common.config import resolve

    with pytest.raises(UserError, match="data.image_size"):
        resolve(APP.presets, "smoke", overrides=[f"data.image_size={size}"])


def _voc(root, n=8):
    rng = np.random.default_rng(2)
    ids = [f"2007_{i:06d}" for i in range(n)]
    for image_id in ids:
        (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "JPEGImages" / f"{image_id}.jpg"), rng.integers(0, 256, (36, 50, 3)))
        mask = np.zeros((36, 50), np.uint8)
        mask[4:30, 10:40] = 15
        mask[4, 10:40] = 255
        _png(root / "SegmentationClass" / f"{image_id}.png", mask, palette=True)
    lists = root / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text("\n".join(ids[:5]) + "\n")
    (lists / "val.txt").write_text("\n".join(ids[5:]) + "\n")


def test_check_reads_a_voc_folder_without_source_voc(tmp_path, capsys):
    _voc(tmp_path / "VOCdevkit" / "VOC2012")
    assert _check(tmp_path) == 0
    out = capsys.readouterr().out
    assert "Pascal VOC" in out and "classes (21)" in out
    # training with data.source=pairs on it says what to do
    with pytest.raises(UserError, match="looks like Pascal VOC.*data.source=voc"):
        load_splits(_dcfg(tmp_path / "VOCdevkit" / "VOC2012"), 0)


# ---- issue 27: a test split that is never val or train ----------------------------------


def _datasets(path, **overrides):
    cfg = config_lib.smoke()
    cfg = dataclasses.replace(
        cfg,
        data=_dcfg(path, **{"val_fraction": 0.1, "test_fraction": 0.1, **overrides}),
        train=dataclasses.replace(cfg.train, batch_size=4),
    )
    return APP.datasets(cfg=cfg, artifacts=Artifacts(path / "artifacts"))


def _keys(split):
    return {image.tobytes() for image in split.images}


LAYOUTS = {
    "flat": {"": 30},  # images/ + masks/
    "train_only": {"train": 30},
    "train_val_test": {"train": 20, "val": 5, "test": 5},
    "train_val": {"train": 24, "val": 5},
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_splits_are_disjoint_and_test_is_never_val_or_train(tmp_path, layout):
    for seed, (folder, n) in enumerate(LAYOUTS[layout].items()):
        _write_pairs(tmp_path / folder, n, foreground=1, seed=seed, prefix=f"{folder}_")
    data = _datasets(tmp_path)
    splits = data.extras["splits"]
    train, val, test = (_keys(splits[s]) for s in ("train", "val", "test"))
    assert len(test) == len(splits["test"]) >= 1
    assert not train & test and not val & test and not train & val
    assert len(train) + len(val) + len(test) == sum(LAYOUTS[layout].values())
    # int8 calibration reads training images only
    calibration = {image.tobytes() for image in APP.calibration_images(data=data)}
    assert calibration and calibration <= train
    split = data.info["evaluation_split"]
    assert split["split"] == "test" and split["size"] == len(splits["test"])
    assert split["near_duplicates_removed"] == 0 and "pixel" in split["duplicate_rule"]
    assert data.info["split_sizes"]["test"] == len(splits["test"])


def test_too_few_pairs_for_a_test_split_is_one_line(tmp_path):
    """4 pairs and data.test_fraction=0.1 carve no test image: refused, never test = train."""
    _write_pairs(tmp_path, 4, foreground=1)
    with pytest.raises(UserError, match="no test split.*data.test_fraction"):
        _datasets(tmp_path)
    with pytest.raises(UserError, match="data.test_fraction=0"):
        _datasets(tmp_path, test_fraction=0.0)


def test_copies_of_training_images_are_removed_from_val_and_test(tmp_path, caplog):
    _write_pairs(tmp_path / "train", 16, foreground=1)
    _write_pairs(tmp_path / "val", 3, foreground=1, seed=1, prefix="v")
    _write_pairs(tmp_path / "test", 5, foreground=1, seed=2, prefix="t")
    for kind in ("images", "masks"):
        for j in range(2):  # two training pairs copied into test/, one into val/
            shutil.copy(tmp_path / "train" / kind / f"im{j}.png", tmp_path / "test" / kind)
        shutil.copy(tmp_path / "train" / kind / "im5.png", tmp_path / "val" / kind)
    with caplog.at_level(logging.WARNING, logger="ksuite"):
        data = _datasets(tmp_path)
    splits = data.extras["splits"]
    assert (len(splits["val"]), len(splits["test"])) == (3, 5)
    assert data.info["evaluation_split"]["near_duplicates_removed"] == 2
    assert data.info["duplicates_removed"] == {"val": 1, "test": 2}
    assert "removed 2 of 7 test images" in caplog.text and "im0.png" in caplog.text
    assert not _keys(splits["train"]) & _keys(splits["test"])
