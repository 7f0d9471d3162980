"""Classification on the folder layouts users actually have: every combination of split
folders, empty class folders, augmentation switches, and int8 calibration that never
touches the images the parity report scores."""

import numpy as np
import pytest

from keras_suite import common
from keras_suite.apps.classification import APP
from keras_suite.apps.classification.data import augmentation_layers, describe_augmentation
from keras_suite.apps.classification.export import png_bytes as _png_bytes
from keras_suite.common import config, shapes
from keras_suite.common.errors import UserError

tf = common.quiet_import_tensorflow()

CLASSES = list(shapes.SHAPES[:3])


def _write(root, n_per_class, seed):
    images, labels = shapes.classification_images(n_per_class * 3, 20, seed=seed, classes=CLASSES)
    for i, (img, label) in enumerate(zip(images, labels)):
        folder = root / CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{seed}_{i}.png").write_bytes(_png_bytes(img))
    return len(images)


def _cfg(path, *extra):
    return config.resolve(
        APP.presets,
        "smoke",
        overrides=[
            "data.source=folder",
            f"data.path={path}",
            "train.batch_size=4",
            "data.val_fraction=0.2",
            "data.test_fraction=0.25",
            *extra,
        ],
    )


@pytest.mark.parametrize(
    "layout",
    [(), ("train",), ("train", "val"), ("train", "test"), ("train", "val", "test")],
    ids=["no-split-folders", "train-only", "train+val", "train+test", "train+val+test"],
)
def test_every_split_layout_gives_train_val_and_test(tmp_path, layout, caplog):
    sizes = {"train": 8, "val": 2, "test": 3}
    if layout:
        given = {s: _write(tmp_path / s, sizes[s], seed=i) for i, s in enumerate(layout)}
    else:
        given = {"all": _write(tmp_path, 8, seed=0)}
    with caplog.at_level("INFO", logger="ksuite"):
        data = APP.datasets(cfg=_cfg(tmp_path), artifacts=None)
    info = data.info
    total = sum(given.values())
    assert info["num_train"] + info["num_val"] + info["num_test"] == total
    assert info["num_val"] > 0 and info["num_test"] > 0
    for split in ("val", "test"):
        if split in given:
            assert info[f"num_{split}"] == given[split]
            assert info["split_origin"][split] == f"{split}/ folder"
        else:
            assert info["split_origin"][split].startswith("carved from train")
    # the carved splits follow the fractions of the training images
    train_images = given.get("train", given.get("all"))
    if "test" not in given:
        assert info["num_test"] == round(train_images * 0.25)
    assert f"train {info['num_train']}" in caplog.text and f"test {info['num_test']}" in caplog.text
    # every image is in exactly one split
    seen = [
        tuple(np.asarray(x).ravel()[:64])
        for ds in (data.val, data.test)
        for xs, _ in ds
        for x in xs.numpy()
    ]
    assert len(seen) == len(set(seen))


def test_split_folders_without_train_are_refused(tmp_path):
    _write(tmp_path / "val", 2, seed=1)
    with pytest.raises(UserError, match="no train/ folder"):
        APP.datasets(cfg=_cfg(tmp_path), artifacts=None)


def test_no_test_split_at_all_is_a_clear_error(tmp_path):
    _write(tmp_path / "train", 6, seed=0)
    with pytest.raises(UserError, match="no test images"):
        APP.datasets(cfg=_cfg(tmp_path, "data.test_fraction=0"), artifacts=None)


def test_empty_class_folder_is_skipped_and_named(tmp_path, caplog):
    _write(tmp_path, 6, seed=0)
    (tmp_path / "zebra").mkdir()
    with caplog.at_level("WARNING", logger="ksuite"):
        data = APP.datasets(cfg=_cfg(tmp_path), artifacts=None)
    assert data.info["class_names"] == CLASSES
    assert "empty class folder" in caplog.text and "zebra" in caplog.text


def test_images_of_unknown_classes_in_val_are_counted(tmp_path, caplog):
    _write(tmp_path / "train", 6, seed=0)
    _write(tmp_path / "val", 2, seed=1)
    (tmp_path / "val" / "zebra").mkdir()
    (tmp_path / "val" / "zebra" / "z.png").write_bytes(
        (tmp_path / "val" / CLASSES[0]).glob("*.png").__next__().read_bytes()
    )
    with caplog.at_level("WARNING", logger="ksuite"):
        data = APP.datasets(cfg=_cfg(tmp_path), artifacts=None)
    assert (
        data.info["num_val"] == 6
        and "skipped 1 images" in caplog.text
        and "zebra (1)" in caplog.text
    )


def test_augmentation_defaults_keep_orientation_and_are_logged(tmp_path, caplog):
    cfg = config.resolve(APP.presets, "default")
    names = [type(layer).__name__ for layer in augmentation_layers(cfg.data, 0)]
    flip = augmentation_layers(cfg.data, 0)[0]
    assert names[0] == "RandomFlip" and flip.mode == "horizontal"  # no vertical flip by default
    assert "RandomRotation" not in names and "RandomBrightness" not in names
    off = config.resolve(
        APP.presets,
        "default",
        overrides=["data.hflip=false", "data.rotation=0.05", "data.color_jitter=0.2"],
    )
    names = [type(layer).__name__ for layer in augmentation_layers(off.data, 0)]
    assert "RandomFlip" not in names and {
        "RandomRotation",
        "RandomBrightness",
        "RandomContrast",
    } <= set(names)
    assert "vertical flip off" in describe_augmentation(cfg.data)
    _write(tmp_path, 6, seed=0)
    with caplog.at_level("INFO", logger="ksuite"):
        APP.datasets(cfg=_cfg(tmp_path, "data.augment=true"), artifacts=None)
    assert "augmentation: horizontal flip on, vertical flip off" in caplog.text


def test_int8_calibration_never_uses_the_scored_test_split(tmp_path):
    _write(tmp_path / "train", 6, seed=0)
    _write(tmp_path / "test", 3, seed=2)
    for extra, want in ((), "val"), (("data.val_fraction=0",), "train"):
        data = APP.datasets(cfg=_cfg(tmp_path, *extra), artifacts=None)
        split, dataset, size = data.extras["calibration"]
        assert split == want and size == data.info[f"num_{want}"]
        calib = {tuple(x.numpy().ravel()[:64]) for xs, _ in dataset for x in xs}
        test = {tuple(x.numpy().ravel()[:64]) for xs, _ in data.test for x in xs}
        assert calib and not calib & test


def test_ksuite_data_check_reports_what_a_run_would_see(tmp_path, capsys):
    from keras_suite.cli import main

    _write(tmp_path / "train", 6, seed=0)
    (tmp_path / "train" / "zebra").mkdir()
    (tmp_path / "train" / CLASSES[0] / "broken.jpg").write_bytes(b"not an image")
    assert (
        main(
            [
                "data",
                "check",
                "classification",
                "--preset",
                "smoke",
                "--set",
                "data.source=folder",
                "--set",
                f"data.path={tmp_path}",
                "--set",
                "train.batch_size=4",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert f"classes (3): {', '.join(CLASSES)}" in out
    assert "test: " in out and "carved from train (data.test_fraction=0.1)" in out
    assert "source image sizes: 20x20 to 20x20" in out
    assert "zebra" in out and "broken.jpg" in out and "warnings (2):" in out
    assert not (tmp_path / "artifacts").exists()
