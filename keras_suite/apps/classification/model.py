"""Classifiers: a ResNet-style CNN, a MobileNetV2-style CNN, or a keras-hub backbone.

All take float32 images in 0..255 (rescaling is inside the model, so serving clients send
plain pixels) and return float32 logits, whatever the mixed-precision policy.
"""

from __future__ import annotations

from keras_suite import common
from keras_suite.common.batchnorm import FusedBatchNormalization
from keras_suite.common.finetune import freeze_batch_norm, load_backbone, preprocess
from keras_suite.common.training import sync_batch_norm

common.quiet_import_tensorflow()
import keras  # noqa: E402
from keras import layers  # noqa: E402

# Moving statistics follow the weights faster than Keras' 0.99 default: short runs (smoke,
# fine-tuning) otherwise evaluate with nearly-initial statistics and look untrained.
BN_MOMENTUM = 0.9


def _make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of 8 (keeps vector units busy), never below 90%."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


def _conv_bn(x, filters, kernel=3, strides=1, activation="relu", name=None):
    x = layers.Conv2D(
        filters, kernel, strides, padding="same", use_bias=False, name=name and f"{name}_conv"
    )(x)
    x = FusedBatchNormalization(
        momentum=BN_MOMENTUM, synchronized=sync_batch_norm(), name=name and f"{name}_bn"
    )(x)
    return layers.Activation(activation, name=name and f"{name}_act")(x) if activation else x


def _residual_block(x, filters, strides, name):
    """The basic ResNet block: two 3x3 convs, projection shortcut when the shape changes."""
    shortcut = x
    y = _conv_bn(x, filters, 3, strides, name=f"{name}_a")
    y = _conv_bn(y, filters, 3, 1, activation=None, name=f"{name}_b")
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, 1, strides, activation=None, name=f"{name}_proj")
    return layers.Activation("relu", name=f"{name}_out")(
        layers.Add(name=f"{name}_add")([y, shortcut])
    )


def resnet(inputs, cfg):
    filters = _make_divisible(cfg.base_filters * cfg.width)
    x = _conv_bn(inputs, filters, 3, 1, name="stem")
    for stage, count in enumerate(cfg.blocks):
        for block in range(count):
            strides = 2 if block == 0 else 1
            x = _residual_block(
                x, filters * 2**stage, strides, f"stage{stage + 1}_block{block + 1}"
            )
    return x


def _inverted_residual(x, expansion, filters, strides, name):
    """MobileNetV2 block: 1x1 expand -> 3x3 depthwise -> 1x1 linear bottleneck."""
    in_ch = x.shape[-1]
    y = x
    if expansion != 1:
        y = _conv_bn(y, in_ch * expansion, 1, activation="relu6", name=f"{name}_expand")
    y = layers.DepthwiseConv2D(3, strides, padding="same", use_bias=False, name=f"{name}_dw")(y)
    y = FusedBatchNormalization(
        momentum=BN_MOMENTUM, synchronized=sync_batch_norm(), name=f"{name}_dw_bn"
    )(y)
    y = layers.Activation("relu6", name=f"{name}_dw_act")(y)
    y = _conv_bn(y, filters, 1, activation=None, name=f"{name}_project")
    if strides == 1 and in_ch == filters:
        y = layers.Add(name=f"{name}_add")([x, y])
    return y


# (expansion, channels, repeats, first stride) — MobileNetV2's table, trimmed for small images
MOBILENET_V2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 3, 2), (6, 96, 2, 1))


def mobilenet_v2(inputs, cfg):
    x = _conv_bn(inputs, _make_divisible(32 * cfg.width), 3, 1, activation="relu6", name="stem")
    for s, (t, c, n, stride) in enumerate(MOBILENET_V2_STAGES):
        for i in range(n):
            x = _inverted_residual(
                x,
                t,
                _make_divisible(c * cfg.width),
                stride if i == 0 else 1,
                f"block{s + 1}_{i + 1}",
            )
    return _conv_bn(
        x, _make_divisible(max(1.0, cfg.width) * 384), 1, activation="relu6", name="head"
    )


def hub_backbone(inputs, cfg, frozen_batch_norm: bool = False):
    """A keras-hub backbone (common/finetune.py): a preset name or a local preset folder.
    Fine-tuning keeps its batch norm in inference mode (the pretrained statistics)."""
    backbone = load_backbone(cfg.arch, cfg.pretrained)
    if frozen_batch_norm:
        freeze_batch_norm(backbone)
    return backbone(inputs)


def build_classifier(
    cfg, image_size: int, num_classes: int, frozen_batch_norm: bool = False
) -> keras.Model:
    inputs = keras.Input((image_size, image_size, 3), name="images", dtype="float32")
    # hub backbones: the preset's own image converter; else Rescaling(1/255)
    x = preprocess(inputs, cfg.arch)
    if cfg.arch.startswith("hub:"):
        x = hub_backbone(x, cfg, frozen_batch_norm)
    else:
        x = {"resnet": resnet, "mobilenetv2": mobilenet_v2}[cfg.arch](x, cfg)
    if len(x.shape) == 4:
        x = layers.GlobalAveragePooling2D(name="pool")(x)
    if cfg.dropout:
        x = layers.Dropout(cfg.dropout, name="dropout")(x)
    logits = layers.Dense(num_classes, dtype="float32", name="logits")(x)
    arch = "hub" if cfg.arch.startswith("hub:") else cfg.arch
    return keras.Model(inputs, logits, name=f"classifier_{arch}")
