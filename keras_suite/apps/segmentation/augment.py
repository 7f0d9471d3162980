"""Augmentation that moves an image and its mask together, inside the training step.

One random affine map per example (flips, zoom in/out with a random crop position, a
small rotation) applied with ImageProjectiveTransformV3: bilinear for the image, nearest
neighbour for the mask, so no class id is ever blended. Both fill by reflection, so a
shape cut at the border continues as its mirror image with the right labels. The
randomness is stateless and seeded by the step (`StepContext.seed`), so a resumed run
augments exactly as the interrupted one would have.
"""

from __future__ import annotations

import math

from keras_suite import common

tf = common.quiet_import_tensorflow()


def random_affine(batch: int, size: int, seed, dcfg):
    """[batch, 8] projective transforms (output pixel -> input pixel)."""
    seeds = tf.random.experimental.stateless_split(seed, 5)
    uniform = lambda i, lo, hi: tf.random.stateless_uniform([batch], seeds[i], lo, hi)  # noqa: E731
    ones = tf.ones([batch])
    if dcfg.flip:
        fx = tf.where(uniform(0, 0.0, 1.0) < 0.5, -ones, ones)
        fy = tf.where(uniform(1, 0.0, 1.0) < 0.5, -ones, ones)
    else:
        fx = fy = ones
    low, high = dcfg.scale
    zoom = tf.exp(uniform(2, math.log(low), math.log(high)))  # > 1: zoom in
    theta = uniform(3, -1.0, 1.0) * dcfg.rotation * math.pi / 180.0
    # when zoomed in, the crop may sit anywhere inside the image
    room = tf.maximum(0.0, 1.0 - 1.0 / zoom) * size / 2.0
    shift = tf.random.stateless_uniform([2, batch], seeds[4], -1.0, 1.0) * room
    c, s = tf.cos(theta) / zoom, tf.sin(theta) / zoom
    # input = centre + R(theta) diag(fx, fy) / zoom (output - centre) + shift
    a0, a1 = c * fx, -s * fy
    b0, b1 = s * fx, c * fy
    centre = (size - 1) / 2.0
    a2 = centre - a0 * centre - a1 * centre + shift[0]
    b2 = centre - b0 * centre - b1 * centre + shift[1]
    zeros = tf.zeros([batch])
    return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], 1)


def augment(images, masks, seed, dcfg):
    """images float32 [N, S, S, 3], masks integer [N, S, S] -> both transformed alike."""
    size = images.shape[1]
    batch = tf.shape(images)[0]
    transforms = random_affine(batch, size, seed, dcfg)
    shape = tf.constant([size, size], tf.int32)

    def warp(x, interpolation):
        return tf.raw_ops.ImageProjectiveTransformV3(
            images=x,
            transforms=transforms,
            output_shape=shape,
            fill_value=0.0,
            interpolation=interpolation,
            fill_mode="REFLECT",
        )

    images = warp(images, "BILINEAR")
    masks = warp(tf.cast(masks[..., None], tf.float32), "NEAREST")[..., 0]
    return images, tf.cast(masks, tf.int32)
