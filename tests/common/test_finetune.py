"""Fine-tuning a keras-hub backbone offline: a tiny ResNet preset is built from its config
with random weights and saved as a local preset folder (the layout keras-hub downloads)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from keras_suite.common.errors import UserError

keras_hub = pytest.importorskip("keras_hub")
import keras  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def tiny_preset(tmp_path_factory):
    """A local keras-hub preset: a 4-stage ResNet (random weights) + its ImageNet converter."""
    folder = tmp_path_factory.mktemp("preset")
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 16, 16, 16],
        stackwise_num_blocks=[1, 1, 1, 1],
        stackwise_num_strides=[1, 2, 2, 2],
        block_type="basic_block",
        image_shape=(None, None, 3),
    )
    backbone.save_to_preset(str(folder))
    converter = keras_hub.layers.ResNetImageConverter(
        image_size=(224, 224),
        scale=[1 / (255 * s) for s in STD],
        offset=[-m / s for m, s in zip(MEAN, STD)],
    )
    converter.save_to_preset(str(folder))
    return f"hub:{folder}"


def test_classifier_uses_the_presets_image_converter(tiny_preset):
    from keras_suite.apps.classification.config import smoke
    from keras_suite.apps.classification.model import build_classifier

    cfg = smoke().model
    cfg.arch = tiny_preset
    model = build_classifier(cfg, 32, 4)
    names = [layer.name for layer in model.layers]
    assert "image_converter" in names and "backbone" in names and "rescale" not in names
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    converted = np.asarray(model.get_layer("image_converter")(pixels))
    expected = (pixels / 255.0 - np.array(MEAN)) / np.array(STD)  # ImageNet normalisation
    np.testing.assert_allclose(converted, expected, rtol=1e-5, atol=1e-5)


def test_segmentation_and_detection_take_a_hub_backbone(tiny_preset):
    from keras_suite.apps.detection.model import build_detector
    from keras_suite.apps.segmentation.config import smoke as segmentation_smoke
    from keras_suite.apps.segmentation.model import build_segmenter

    cfg = segmentation_smoke().model
    cfg.arch, cfg.backbone = "deeplabv3plus", tiny_preset
    segmenter = build_segmenter(cfg, 64, 5)
    assert {"image_converter", "backbone"} <= {layer.name for layer in segmenter.layers}
    assert segmenter(np.zeros((1, 64, 64, 3), np.float32)).shape == (1, 64, 64, 5)

    images = np.zeros((1, 64, 64, 3), np.float32)
    detector = build_detector(3, "n", 8, backbone=tiny_preset)
    reference = build_detector(3, "n", 8)  # the built-in CSP backbone: same strides
    assert "backbone" in {layer.name for layer in detector.layers}
    assert detector(images).shape == reference(images).shape  # one row per anchor point


class BackboneWatcher(keras.callbacks.Callback):
    """Copies of the backbone's and the head's weights at the start and after each epoch."""

    def __init__(self, head: str = "logits"):
        super().__init__()
        self.head_name = head
        self.backbone, self.head = [], []

    def _snapshot(self):
        self.backbone.append([w.copy() for w in self.model.get_layer("backbone").get_weights()])
        self.head.append([w.copy() for w in self.model.get_layer(self.head_name).get_weights()])

    def on_train_begin(self, logs=None):
        self._snapshot()

    def on_epoch_end(self, epoch, logs=None):
        self._snapshot()


def same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.slow
def test_frozen_then_unfrozen_backbone(tiny_preset, tmp_path):
    from keras_suite.common.run import train_run

    watcher = BackboneWatcher()
    run_dir = tmp_path / "finetune"
    metrics = train_run(
        "classification",
        "smoke",
        overrides=[
            f"model.arch={tiny_preset}",
            "data.num_train=128",
            "data.num_val=32",
            "data.num_test=32",
            "train.batch_size=16",
            "train.epochs=2",
            "train.freeze_backbone_epochs=1",
            "train.finetune_lr_scale=0.1",
            "train.optimizer=adamw",
        ],
        run_dir=run_dir,
        strategy_name="default",
        callbacks=[watcher],
    )
    start, after_frozen, after_unfrozen = watcher.backbone
    assert same(start, after_frozen)  # epoch 1: the backbone did not move (nor decay)
    assert not same(after_frozen, after_unfrozen)  # epoch 2: it learns
    assert not same(watcher.head[0], watcher.head[1])  # the head learned in epoch 1
    epochs = [
        json.loads(line)
        for line in (run_dir / "logs" / "metrics.jsonl").read_text().splitlines()
        if '"kind": "epoch"' in line
    ]
    # epoch records carry the learning rate at their end: 0.1x (ramped up) after unfreezing
    assert epochs[1]["learning_rate"] < 0.2 * epochs[0]["learning_rate"]
    assert np.isfinite(metrics["loss"]) and metrics["num_examples"] == 32


def test_missing_preset_is_one_line():
    from keras_suite.common.finetune import load_backbone

    with pytest.raises(UserError) as err:
        load_backbone("hub:/nonexistent/preset/folder", pretrained=False)
    assert "\n" not in str(err.value) and "/nonexistent/preset/folder" in str(err.value)


def test_freezing_needs_a_hub_backbone():
    from keras_suite.apps.classification.app import ClassificationApp
    from keras_suite.common import config as config_lib

    app = ClassificationApp()
    cfg = config_lib.resolve(app.presets, "smoke", None, ["train.freeze_backbone_epochs=1"])
    with pytest.raises(UserError, match="needs a keras-hub backbone"):
        app.build_state(
            cfg=cfg, info={"image_size": 32, "class_names": ["a", "b"], "num_train": 64}
        )
    with pytest.raises(UserError, match="leaves no epoch"):
        config_lib.resolve(app.presets, "smoke", None, ["train.freeze_backbone_epochs=3"])


@pytest.mark.slow
@pytest.mark.parametrize(
    "app_name, head, overrides",
    [
        (
            "segmentation",
            "logits_low",
            ["model.arch=deeplabv3plus", "data.num_train=32", "data.num_val=8", "data.num_test=8"],
        ),
        (
            "detection",
            "h0_cls_out",
            ["data.train_images=16", "data.test_images=8", "data.mosaic=0", "train.warmup_steps=0"],
        ),
    ],
)
def test_segmentation_and_detection_fine_tune(tiny_preset, tmp_path, app_name, head, overrides):
    from keras_suite.common.run import train_run

    watcher = BackboneWatcher(head)
    train_run(
        app_name,
        "smoke",
        overrides=[
            f"model.backbone={tiny_preset}",
            "train.batch_size=8",
            "train.epochs=2",
            "train.steps_per_epoch=2",
            "train.freeze_backbone_epochs=1",
            *overrides,
        ],
        run_dir=tmp_path / app_name,
        strategy_name="default",
        callbacks=[watcher],
        evaluate=False,
    )
    start, after_frozen, after_unfrozen = watcher.backbone
    assert same(start, after_frozen) and not same(after_frozen, after_unfrozen)
    assert not same(watcher.head[0], watcher.head[1])
