"""Fully convolutional segmentation networks: U-Net and DeepLabV3+.

Both take float32 images in 0..255 of a fixed square size (rescaling is inside the
model, so serving clients send plain pixels) and return float32 per-pixel logits
[N, H, W, num_classes] at the input resolution, whatever the mixed-precision policy.
"""

from __future__ import annotations

from keras_suite import common
from keras_suite.common.batchnorm import FusedBatchNormalization
from keras_suite.common.errors import UserError
from keras_suite.common.finetune import (
    BACKBONE_LAYER,
    freeze_batch_norm,
    load_backbone,
    preprocess,
)
from keras_suite.common.training import sync_batch_norm

common.quiet_import_tensorflow()
import keras  # noqa: E402
from keras import layers  # noqa: E402

BN_MOMENTUM = 0.9  # short runs otherwise evaluate with nearly-initial moving statistics


def _channels(value: float) -> int:
    """Round to a multiple of 8 (vector units), at least 8."""
    return max(8, int(value + 4) // 8 * 8)


def conv_bn(
    x, filters, kernel=3, strides=1, dilation=1, activation="relu", name=None, depthwise=False
):
    if depthwise:  # depthwise 3x3 + pointwise 1x1: the cheap 3x3 of DeepLabV3+'s decoder/ASPP
        x = layers.DepthwiseConv2D(
            kernel,
            strides,
            padding="same",
            dilation_rate=dilation,
            use_bias=False,
            name=f"{name}_dw",
        )(x)
        x = FusedBatchNormalization(
            momentum=BN_MOMENTUM, synchronized=sync_batch_norm(), name=f"{name}_dw_bn"
        )(x)
        x = layers.Activation("relu", name=f"{name}_dw_act")(x)
        kernel, dilation, strides = 1, 1, 1
    x = layers.Conv2D(
        filters,
        kernel,
        strides,
        padding="same",
        dilation_rate=dilation,
        use_bias=False,
        name=f"{name}_conv",
    )(x)
    x = FusedBatchNormalization(
        momentum=BN_MOMENTUM, synchronized=sync_batch_norm(), name=f"{name}_bn"
    )(x)
    return layers.Activation(activation, name=f"{name}_act")(x) if activation else x


# ---- U-Net ---------------------------------------------------------------------------


def unet(inputs, cfg, num_classes: int):
    """Ronneberger et al. 2015 with batch norm and 'same' padding: an encoder of
    conv-conv-pool levels, a decoder that upsamples (transposed conv or bilinear resize +
    conv, by config) and concatenates the encoder feature of the same resolution."""
    filters = [_channels(cfg.base_filters * cfg.width * 2**i) for i in range(cfg.depth + 1)]
    x, skips = inputs, []
    for level in range(cfg.depth):
        x = conv_bn(x, filters[level], name=f"enc{level}_a")
        x = conv_bn(x, filters[level], name=f"enc{level}_b")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"enc{level}_pool")(x)
    x = conv_bn(x, filters[-1], name="bottleneck_a")
    x = conv_bn(x, filters[-1], name="bottleneck_b")
    if cfg.dropout:
        x = layers.Dropout(cfg.dropout, name="bottleneck_dropout")(x)
    for level in reversed(range(cfg.depth)):
        if cfg.upsampling == "transpose":
            x = layers.Conv2DTranspose(filters[level], 2, strides=2, name=f"dec{level}_up")(x)
        else:  # resize-conv: no checkerboard artefacts (Odena et al. 2016)
            x = layers.UpSampling2D(2, interpolation="bilinear", name=f"dec{level}_up")(x)
            x = conv_bn(x, filters[level], name=f"dec{level}_upconv")
        x = layers.Concatenate(name=f"dec{level}_concat")([x, skips[level]])
        x = conv_bn(x, filters[level], name=f"dec{level}_a")
        x = conv_bn(x, filters[level], name=f"dec{level}_b")
    return layers.Conv2D(num_classes, 1, dtype="float32", name="logits")(x)


# ---- DeepLabV3+ ----------------------------------------------------------------------


def _residual(x, filters, strides, dilation, name):
    """ResNet basic block; dilated instead of strided once the output stride is reached."""
    y = conv_bn(x, filters, 3, strides, dilation, name=f"{name}_a")
    y = conv_bn(y, filters, 3, 1, dilation, activation=None, name=f"{name}_b")
    if strides != 1 or x.shape[-1] != filters:
        x = conv_bn(x, filters, 1, strides, activation=None, name=f"{name}_proj")
    return layers.Activation("relu", name=f"{name}_out")(layers.Add(name=f"{name}_add")([x, y]))


def deeplabv3plus(inputs, cfg, num_classes: int):
    """Chen et al. 2018: a ResNet backbone with atrous convolutions (output stride 8 or
    16), atrous spatial pyramid pooling (1x1, three dilated 3x3, image pooling), and a
    decoder that joins the upsampled ASPP features with stride-4 low-level features."""
    size = inputs.shape[1]
    c = lambda n: _channels(n * cfg.width)  # noqa: E731
    x = conv_bn(inputs, c(16), 3, 2, name="stem_a")  # stride 2
    x = conv_bn(x, c(32), 3, 1, name="stem_b")
    stride, dilation = 2, 1
    low_level = None
    for stage, (filters, blocks) in enumerate(((32, 1), (64, 2), (96, 2), (128, 2))):
        for block in range(blocks):
            strides = 1
            if block == 0 and stage > 0 or (stage == 0 and block == 0):
                if stride < cfg.output_stride:
                    strides, stride = 2, stride * 2
                elif block == 0:
                    dilation *= 2
            x = _residual(x, c(filters), strides, dilation, f"stage{stage + 1}_block{block + 1}")
        if stride == 4 and low_level is None:
            low_level = x
    return aspp_decoder(x, low_level, size, cfg, num_classes)


def aspp_decoder(x, low_level, size: int, cfg, num_classes: int):
    """DeepLabV3+'s head: ASPP on the deep features `x`, joined with the stride-4
    `low_level` features, logits upsampled to the input `size`."""
    c = lambda n: _channels(n * cfg.width)  # noqa: E731
    feature = x.shape[1]
    # ASPP
    branches = [conv_bn(x, c(96), 1, name="aspp_1x1")]
    for rate in cfg.atrous_rates:
        branches.append(
            conv_bn(x, c(96), 3, dilation=rate, name=f"aspp_rate{rate}", depthwise=True)
        )
    pooled = layers.GlobalAveragePooling2D(keepdims=True, name="aspp_pool")(x)
    pooled = conv_bn(pooled, c(96), 1, name="aspp_pool_proj")
    branches.append(layers.UpSampling2D(feature, name="aspp_pool_up")(pooled))
    x = layers.Concatenate(name="aspp_concat")(branches)
    x = conv_bn(x, c(96), 1, name="aspp_out")
    if cfg.dropout:
        x = layers.Dropout(cfg.dropout, name="aspp_dropout")(x)
    # decoder
    up = low_level.shape[1] // x.shape[1]
    x = layers.UpSampling2D(up, interpolation="bilinear", name="decoder_up")(x)
    low = conv_bn(low_level, c(32), 1, name="decoder_low")
    x = layers.Concatenate(name="decoder_concat")([x, low])
    x = conv_bn(x, c(96), 3, name="decoder_a", depthwise=True)
    x = conv_bn(x, c(96), 3, name="decoder_b", depthwise=True)
    x = layers.Conv2D(num_classes, 1, dtype="float32", name="logits_low")(x)
    up = size // x.shape[1]
    return layers.UpSampling2D(up, interpolation="bilinear", dtype="float32", name="logits")(x)


def hub_deeplabv3plus(x, cfg, num_classes: int, frozen_batch_norm: bool):
    """DeepLabV3+ on a keras-hub backbone (common/finetune.py): a ResNet-family preset's
    feature pyramid (P2 low-level, ASPP on P3 or P4 for output stride 8 or 16), or a
    DeepLabV3 preset's own decoder features with new logits."""
    import keras_hub

    size = x.shape[1]
    backbone = load_backbone(cfg.backbone, cfg.pretrained)
    if frozen_batch_norm:
        freeze_batch_norm(backbone)
    if isinstance(backbone, keras_hub.models.DeepLabV3Backbone):
        features = backbone(x)
        logits = layers.Conv2D(num_classes, 1, dtype="float32", name="logits_low")(features)
        return layers.Resizing(size, size, dtype="float32", name="logits")(logits)
    pyramid = getattr(backbone, "pyramid_outputs", None) or {}
    deep = f"P{cfg.output_stride.bit_length() - 1}"
    if "P2" not in pyramid or deep not in pyramid:
        raise UserError(
            f"model.backbone={cfg.backbone!r} has no feature pyramid with P2 and {deep} "
            f"(it has {sorted(pyramid) or 'none'}); use a ResNet-family preset such as "
            "hub:resnet_18_imagenet, or a DeepLabV3 preset"
        )
    # the backbone up to the two levels the head reads, as one layer named "backbone"
    encoder = keras.Model(backbone.inputs, [pyramid["P2"], pyramid[deep]], name=BACKBONE_LAYER)
    low_level, features = encoder(x)
    return aspp_decoder(features, low_level, size, cfg, num_classes)


def build_segmenter(
    cfg, image_size: int, num_classes: int, frozen_batch_norm: bool = False
) -> keras.Model:
    inputs = keras.Input((image_size, image_size, 3), name="images", dtype="float32")
    if cfg.backbone:  # the preset's image converter, then its backbone
        x = preprocess(inputs, cfg.backbone)
        logits = hub_deeplabv3plus(x, cfg, num_classes, frozen_batch_norm)
        return keras.Model(inputs, logits, name=f"{cfg.arch}_hub")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    body = {"unet": unet, "deeplabv3plus": deeplabv3plus}[cfg.arch]
    logits = body(x, cfg, num_classes)
    return keras.Model(inputs, logits, name=cfg.arch)
