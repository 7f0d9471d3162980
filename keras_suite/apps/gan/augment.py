"""Differentiable augmentation of the discriminator's inputs (DiffAugment, Zhao et al. 2020).

The same random transform family is applied to real AND generated images, in the
discriminator step and in the generator step (gradients flow through it to G), so the
generator is not pushed to produce augmented-looking images while the discriminator
sees many more distinct inputs and overfits less. Policies (`stability.augment`, comma
separated; the paper's settings for images in [-1, 1]):

    color        brightness + U(-0.5, 0.5); saturation x U(0, 2); contrast x U(0.5, 1.5)
    translation  shift by up to 1/8 of the side, zero (grey) fill
    cutout       a zero square of half the side at a random place

Every draw is per example and stateless (from the step's seed): a per-example penalty
(R1, WGAN-GP) stays exact, replicas draw differently and a resumed run draws the same.
"""

from __future__ import annotations

from keras_suite import common
from keras_suite.apps.gan.config import augment_policies

tf = common.quiet_import_tensorflow()


def _uniform(shape, seed, salt, lo=0.0, hi=1.0):
    # salts 1..7 offset the caller's seed; the train step spaces its augment salts by 10
    return tf.random.stateless_uniform(
        shape, seed + tf.constant([salt, 0], tf.int64), minval=lo, maxval=hi
    )


def _color(x, seed):
    n = tf.shape(x)[0]
    x = x + _uniform([n, 1, 1, 1], seed, 1, -0.5, 0.5)
    mean = tf.reduce_mean(x, axis=3, keepdims=True)
    x = (x - mean) * _uniform([n, 1, 1, 1], seed, 2, 0.0, 2.0) + mean
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    return (x - mean) * _uniform([n, 1, 1, 1], seed, 3, 0.5, 1.5) + mean


def _shift_indices(n, size, max_shift, seed, salt):
    """Per example: source index of every output row (or column), and whether it is inside."""
    shift = (
        tf.cast(tf.floor(_uniform([n, 1], seed, salt, 0.0, 1.0) * (2 * max_shift + 1)), tf.int32)
        - max_shift
    )
    src = tf.range(size)[None, :] - shift  # [n, size]
    inside = (src >= 0) & (src < size)
    return tf.clip_by_value(src, 0, size - 1), inside


def _translation(x, seed, ratio=0.125):
    n, h, w = tf.shape(x)[0], x.shape[1], x.shape[2]
    rows, row_in = _shift_indices(n, h, int(h * ratio + 0.5), seed, 4)
    cols, col_in = _shift_indices(n, w, int(w * ratio + 0.5), seed, 5)
    x = tf.gather(x, rows, axis=1, batch_dims=1)
    x = tf.gather(x, cols, axis=2, batch_dims=1)
    mask = tf.cast(row_in[:, :, None] & col_in[:, None, :], x.dtype)[..., None]
    return x * mask


def _cutout(x, seed, ratio=0.5):
    n, h, w = tf.shape(x)[0], x.shape[1], x.shape[2]
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    # centre anywhere so that the square may hang over the border, as in the paper
    cy = tf.cast(tf.floor(_uniform([n, 1], seed, 6) * (h + 1 - ch % 2)), tf.int32)
    cx = tf.cast(tf.floor(_uniform([n, 1], seed, 7) * (w + 1 - cw % 2)), tf.int32)
    ys, xs = tf.range(h)[None, :], tf.range(w)[None, :]
    in_y = (ys >= cy - ch // 2) & (ys < cy - ch // 2 + ch)
    in_x = (xs >= cx - cw // 2) & (xs < cx - cw // 2 + cw)
    keep = 1.0 - tf.cast(in_y[:, :, None] & in_x[:, None, :], x.dtype)
    return x * keep[..., None]


def diff_augment(images, policy, seed):
    """images [N, H, W, C] in [-1, 1] -> augmented, differentiable in `images`."""
    for name in augment_policies(policy):
        images = {"color": _color, "translation": _translation, "cutout": _cutout}[name](
            images, seed
        )
    return images
