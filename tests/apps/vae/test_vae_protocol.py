"""The VAE's evaluation protocol: test images that copy a training (or validation) image
are removed and counted, and int8 calibration never draws from the test split."""

import io

import numpy as np
import pytest

from keras_suite import common
from keras_suite.apps.vae import APP
from keras_suite.apps.vae import app as app_module
from keras_suite.apps.vae.data import SHAPES_SEEDS, to_model_pixels
from keras_suite.common import config, shapes
from keras_suite.common.errors import UserError

tf = common.quiet_import_tensorflow()


def _cfg(preset="smoke", *overrides):
    return config.resolve(APP.presets, preset, overrides=list(overrides))


def _split_arrays(dataset) -> np.ndarray:
    return np.concatenate([b.numpy() for b in dataset]).astype(np.uint8)


def _copies(images: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Brute force: which of `images` equal some image of `reference`, pixel for pixel."""
    if not len(reference):
        return np.zeros(len(images), bool)
    flat, ref = images.reshape(len(images), -1), reference.reshape(len(reference), -1)
    return np.array([(ref == row).all(1).any() for row in flat])


def test_builtin_smoke_data_loses_exactly_its_copies_of_earlier_splits():
    """The smoke images are 16x16 and binarised: many coincide. Every val/test image equal
    to a training one (and every test image equal to a validation one) must go, and only
    those."""
    cfg = _cfg()
    d = cfg.data
    raw = {}
    for split, n in (("train", d.num_train), ("val", d.num_val), ("test", d.num_test)):
        images, _ = shapes.classification_images(n, d.image_size, SHAPES_SEEDS[split])
        raw[split] = to_model_pixels(images, d.channels, d.binarize).numpy().astype(np.uint8)
    val_copies = _copies(raw["val"], raw["train"])
    test_copies = _copies(raw["test"], np.concatenate([raw["train"], raw["val"]]))
    assert val_copies.sum() > 0 and test_copies.sum() > 0  # the smoke data really has copies

    data = APP.datasets(cfg=cfg, artifacts=None)
    split = data.info["evaluation_split"]
    assert split["split"] == "test" and split["size"] == data.info["num_test"]
    assert split["near_duplicates_removed"] == int(test_copies.sum())
    assert split["removed_by_split"] == {
        "val": int(val_copies.sum()),
        "test": split["near_duplicates_removed"],
    }
    assert "exact pixel hash" in split["duplicate_rule"]
    test, val = _split_arrays(data.test), _split_arrays(data.val)
    np.testing.assert_array_equal(test, raw["test"][~test_copies])  # the rest kept, in order
    np.testing.assert_array_equal(val, raw["val"][~val_copies])
    assert not _copies(test, np.concatenate([raw["train"], val])).any()


def _png(pixels: np.ndarray, **options) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", **options)
    return buffer.getvalue()


def test_folder_copies_are_found_by_pixels_not_by_file_bytes(tmp_path):
    images, _ = shapes.classification_images(30, 16, seed=9)
    for i in range(24):
        (tmp_path / "train").mkdir(exist_ok=True)
        (tmp_path / "train" / f"{i:02d}.png").write_bytes(_png(images[i]))
    (tmp_path / "test").mkdir()
    for i in range(24, 30):  # six new images
        (tmp_path / "test" / f"new_{i}.png").write_bytes(_png(images[i]))
    # a byte-identical copy, and a copy saved with other PNG settings (other bytes, same pixels)
    (tmp_path / "test" / "copy.png").write_bytes((tmp_path / "train" / "03.png").read_bytes())
    resaved = _png(images[7], compress_level=0)
    assert resaved != (tmp_path / "train" / "07.png").read_bytes()
    (tmp_path / "test" / "resaved.png").write_bytes(resaved)
    cfg = _cfg(
        "default",
        "data.source=folder",
        f"data.path={tmp_path}",
        "data.image_size=16",
        "model.num_downsamples=2",
        "train.batch_size=4",
        "data.val_fraction=0",
    )
    data = APP.datasets(cfg=cfg, artifacts=None)
    split = data.info["evaluation_split"]
    assert (split["size"], split["near_duplicates_removed"]) == (6, 2)
    np.testing.assert_array_equal(np.sort(_split_arrays(data.test), 0), np.sort(images[24:], 0))


def test_all_test_images_copied_from_training_is_one_clear_error(tmp_path):
    images, _ = shapes.classification_images(12, 16, seed=9)
    for split, picks in (("train", range(12)), ("test", range(3))):
        (tmp_path / split).mkdir()
        for i in picks:
            (tmp_path / split / f"{i}.png").write_bytes(_png(images[i]))
    cfg = _cfg("smoke", "data.source=folder", f"data.path={tmp_path}", "train.batch_size=4")
    with pytest.raises(UserError, match="no test images \\(3 were copies"):
        APP.datasets(cfg=cfg, artifacts=None)


@pytest.mark.parametrize("num_val", [64, 0])
def test_int8_calibration_draws_from_val_else_train_never_test(num_val):
    cfg = _cfg("smoke", f"data.num_val={num_val}")
    data = APP.datasets(cfg=cfg, artifacts=None)
    expected = "val" if num_val else "train"
    name, _, size = data.extras["calibration"]
    assert name == expected and size == data.info["split_sizes"][expected]
    # the encoder half's representative data are the calibration split's images, one by one
    fed = np.concatenate(
        [feed["images"] for feed in app_module._calibration("encoder", None, data, cfg)()]
    ).astype(np.uint8)
    test = _split_arrays(data.test)
    assert len(fed) == size and not _copies(fed, test).any()
    if expected == "val":
        np.testing.assert_array_equal(fed, _split_arrays(data.val))
