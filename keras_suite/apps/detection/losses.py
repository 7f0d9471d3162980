"""YOLOv8 training targets and loss: task-aligned assignment, BCE, CIoU and DFL.

Ground truth comes padded: boxes [B, M, 4] (x1y1x2y2 pixels), classes [B, M] with -1 on
padding rows. Everything is dense tensor maths with static shapes (no boolean gathers),
so the step compiles once and runs under any tf.distribute strategy.
"""

from __future__ import annotations

from keras_suite import common
from keras_suite.apps.detection.boxes import box_ciou, box_iou, decode_boxes, split_predictions

tf = common.quiet_import_tensorflow()


def assign(
    scores,
    pred_boxes,
    anchors,
    gt_boxes,
    gt_classes,
    num_classes,
    topk=10,
    alpha=0.5,
    beta=6.0,
    eps=1e-9,
    overlap="iou",
):
    """Task-aligned assigner (Feng et al., TOOD 2021, as used by YOLOv8).

    For every ground-truth box, the anchors whose centre lies inside it are ranked by
    alignment = score(class)**alpha * IoU**beta and the top k become positives; an anchor
    claimed by several boxes keeps the one it overlaps most. The soft class target is the
    alignment normalised so that each box's best anchor gets that anchor's IoU.

    `overlap` ranks by plain IoU ("iou") or by CIoU clamped at 0 ("ciou", as Ultralytics'
    YOLOv8 does). Returns target_boxes [B, A, 4], target_scores [B, A, C], fg_mask [B, A].
    """
    valid = tf.cast(gt_classes >= 0, tf.float32)  # [B, M]
    cls = tf.maximum(gt_classes, 0)
    # anchor centre strictly inside the gt box: [B, M, A]
    ax, ay = anchors[None, None, :, 0], anchors[None, None, :, 1]
    g = gt_boxes[:, :, None, :]
    inside = (
        tf.minimum(
            tf.minimum(ax - g[..., 0], ay - g[..., 1]), tf.minimum(g[..., 2] - ax, g[..., 3] - ay)
        )
        > eps
    )
    candidates = tf.cast(inside, tf.float32) * valid[:, :, None]
    measure = box_ciou if overlap == "ciou" else box_iou
    overlaps = tf.maximum(measure(g, pred_boxes[:, None, :, :]), 0.0) * candidates
    cls_scores = tf.gather(tf.transpose(scores, [0, 2, 1]), cls, axis=1, batch_dims=1)  # [B, M, A]
    align = tf.pow(cls_scores, alpha) * tf.pow(overlaps, beta) * candidates
    num_anchors = tf.shape(anchors)[0]
    _, top_idx = tf.math.top_k(align, k=topk)
    in_topk = tf.reduce_sum(tf.one_hot(top_idx, num_anchors), axis=2)  # [B, M, A]
    pos = tf.minimum(in_topk, 1.0) * candidates
    # an anchor assigned to several boxes keeps the box with the highest IoU
    multi = tf.reduce_sum(pos, axis=1, keepdims=True) > 1
    best = tf.one_hot(tf.argmax(overlaps, axis=1), tf.shape(gt_boxes)[1], axis=1)
    pos = tf.where(multi, best, pos)
    fg = tf.reduce_max(pos, axis=1)  # [B, A]
    gt_idx = tf.argmax(pos, axis=1)  # [B, A]
    target_boxes = tf.gather(gt_boxes, gt_idx, batch_dims=1)
    target_cls = tf.gather(cls, gt_idx, batch_dims=1)
    align = align * pos
    norm = (
        align
        * tf.reduce_max(overlaps * pos, axis=2, keepdims=True)
        / (tf.reduce_max(align, axis=2, keepdims=True) + eps)
    )
    norm = tf.reduce_max(norm, axis=1)  # [B, A]
    target_scores = tf.one_hot(target_cls, num_classes) * (fg * norm)[..., None]
    return tf.stop_gradient(target_boxes), tf.stop_gradient(target_scores), tf.stop_gradient(fg)


def dfl_loss(dist_logits, target_ltrb, reg_max):
    """Distribution focal loss: cross-entropy to the two bins around the target distance."""
    t = tf.clip_by_value(target_ltrb, 0.0, reg_max - 1 - 0.01)
    left = tf.floor(t)
    w_left = left + 1 - t
    left_i = tf.cast(left, tf.int32)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits
    loss = ce(labels=left_i, logits=dist_logits) * w_left + ce(
        labels=left_i + 1, logits=dist_logits
    ) * (1 - w_left)
    return tf.reduce_mean(loss, -1)  # [B, A]


def detection_loss(raw, gt_boxes, gt_classes, anchors, strides, num_classes, reg_max, cfg):
    """Returns (total, parts) where parts = {box, cls, dfl}; each normalised by the sum of
    the soft class targets, as in YOLOv8."""
    raw = tf.cast(raw, tf.float32)
    dist, cls_logits = split_predictions(raw, reg_max)
    pred_boxes = decode_boxes(dist, anchors, strides)
    scores = tf.sigmoid(cls_logits)
    t_boxes, t_scores, fg = assign(
        tf.stop_gradient(scores),
        tf.stop_gradient(pred_boxes),
        anchors,
        gt_boxes,
        gt_classes,
        num_classes,
        cfg.topk,
        cfg.alpha,
        cfg.beta,
        overlap=cfg.assigner_overlap,
    )
    norm = tf.maximum(tf.reduce_sum(t_scores), 1.0)
    cls_loss = (
        tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=t_scores, logits=cls_logits))
        / norm
    )
    weight = tf.reduce_sum(t_scores, -1) * fg  # [B, A]
    ciou = box_ciou(pred_boxes, t_boxes)
    box_loss = tf.reduce_sum((1.0 - ciou) * weight) / norm
    target_ltrb = (
        tf.concat([anchors - t_boxes[..., :2], t_boxes[..., 2:] - anchors], -1) / strides[:, None]
    )
    dfl = tf.reduce_sum(dfl_loss(dist, target_ltrb, reg_max) * weight) / norm
    total = cfg.box * box_loss + cfg.cls * cls_loss + cfg.dfl * dfl
    return total, {"box": box_loss, "cls": cls_loss, "dfl": dfl}
