"""Per-pixel losses: cross-entropy (optional class weights), soft Dice, or their sum.

Distribution-correct: cross-entropy is averaged over the non-ignored pixels of the whole
global batch (`replica_weighted_mean`, whose denominator is all-reduced), Dice is a
per-image loss averaged over the global batch (`replica_mean`), so summing over replicas
gives exactly what one device would compute on the whole batch.
"""

from __future__ import annotations

from keras_suite import common
from keras_suite.common.training import replica_mean, replica_weighted_mean

tf = common.quiet_import_tensorflow()


def valid_pixels(labels, ignore_index: int):
    """(labels with ignore pixels set to 0, float mask of pixels that count)."""
    labels = tf.cast(labels, tf.int32)
    if ignore_index < 0:
        return labels, tf.ones_like(labels, tf.float32)
    valid = tf.not_equal(labels, ignore_index)
    return tf.where(valid, labels, 0), tf.cast(valid, tf.float32)


def cross_entropy(logits, labels, valid, class_weights=()):
    """Weighted mean over valid pixels of all replicas; weights = valid x class weight."""
    per_pixel = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, tf.cast(logits, tf.float32))
    weights = valid
    if class_weights:
        weights = weights * tf.gather(tf.constant(class_weights, tf.float32), labels)
    return replica_weighted_mean(per_pixel, weights)


def dice_per_image(logits, labels, valid, num_classes: int, smooth: float = 1.0):
    """1 - soft Dice averaged over classes, per image [N] (ignore pixels left out)."""
    probs = tf.nn.softmax(tf.cast(logits, tf.float32)) * valid[..., None]
    onehot = tf.one_hot(labels, num_classes) * valid[..., None]
    inter = tf.reduce_sum(probs * onehot, [1, 2])
    denom = tf.reduce_sum(probs, [1, 2]) + tf.reduce_sum(onehot, [1, 2])
    return 1.0 - tf.reduce_mean((2.0 * inter + smooth) / (denom + smooth), -1)


def segmentation_loss(
    logits, labels, loss_cfg, num_classes: int, ignore_index: int, global_batch_size: int
) -> dict:
    """{"loss": total, "ce": ..., "dice": ...} per replica, summing to global values."""
    labels, valid = valid_pixels(labels, ignore_index)
    out = {}
    total = 0.0
    if loss_cfg.kind in ("ce", "ce+dice"):
        weights = tuple(loss_cfg.class_weights)
        if weights and len(weights) != num_classes:
            from keras_suite.common.errors import UserError

            raise UserError(
                f"loss.class_weights has {len(weights)} values for {num_classes} classes"
            )
        out["ce"] = cross_entropy(logits, labels, valid, weights)
        total += out["ce"]
    if loss_cfg.kind in ("dice", "ce+dice"):
        out["dice"] = replica_mean(
            dice_per_image(logits, labels, valid, num_classes), global_batch_size
        )
        total += (loss_cfg.dice_weight if loss_cfg.kind == "ce+dice" else 1.0) * out["dice"]
    out["loss"] = total
    return out
