"""Segmentation data: built-in scenes, user image/mask pairs and VOC with bad pairs
reported and skipped, and augmentation that moves image and mask together."""

import dataclasses
import logging

import cv2
import numpy as np
import pytest
from PIL import Image

from keras_suite.apps.segmentation import config as config_lib
from keras_suite.apps.segmentation.data import (
    VOC_CLASSES,
    load_splits,
    pairs_dataset,
    shape_class_names,
    shape_scenes,
    voc_dataset,
)
from keras_suite.common.errors import UserError


def _dcfg(**kw):
    return dataclasses.replace(config_lib.smoke().data, **kw)


def test_shape_scenes_have_every_kind_of_object():
    d = _dcfg(image_size=64, min_radius=0.08, max_radius=0.25, max_lines=2, line_width=(2, 3))
    split = shape_scenes(200, d, seed=5)
    names = shape_class_names()
    assert split.images.shape == (200, 64, 64, 3) and split.masks.shape == (200, 64, 64)
    counts = np.bincount(split.masks.ravel(), minlength=len(names))
    assert len(counts) == len(names) and (counts > 0).all()  # background, 8 shapes, lines
    assert counts[0] == counts.max()  # background is the largest class
    again = shape_scenes(200, d, seed=5)
    np.testing.assert_array_equal(split.masks, again.masks)  # a pure function of the seed
    # lines are thin: a line pixel has a background/other-class pixel within 2 px
    line = (split.masks == names.index("line")).astype(np.uint8)
    eroded = cv2.erode(line, np.ones((5, 5), np.uint8))
    assert eroded.sum() < 0.02 * line.sum()
    binary = shape_scenes(20, dataclasses.replace(d, binary=True), seed=5)
    assert set(np.unique(binary.masks)) <= {0, 1}


def _png(path, array, palette=False):
    """A PNG; masks as palette images (mode P, pixel values are palette indices) or greyscale."""
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.asarray(array).astype(np.uint8)
    if palette:
        img = Image.frombytes("P", (array.shape[1], array.shape[0]), array.tobytes())
        img.putpalette([v for c in range(256) for v in ((c * 40) % 256, (c * 90) % 256, c)])
    else:
        img = Image.fromarray(array)
    img.save(path)
    assert Image.open(path).mode == ("P" if palette else "L" if array.ndim == 2 else "RGB")


def _pair_dataset(root, n=10, size=(48, 40)):
    rng = np.random.default_rng(0)
    for i in range(n):
        image = rng.integers(0, 256, (size[1], size[0], 3))
        mask = np.zeros((size[1], size[0]), np.uint8)
        mask[5:20, 5:25] = 1 + i % 2
        mask[0, :] = 255  # unlabelled boundary
        _png(root / "images" / f"im{i}.png", image)
        _png(root / "masks" / f"im{i}.png", mask, palette=(i % 2 == 0))  # palette and greyscale
    (root / "labels.txt").write_text("background\nsquare\nbar\n")


def test_pairs_good_and_bad(tmp_path, caplog):
    _pair_dataset(tmp_path)
    rng = np.random.default_rng(1)
    _png(tmp_path / "images" / "no_mask.png", rng.integers(0, 256, (40, 48, 3)))
    _png(tmp_path / "images" / "wrong_size.png", rng.integers(0, 256, (40, 48, 3)))
    _png(tmp_path / "masks" / "wrong_size.png", np.zeros((30, 48)))
    _png(tmp_path / "images" / "bad_id.png", rng.integers(0, 256, (40, 48, 3)))
    _png(tmp_path / "masks" / "bad_id.png", np.full((40, 48), 7))
    _png(tmp_path / "images" / "rgb_mask.png", rng.integers(0, 256, (40, 48, 3)))
    _png(tmp_path / "masks" / "rgb_mask.png", rng.integers(0, 3, (40, 48, 3)))
    d = _dcfg(
        source="pairs", path=str(tmp_path), image_size=32, val_fraction=0.2, test_fraction=0.2
    )
    with caplog.at_level(logging.WARNING, logger="ksuite"):
        data = pairs_dataset(d, seed=0)
    splits, names = data.splits, data.names
    assert names == ["background", "square", "bar"]
    assert sum(len(s) for s in splits.values()) == 10
    text = caplog.text
    assert "skipped 4 of 14 image/mask pairs" in text
    for name in ("no_mask.png", "wrong_size.png", "bad_id.png", "rgb_mask.png"):
        assert name in text
    assert "unknown class id(s) 7" in text and "mask is 48x30" in text
    masks = np.concatenate([s.masks for s in splits.values()])
    assert set(np.unique(masks)) == {0, 1, 2, 255}  # ignore survives nearest-neighbour resizing
    assert splits["train"].images.shape[1:] == (32, 32, 3)


def test_pairs_nothing_usable_is_one_clear_error(tmp_path):
    _png(tmp_path / "images" / "a.png", np.zeros((8, 8, 3)))
    (tmp_path / "masks").mkdir()
    d = _dcfg(source="pairs", path=str(tmp_path))
    with pytest.raises(UserError, match="no usable image/mask pairs.*a.png: no mask"):
        pairs_dataset(d, seed=0)
    with pytest.raises(UserError, match="no images/ and masks/"):
        pairs_dataset(_dcfg(source="pairs", path=str(tmp_path / "masks")), seed=0)


def test_voc_layout(tmp_path, caplog):
    root = tmp_path / "VOCdevkit" / "VOC2012"
    rng = np.random.default_rng(2)
    ids = [f"2007_{i:06d}" for i in range(8)]
    for i, image_id in enumerate(ids):
        image = rng.integers(0, 256, (36, 50, 3)).astype(np.uint8)
        (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "JPEGImages" / f"{image_id}.jpg"), image)
        mask = np.zeros((36, 50), np.uint8)
        mask[4:30, 10:40] = 15  # person
        mask[4, 10:40] = 255  # VOC's boundary band
        if i != 7:  # the last image has no mask
            _png(root / "SegmentationClass" / f"{image_id}.png", mask, palette=True)
    lists = root / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text("\n".join(ids[:5]) + "\n")
    (lists / "val.txt").write_text("\n".join(ids[5:]) + "\n")
    d = _dcfg(source="voc", path=str(tmp_path), image_size=32, val_fraction=0.2)
    with caplog.at_level(logging.WARNING, logger="ksuite"):
        data = voc_dataset(d, seed=0)
    splits, names = data.splits, data.names
    assert names == list(VOC_CLASSES)
    assert len(splits["train"]) + len(splits["val"]) == 5 and len(splits["test"]) == 2
    assert "2007_000007.jpg: no mask" in caplog.text
    assert set(np.unique(splits["train"].masks)) == {0, 15, 255}


def test_augmentation_moves_image_and_mask_together():
    import tensorflow as tf

    from keras_suite.apps.segmentation.augment import augment

    d = _dcfg(image_size=64, min_radius=0.1, max_radius=0.3)
    split = shape_scenes(8, d, seed=3)
    # an image whose pixels spell their class: after the same warp, the warped image must
    # still spell the warped mask (except where bilinear blends two classes at an edge)
    coded = np.repeat(split.masks[..., None].astype(np.float32) * 20.0, 3, -1)
    images, masks = augment(
        tf.constant(coded),
        tf.constant(split.masks),
        tf.constant([3, 4], tf.int64),
        dataclasses.replace(d, rotation=15.0, scale=(0.8, 1.25)),
    )
    images, masks = images.numpy(), masks.numpy()
    assert masks.dtype == np.int32 and set(np.unique(masks)) <= set(np.unique(split.masks))
    agree = np.mean(np.abs(images[..., 0] / 20.0 - masks) < 0.5)
    assert agree > 0.95
    assert not np.array_equal(masks, split.masks)  # something did move
    # flips alone are exact
    flip_only = dataclasses.replace(d, rotation=0.0, scale=(1.0, 1.0))
    images, masks = augment(
        tf.constant(coded), tf.constant(split.masks), tf.constant([5, 6], tf.int64), flip_only
    )
    np.testing.assert_array_equal(images.numpy()[..., 0] / 20.0, masks.numpy())
    for i in range(8):
        m = split.masks[i]
        assert any(
            np.array_equal(masks.numpy()[i], v) for v in (m, m[:, ::-1], m[::-1], m[::-1, ::-1])
        )


def test_load_splits_is_cached_and_sized():
    cfg = config_lib.smoke()
    a, names = load_splits(cfg.data, cfg.train.seed)
    b, _ = load_splits(cfg.data, cfg.train.seed)
    assert a is b and names == shape_class_names()
    assert {k: len(v) for k, v in a.items()} == {
        "train": cfg.data.num_train,
        "val": cfg.data.num_val,
        "test": cfg.data.num_test,
    }


def test_check_command_lists_skipped_pairs(tmp_path, caplog, capsys):
    import argparse

    from keras_suite.apps.segmentation.commands import COMMANDS

    _pair_dataset(tmp_path, n=4)
    _png(tmp_path / "images" / "orphan.png", np.zeros((40, 48, 3)))
    cmd = COMMANDS[0]
    parser = argparse.ArgumentParser()
    cmd.add_arguments(parser)
    with caplog.at_level(logging.WARNING, logger="ksuite"):
        status = cmd.run(parser.parse_args([str(tmp_path), "--strict"]))
    assert status == 1 and "orphan.png: no mask" in caplog.text
    out = capsys.readouterr().out
    assert "classes (3): background, square, bar" in out and "images/: 4 pairs" in out
