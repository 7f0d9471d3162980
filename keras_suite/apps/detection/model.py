"""A YOLOv8-style anchor-free detector in Keras 3, readable top to bottom.

backbone: CSP-Darknet with C2f blocks and SPPF -> features at strides 8, 16, 32
neck:     PAN/FPN (top-down then bottom-up paths with C2f blocks)
heads:    decoupled per scale: a box branch predicting a distribution over `reg_max`
          distance bins for each side (left, top, right, bottom) and a class branch.

The model maps float images [B, S, S, 3] in 0..255 to raw predictions
[B, A, 4 * reg_max + num_classes] over all A anchor points of the three scales;
`keras_suite.apps.detection.boxes` decodes them.
"""

from __future__ import annotations

import math

import numpy as np

from keras_suite import common
from keras_suite.common.batchnorm import FusedBatchNormalization
from keras_suite.common.errors import UserError
from keras_suite.common.finetune import (
    BACKBONE_LAYER,
    freeze_batch_norm,
    load_backbone,
    preprocess,
)

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402
from keras import layers  # noqa: E402

STRIDES = (8, 16, 32)
# depth multiple, width multiple, max channels (YOLOv8 n/s/m)
VARIANTS = {"n": (0.33, 0.25, 1024), "s": (0.33, 0.50, 1024), "m": (0.67, 0.75, 768)}


def _channels(c: int, width: float, max_channels: int) -> int:
    return int(math.ceil(min(c, max_channels) * width / 8) * 8)


def _depth(n: int, depth: float) -> int:
    return max(round(n * depth), 1)


def conv(x, filters, kernel=1, stride=1, name=""):
    """Conv2D + BatchNorm + SiLU, the basic YOLO block."""
    if stride > 1:  # explicit padding keeps the output grid identical to PyTorch-style YOLO
        x = layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
    x = layers.Conv2D(
        filters,
        kernel,
        stride,
        padding="valid" if stride > 1 else "same",
        use_bias=False,
        name=f"{name}_conv",
    )(x)
    x = FusedBatchNormalization(momentum=0.97, epsilon=1e-3, name=f"{name}_bn")(x)
    return layers.Activation("silu", name=f"{name}_act")(x)


def bottleneck(x, filters, shortcut, name):
    y = conv(x, filters, 3, name=f"{name}_cv1")
    y = conv(y, filters, 3, name=f"{name}_cv2")
    return layers.Add(name=f"{name}_add")([x, y]) if shortcut else y


def c2f(x, filters, n, shortcut, name):
    """CSP bottleneck with 2 convs: split, run n bottlenecks on one half, concat every stage."""
    hidden = filters // 2
    y = conv(x, 2 * hidden, 1, name=f"{name}_cv1")
    parts = [y[..., :hidden], y[..., hidden:]]
    for i in range(n):
        parts.append(bottleneck(parts[-1], hidden, shortcut, f"{name}_m{i}"))
    y = layers.Concatenate(name=f"{name}_cat")(parts)
    return conv(y, filters, 1, name=f"{name}_cv2")


def sppf(x, filters, name):
    """Spatial pyramid pooling (fast): three chained 5x5 max-pools, concatenated."""
    hidden = x.shape[-1] // 2
    x = conv(x, hidden, 1, name=f"{name}_cv1")
    p1 = layers.MaxPooling2D(5, 1, padding="same", name=f"{name}_p1")(x)
    p2 = layers.MaxPooling2D(5, 1, padding="same", name=f"{name}_p2")(p1)
    p3 = layers.MaxPooling2D(5, 1, padding="same", name=f"{name}_p3")(p2)
    x = layers.Concatenate(name=f"{name}_cat")([x, p1, p2, p3])
    return conv(x, filters, 1, name=f"{name}_cv2")


def hub_pyramid(x, spec: str, pretrained: bool, frozen_batch_norm: bool):
    """P3, P4, P5 (strides 8, 16, 32) of a keras-hub backbone (common/finetune.py), as one
    layer named "backbone"; a backbone without that pyramid is one clear line."""
    backbone = load_backbone(spec, pretrained)
    if frozen_batch_norm:
        freeze_batch_norm(backbone)
    pyramid = getattr(backbone, "pyramid_outputs", None) or {}
    if not {"P3", "P4", "P5"} <= set(pyramid):
        raise UserError(
            f"model.backbone={spec!r} has no feature pyramid P3-P5 (it has "
            f"{sorted(pyramid) or 'none'}); use a ResNet- or CSPDarkNet-family preset such as "
            "hub:resnet_18_imagenet"
        )
    levels = [pyramid[k] for k in ("P3", "P4", "P5")]
    return keras.Model(backbone.inputs, levels, name=BACKBONE_LAYER)(x)


def build_detector(
    num_classes: int,
    variant: str = "n",
    reg_max: int = 16,
    name: str = "yolo_detector",
    backbone: str = "",
    pretrained: bool = False,
    frozen_batch_norm: bool = False,
) -> keras.Model:
    depth, width, max_ch = VARIANTS[variant]
    ch = lambda c: _channels(c, width, max_ch)  # noqa: E731
    dn = lambda n: _depth(n, depth)  # noqa: E731

    # Any square size that is a multiple of 32 runs through the same weights (training at a
    # smaller size first, see data.early_image_size); exports fix it to data.image_size.
    images = keras.Input((None, None, 3), name="images")
    if backbone:  # a keras-hub backbone with its preset's image converter
        p3, p4, x = hub_pyramid(
            preprocess(images, backbone), backbone, pretrained, frozen_batch_norm
        )
        p5 = sppf(x, ch(1024), "b9")
    else:
        x = layers.Rescaling(1.0 / 255.0, name="rescale")(images)
        # --- backbone (CSP-Darknet) ---
        x = conv(x, ch(64), 3, 2, "b0")  # /2
        x = conv(x, ch(128), 3, 2, "b1")  # /4
        x = c2f(x, ch(128), dn(3), True, "b2")
        x = conv(x, ch(256), 3, 2, "b3")  # /8
        p3 = c2f(x, ch(256), dn(6), True, "b4")
        x = conv(p3, ch(512), 3, 2, "b5")  # /16
        p4 = c2f(x, ch(512), dn(6), True, "b6")
        x = conv(p4, ch(1024), 3, 2, "b7")  # /32
        x = c2f(x, ch(1024), dn(3), True, "b8")
        p5 = sppf(x, ch(1024), "b9")
    # --- neck: top-down (FPN) ---
    x = layers.UpSampling2D(2, name="n_up1")(p5)
    x = layers.Concatenate(name="n_cat1")([x, p4])
    n4 = c2f(x, ch(512), dn(3), False, "n1")
    x = layers.UpSampling2D(2, name="n_up2")(n4)
    x = layers.Concatenate(name="n_cat2")([x, p3])
    o3 = c2f(x, ch(256), dn(3), False, "n2")
    # --- neck: bottom-up (PAN) ---
    x = conv(o3, ch(256), 3, 2, "n3")
    x = layers.Concatenate(name="n_cat3")([x, n4])
    o4 = c2f(x, ch(512), dn(3), False, "n4")
    x = conv(o4, ch(512), 3, 2, "n5")
    x = layers.Concatenate(name="n_cat4")([x, p5])
    o5 = c2f(x, ch(1024), dn(3), False, "n6")
    # --- decoupled heads ---
    c_box = max(16, ch(256) // 4, reg_max * 4)
    c_cls = max(ch(256), min(num_classes, 100))
    outputs = []
    for i, feat in enumerate((o3, o4, o5)):
        b = conv(feat, c_box, 3, name=f"h{i}_box1")
        b = conv(b, c_box, 3, name=f"h{i}_box2")
        b = layers.Conv2D(4 * reg_max, 1, name=f"h{i}_box_out", bias_initializer="ones")(b)
        c = conv(feat, c_cls, 3, name=f"h{i}_cls1")
        c = conv(c, c_cls, 3, name=f"h{i}_cls2")
        # Prior: ~0.01 objects per cell of 640/stride px (YOLOv8's class bias initialisation).
        prior = math.log(5 / num_classes / (640 / STRIDES[i]) ** 2)
        c = layers.Conv2D(
            num_classes,
            1,
            name=f"h{i}_cls_out",
            bias_initializer=keras.initializers.Constant(prior),
        )(c)
        y = layers.Concatenate(name=f"h{i}_cat")([b, c])
        outputs.append(layers.Reshape((-1, 4 * reg_max + num_classes), name=f"h{i}_flat")(y))
    out = layers.Concatenate(axis=1, name="predictions", dtype="float32")(outputs)
    return keras.Model(images, out, name=name)


def anchor_points(image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Cell centres (x, y) in pixels and their strides, in the model's output order."""
    points, strides = [], []
    for s in STRIDES:
        n = image_size // s
        ys, xs = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        points.append(np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], 1) * s)
        strides.append(np.full(n * n, s))
    return np.concatenate(points).astype(np.float32), np.concatenate(strides).astype(np.float32)
