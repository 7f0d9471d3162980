"""Segmentation networks (U-Net both upsamplings, DeepLabV3+) and losses: ignore pixels
left out, class weights, Dice, and the loss under two replicas equal to one device's."""

import dataclasses
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from keras_suite.apps.segmentation import config as config_lib
from keras_suite.apps.segmentation.losses import dice_per_image, segmentation_loss
from keras_suite.apps.segmentation.model import build_segmenter
from tests.helpers import ROOT, subprocess_env


@pytest.mark.parametrize(
    "arch,extra",
    [
        ("unet", {"upsampling": "transpose"}),
        ("unet", {"upsampling": "resize", "depth": 3}),
        ("deeplabv3plus", {"output_stride": 8}),
        ("deeplabv3plus", {"output_stride": 16}),
    ],
)
def test_networks_give_logits_at_input_resolution(arch, extra):
    cfg = dataclasses.replace(config_lib.ModelConfig(), arch=arch, width=0.25, **extra)
    model = build_segmenter(cfg, 64, 5)
    out = model(tf.random.uniform([2, 64, 64, 3], 0, 255), training=False)
    assert out.shape == (2, 64, 64, 5) and out.dtype == tf.float32
    names = [layer.name for layer in model.layers]
    if arch == "unet":
        kind = "Conv2DTranspose" if extra["upsampling"] == "transpose" else "UpSampling2D"
        assert type(model.get_layer("dec0_up")).__name__ == kind
        assert sum(n.endswith("_concat") for n in names) == cfg.depth  # one skip per level
    else:
        assert "aspp_pool" in names and "decoder_low_conv" in names
        rates = [model.get_layer(f"aspp_rate{r}_dw").dilation_rate for r in cfg.atrous_rates]
        assert rates == [(r, r) for r in cfg.atrous_rates]


def test_width_multiplier_scales_parameters():
    small = build_segmenter(
        dataclasses.replace(config_lib.ModelConfig(), width=0.5), 32, 4
    ).count_params()
    big = build_segmenter(
        dataclasses.replace(config_lib.ModelConfig(), width=1.0), 32, 4
    ).count_params()
    assert 3 < big / small < 5  # channels x2 -> conv weights ~x4


def _batch(seed=0, n=4, size=8, k=3):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (n, size, size, k)).astype(np.float32)
    labels = rng.integers(0, k, (n, size, size)).astype(np.int32)
    labels[rng.random(labels.shape) < 0.3] = 255
    return logits, labels


def _manual_ce(logits, labels, weights=None):
    valid = labels != 255
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    safe = np.where(valid, labels, 0)
    nll = -np.take_along_axis(logp, safe[..., None], -1)[..., 0]
    w = valid.astype(np.float64) * (np.asarray(weights)[safe] if weights is not None else 1.0)
    return (nll * w).sum() / w.sum()


def test_cross_entropy_ignores_pixels_and_weights_classes():
    logits, labels = _batch()
    loss_cfg = config_lib.LossConfig(kind="ce")
    got = segmentation_loss(tf.constant(logits), tf.constant(labels), loss_cfg, 3, 255, 4)
    assert float(got["loss"]) == pytest.approx(_manual_ce(logits, labels), rel=1e-5)
    weighted = config_lib.LossConfig(kind="ce", class_weights=(0.5, 1.0, 3.0))
    got = segmentation_loss(tf.constant(logits), tf.constant(labels), weighted, 3, 255, 4)
    assert float(got["loss"]) == pytest.approx(
        _manual_ce(logits, labels, [0.5, 1.0, 3.0]), rel=1e-5
    )


def test_dice_is_zero_for_perfect_and_summed_with_ce():
    _, labels = _batch(k=3)
    labels = np.where(labels == 255, 0, labels)
    perfect = tf.one_hot(labels, 3) * 40.0
    valid = tf.ones(labels.shape)
    assert np.allclose(
        dice_per_image(perfect, tf.constant(labels), valid, 3).numpy(), 0.0, atol=1e-4
    )
    logits, labels = _batch(seed=1)
    both = segmentation_loss(
        tf.constant(logits),
        tf.constant(labels),
        config_lib.LossConfig(kind="ce+dice", dice_weight=0.5),
        3,
        255,
        4,
    )
    assert 0 < float(both["dice"]) < 1
    assert float(both["loss"]) == pytest.approx(
        float(both["ce"]) + 0.5 * float(both["dice"]), rel=1e-6
    )


SCRIPT = textwrap.dedent("""
    import json, numpy as np, tensorflow as tf
    tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
        [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    from keras_suite.apps.segmentation.config import LossConfig
    from keras_suite.apps.segmentation.losses import segmentation_loss
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (4, 8, 8, 3)).astype(np.float32)
    labels = rng.integers(0, 3, (4, 8, 8)).astype(np.int32)
    labels[:2][rng.random((2, 8, 8)) < 0.8] = 255   # replica 0 holds far fewer labelled pixels
    cfg = LossConfig(kind="ce+dice")
    single = segmentation_loss(tf.constant(logits), tf.constant(labels), cfg, 3, 255, 4)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    ds = tf.data.Dataset.from_tensor_slices((logits, labels)).batch(4)
    batch = next(iter(strategy.experimental_distribute_dataset(ds)))
    out = strategy.run(tf.function(lambda l, y: segmentation_loss(l, y, cfg, 3, 255, 4)), args=batch)
    summed = {k: float(strategy.reduce("SUM", v, axis=None)) for k, v in out.items()}
    print(json.dumps({"single": {k: float(v) for k, v in single.items()}, "mirrored": summed}))
""")


def test_loss_over_two_replicas_equals_one_device():
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        env=subprocess_env(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("ce", "dice", "loss"):
        assert result["mirrored"][key] == pytest.approx(result["single"][key], rel=1e-5), key
