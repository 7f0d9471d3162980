"""The classifier's evaluation protocol: a val/test image whose pixels equal an earlier
split's image is removed and counted, for folders, TFRecords and the built-in data."""

import io

import numpy as np
import pytest

from keras_suite import common
from keras_suite.apps.classification import APP
from keras_suite.apps.classification.data import SHAPES_SEEDS
from keras_suite.apps.classification.export import png_bytes
from keras_suite.common import config, shapes
from keras_suite.common.errors import UserError
from keras_suite.common.images import write_tfrecord

tf = common.quiet_import_tensorflow()

CLASSES = list(shapes.SHAPES[:3])


def _images(dataset) -> np.ndarray:
    return np.concatenate([x.numpy() for x, _ in dataset]).astype(np.uint8)


def _copies(images: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Brute force: which of `images` equal some image of `reference`, pixel for pixel."""
    ref = reference.reshape(len(reference), -1)
    return np.array([(ref == row).all(1).any() for row in images.reshape(len(images), -1)])


def _resaved_png(data: bytes) -> bytes:
    """The same pixels in other bytes (no compression)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.open(io.BytesIO(data)).save(buffer, format="PNG", compress_level=0)
    assert buffer.getvalue() != data
    return buffer.getvalue()


def _cfg(*overrides):
    return config.resolve(
        APP.presets, "smoke", overrides=["train.batch_size=4", "data.image_size=20", *overrides]
    )


def test_folder_copies_are_removed_by_pixels_and_counted(tmp_path):
    images, labels = shapes.classification_images(36, 20, seed=4, classes=CLASSES)
    layout = {"train": range(0, 24), "val": range(24, 30), "test": range(30, 36)}
    for split, picks in layout.items():
        for i in picks:
            folder = tmp_path / split / CLASSES[labels[i]]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i}.png").write_bytes(png_bytes(images[i]))
    # training images 0-2 copied into val (bytes) and test (bytes, re-saved); val image 24 into test

    def copy(split, i, data):
        (tmp_path / split / CLASSES[labels[i]] / f"copy{i}.png").write_bytes(data)

    copy("val", 0, png_bytes(images[0]))
    copy("test", 1, png_bytes(images[1]))
    copy("test", 2, _resaved_png(png_bytes(images[2])))
    copy("test", 24, png_bytes(images[24]))
    data = APP.datasets(cfg=_cfg("data.source=folder", f"data.path={tmp_path}"), artifacts=None)
    split = data.info["evaluation_split"]
    assert data.info["split_sizes"] == {"train": 24, "val": 6, "test": 6}
    assert split["near_duplicates_removed"] == 3 and split["removed_by_split"] == {
        "val": 1,
        "test": 3,
    }
    test, val = _images(data.test), _images(data.val)
    assert not _copies(test, np.concatenate([images[:24], val])).any()
    np.testing.assert_array_equal(np.sort(test, 0), np.sort(images[30:36], 0))


def test_tfrecord_copies_are_removed_and_counted(tmp_path):
    images, labels = shapes.classification_images(30, 20, seed=5, classes=CLASSES)
    encoded = [png_bytes(x) for x in images]
    write_tfrecord(tmp_path / "train.tfrecord", encoded[:20], labels[:20])
    test = encoded[20:] + [encoded[3], _resaved_png(encoded[4])]
    write_tfrecord(tmp_path / "test.tfrecord", test, list(labels[20:]) + [labels[3], labels[4]])
    cfg = _cfg("data.source=tfrecord", f"data.path={tmp_path}", "data.val_fraction=0.2")
    data = APP.datasets(cfg=cfg, artifacts=None)
    split = data.info["evaluation_split"]
    assert (split["size"], split["near_duplicates_removed"]) == (10, 2)
    np.testing.assert_array_equal(np.sort(_images(data.test), 0), np.sort(images[20:], 0))


def test_a_test_split_made_of_training_copies_is_refused(tmp_path):
    images, labels = shapes.classification_images(16, 20, seed=6, classes=CLASSES)
    for split, picks in (("train", range(16)), ("test", range(4))):
        for i in picks:
            folder = tmp_path / split / CLASSES[labels[i]]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i}.png").write_bytes(png_bytes(images[i]))
    with pytest.raises(UserError, match="4 were copies of training/validation images"):
        APP.datasets(cfg=_cfg("data.source=folder", f"data.path={tmp_path}"), artifacts=None)


def test_builtin_splits_share_no_image():
    """The built-in generator's splits, compared image by image: no copies (the count in
    info is 0, and so is the brute-force count)."""
    cfg = config.resolve(APP.presets, "smoke")
    d = cfg.data
    raw = {
        s: shapes.classification_images(n, d.image_size, SHAPES_SEEDS[s])[0]
        for s, n in (("train", d.num_train), ("val", d.num_val), ("test", d.num_test))
    }
    data = APP.datasets(cfg=cfg, artifacts=None)
    found = _copies(raw["test"], np.concatenate([raw["train"], raw["val"]])).sum()
    assert data.info["evaluation_split"]["near_duplicates_removed"] == found == 0
    assert data.info["evaluation_split"]["size"] == d.num_test
