"""`data.source=tfds`: every app reads a TFDS dataset by name (offline: TFDS's own mock,
which keeps each builder's real features and generates the examples)."""

from __future__ import annotations

import builtins
import tempfile

import numpy as np
import pytest

from keras_suite.common import config as config_lib
from keras_suite.common.app import Artifacts
from keras_suite.common.errors import UserError
from keras_suite.common.registry import get_app

tfds = pytest.importorskip("tensorflow_datasets")
from tests.common.tfds_mock import mock_tfds  # noqa: E402


def resolve(app_name: str, *overrides: str):
    app = get_app(app_name)
    return app, config_lib.resolve(app.presets, "smoke", None, list(overrides))


def datasets(app_name: str, name: str, *overrides: str, examples: int = 40):
    app, cfg = resolve(app_name, "data.source=tfds", f"data.name={name}", *overrides)
    with mock_tfds(examples):
        return app.datasets(cfg=cfg, artifacts=Artifacts(tempfile.mkdtemp())), cfg


def test_classification_keeps_tfds_splits_and_carves_val():
    data, cfg = datasets("classification", "cifar10", "train.batch_size=8")
    info = data.info
    assert info["split_sizes"] == {"train": 36, "val": 4, "test": 40}  # 10% of train carved
    assert info["split_origin"]["test"] == "TFDS cifar10 test"
    assert info["split_origin"]["val"].startswith("carved from TFDS cifar10 train")
    assert len(info["class_names"]) == 10
    images, labels = next(iter(data.test))
    assert images.shape == (8, 32, 32, 3) and images.dtype.name == "float32"
    assert 0 <= float(np.min(images)) and float(np.max(images)) <= 255
    assert set(labels.numpy()) <= set(range(10))


def test_carving_is_seeded_and_disjoint():
    from keras_suite.common.tfds import load

    def carved(seed):
        _, cfg = resolve("classification", "data.source=tfds", "data.name=mnist")
        with mock_tfds(50):
            data = load("classification", cfg.data, seed, ("train", "val", "test"), 0.2, 0.1)
            ids = {
                s: [int(np.asarray(ex["image"]).sum()) for ex in ds.as_numpy_iterator()]
                for s, ds in data.splits.items()
            }
        return data.sizes, ids

    sizes, first = carved(1)
    assert sizes == {"train": 40, "test": 50, "val": 10}
    assert carved(1)[1] == first  # same seed, same carving
    assert carved(2)[1]["val"] != first["val"]
    assert not set(first["val"]) & set(first["train"])  # pixel sums: distinct random images


def test_grey_images_become_rgb_for_gan_and_vae():
    from keras_suite.apps.gan.data import real_splits

    _, cfg = resolve("gan", "data.source=tfds", "data.name=mnist")
    with mock_tfds(24):
        splits, names = real_splits(cfg)[:2]
    images, labels = splits["train"]
    assert images.shape == (24, 16, 16, 3) and images.dtype == np.uint8
    assert (images[..., 0] == images[..., 2]).all()  # grey copied to every channel
    assert names == [str(i) for i in range(10)] and set(labels) <= set(range(10))
    assert len(splits["test"][0]) == 24  # mnist has its own test split
    data, cfg = datasets("vae", "celeb_a", "train.batch_size=8", examples=24)
    batch = next(iter(data.test))
    assert batch.shape[1:] == (16, 16, 1)  # the smoke preset's greyscale view of colour faces


def test_segmentation_maps_pet_trimaps_to_classes():
    from keras_suite.common.tfds import MASK_CLASSES

    data, cfg = datasets("segmentation", "oxford_iiit_pet", "train.batch_size=4", examples=20)
    assert data.info["class_names"] == MASK_CLASSES["oxford_iiit_pet"][1]
    masks = np.concatenate([np.asarray(b[1]) for b in data.test])
    # mock trimaps hold random bytes: only 1, 2, 3 are classes, the rest is ignored
    assert set(np.unique(masks)) <= {0, 1, 2, cfg.data.ignore_index}


def test_detection_reads_voc_objects():
    data, cfg = datasets("detection", "voc", "train.batch_size=4", examples=12)
    assert data.info["class_names"][:2] == ["aeroplane", "bicycle"]
    assert data.info["split_origin"] == {
        "train": "TFDS voc train",
        "val": "TFDS voc validation",
        "test": "TFDS voc test",
    }
    batch = next(iter(data.test))
    boxes, classes = batch["boxes"].numpy(), batch["classes"].numpy()
    real = boxes[classes >= 0]
    assert len(real) and (real >= 0).all() and (real <= cfg.data.image_size).all()
    assert (real[:, 2] >= real[:, 0]).all() and (real[:, 3] >= real[:, 1]).all()


def test_translation_and_textgen_read_text():
    data, cfg = datasets("translation", "ted_hrlr_translate/pt_to_en", examples=60)
    assert set(data.info["split_sizes"]) == {"train", "val", "test"}
    assert data.info["num_train"] > 0 and data.info["num_test"] > 0
    data, cfg = datasets("textgen", "tiny_shakespeare", "data.seq_len=8", examples=80)
    assert data.info["val_documents"] == 80  # TFDS's own validation split, whole
    assert 0 < data.info["train_documents"] <= 80


def test_unknown_name_is_one_line_naming_what_fits():
    with pytest.raises(UserError) as err:
        datasets("classification", "cifar1O")
    text = str(err.value)
    assert "\n" not in text and "cifar10" in text and "TFDS datasets that fit" in text


def test_features_that_do_not_fit_are_one_line():
    with pytest.raises(UserError) as err:
        datasets("segmentation", "cifar10")
    text = str(err.value)
    assert "does not fit" in text and "oxford_iiit_pet" in text and "\n" not in text
    with pytest.raises(UserError, match="two text features"):
        datasets("translation", "tiny_shakespeare")


def test_missing_name_and_missing_package(monkeypatch):
    with pytest.raises(UserError, match="needs data.name"):
        resolve("textgen", "data.source=tfds")
    real_import = builtins.__import__

    def no_tfds(name, *args, **kwargs):
        if name.startswith("tensorflow_datasets"):
            raise ImportError("No module named 'tensorflow_datasets'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tfds)
    _, cfg = resolve("classification", "data.source=tfds", "data.name=cifar10")
    with pytest.raises(UserError, match=r"install the tfds extra: pip install -e \"\.\[tfds\]\""):
        get_app("classification").datasets(cfg=cfg, artifacts=None)


@pytest.mark.slow
@pytest.mark.parametrize(
    "app_name, name, overrides, examples",
    [
        ("classification", "cifar10", ["train.batch_size=8", "train.epochs=1"], 48),
        (
            "segmentation",
            "oxford_iiit_pet",
            ["train.batch_size=8", "train.epochs=1", "data.augment=false"],
            32,
        ),
        (
            "translation",
            "ted_hrlr_translate/pt_to_en",
            ["train.batch_size=8", "train.epochs=1"],
            64,
        ),
        ("textgen", "tiny_shakespeare", ["data.seq_len=8", "train.epochs=1"], 120),
    ],
)
def test_a_mocked_tfds_run_trains_and_evaluates(tmp_path, app_name, name, overrides, examples):
    from keras_suite.common.run import train_run

    run_dir = tmp_path / app_name
    with mock_tfds(examples):
        metrics = train_run(
            app_name,
            "smoke",
            overrides=["data.source=tfds", f"data.name={name}", *overrides],
            run_dir=run_dir,
            strategy_name="default",
        )
    assert (run_dir / "metrics.json").is_file()
    assert metrics["evaluation_split"]["size"] > 0
    assert any(isinstance(v, float) and np.isfinite(v) for v in metrics.values())
    records = (run_dir / "logs" / "metrics.jsonl").read_text()
    assert '"kind": "epoch"' in records
