"""Box maths in TensorFlow: decoding the distance distributions, IoU and complete IoU."""

from __future__ import annotations

import math

from keras_suite import common

tf = common.quiet_import_tensorflow()


def split_predictions(raw, reg_max: int):
    """[B, A, 4*reg_max + C] -> distance logits [B, A, 4, reg_max], class logits [B, A, C]."""
    dist = raw[..., : 4 * reg_max]
    shape = tf.shape(raw)
    dist = tf.reshape(dist, tf.stack([shape[0], shape[1], 4, reg_max]))
    return dist, raw[..., 4 * reg_max :]


def decode_boxes(dist_logits, anchors, strides):
    """Expected distance of each side (softmax over bins) -> x1, y1, x2, y2 in pixels.

    anchors: [A, 2] cell centres in pixels; strides: [A] pixels per grid unit.
    """
    reg_max = dist_logits.shape[-1]
    bins = tf.range(reg_max, dtype=tf.float32)
    ltrb = tf.reduce_sum(tf.nn.softmax(dist_logits, -1) * bins, -1)  # grid units
    ltrb = ltrb * strides[:, None]
    xy1 = anchors - ltrb[..., :2]
    xy2 = anchors + ltrb[..., 2:]
    return tf.concat([xy1, xy2], -1)


def box_iou(a, b, eps=1e-7):
    """Element-wise IoU of broadcastable [..., 4] x1y1x2y2 boxes."""
    iw = tf.maximum(tf.minimum(a[..., 2], b[..., 2]) - tf.maximum(a[..., 0], b[..., 0]), 0.0)
    ih = tf.maximum(tf.minimum(a[..., 3], b[..., 3]) - tf.maximum(a[..., 1], b[..., 1]), 0.0)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / (area_a + area_b - inter + eps)


def box_ciou(a, b, eps=1e-7):
    """Complete IoU (Zheng et al. 2020): IoU - centre distance / enclosing diagonal - a*v."""
    iou = box_iou(a, b, eps)
    cw = tf.maximum(a[..., 2], b[..., 2]) - tf.minimum(a[..., 0], b[..., 0])
    ch = tf.maximum(a[..., 3], b[..., 3]) - tf.minimum(a[..., 1], b[..., 1])
    diag2 = cw**2 + ch**2 + eps
    dx = (a[..., 0] + a[..., 2] - b[..., 0] - b[..., 2]) / 2
    dy = (a[..., 1] + a[..., 3] - b[..., 1] - b[..., 3]) / 2
    rho2 = dx**2 + dy**2
    wa, ha = a[..., 2] - a[..., 0], a[..., 3] - a[..., 1] + eps
    wb, hb = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1] + eps
    v = (4 / math.pi**2) * (tf.atan(wb / hb) - tf.atan(wa / ha)) ** 2
    alpha = tf.stop_gradient(v / (v - iou + (1 + eps)))
    return iou - rho2 / diag2 - alpha * v
