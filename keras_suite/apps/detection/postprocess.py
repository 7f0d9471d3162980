"""From raw predictions to a fixed number of detections, in graph.

Class-aware NMS is done one class at a time with `NonMaxSuppressionV5` padded to a fixed
size (a TFLite builtin, unlike CombinedNonMaxSuppression). We do not use the common
"offset boxes by class id" trick: under int8 quantization the offset boxes would share
one scale spanning all classes and lose their pixel precision.
"""

from __future__ import annotations

from keras_suite import common
from keras_suite.apps.detection.boxes import split_predictions
from keras_suite.apps.detection.model import STRIDES, anchor_points

tf = common.quiet_import_tensorflow()


def decode_clipped(dist_logits, image_size: int):
    """Distance distributions [B, A, 4, R] -> boxes [B, A, 4] x1y1x2y2, clipped to the image.

    The same boxes as `boxes.decode_boxes` (inside the image), computed so that an int8
    TFLite model keeps them: one scale at a time, the bin expectation as a matmul, and each
    distance clipped at the image edge before it is added to the cell centre. Decoding all
    scales at once put 0..480 px distances and the 0..15 bin expectation into tensors the
    converter quantized with one 1.9-unit step, which cost the int8 model 42 points of mAP@.5."""
    points_all, _ = anchor_points(image_size)
    reg_max = dist_logits.shape[-1]
    bins = tf.range(reg_max, dtype=tf.float32)[:, None]
    corners, start = [], 0
    for stride in STRIDES:
        count = (image_size // stride) ** 2
        points = points_all[start : start + count]
        dist = dist_logits[:, start : start + count]
        start += count
        probs = tf.reshape(tf.nn.softmax(dist, -1), [-1, reg_max])
        grid = tf.reshape(tf.matmul(probs, bins), [-1, count, 4])  # expected bin per side
        ltrb = grid * float(stride)
        lt = tf.minimum(ltrb[..., :2], points)
        rb = tf.minimum(ltrb[..., 2:], image_size - points)
        corners.append(tf.concat([points - lt, points + rb], -1))
    return tf.concat(corners, 1)


def decode(raw, image_size: int, reg_max: int):
    """raw [B, A, 4*reg_max + C] -> boxes [B, A, 4] pixels, class scores [B, A, C]."""
    dist, cls_logits = split_predictions(tf.cast(raw, tf.float32), reg_max)
    return decode_clipped(dist, image_size), tf.sigmoid(cls_logits)


def nms_single(
    boxes,
    scores,
    num_classes: int,
    max_detections: int,
    pre_nms_topk: int,
    iou_threshold: float,
    score_threshold: float,
):
    """One image: boxes [A, 4], scores [A, C] -> (boxes [D, 4], scores [D], classes [D] int32,
    count int32). Rows past `count` are zeros (classes -1)."""
    best = tf.reduce_max(scores, -1)
    label = tf.argmax(scores, -1, output_type=tf.int32)
    k = min(pre_nms_topk, boxes.shape[0])
    top_scores, top_idx = tf.math.top_k(best, k=k)
    cand_boxes = tf.gather(boxes, top_idx)
    cand_labels = tf.gather(label, top_idx)
    per_class = min(max_detections, k)
    all_boxes, all_scores, all_labels = [], [], []
    for c in range(num_classes):
        s = tf.where(cand_labels == c, top_scores, tf.zeros_like(top_scores))
        # NMS is symmetric in x/y, so the x1y1x2y2 order is fine.
        idx, _, valid = tf.raw_ops.NonMaxSuppressionV5(
            boxes=cand_boxes,
            scores=s,
            max_output_size=per_class,
            iou_threshold=iou_threshold,
            score_threshold=score_threshold,
            soft_nms_sigma=0.0,
            pad_to_max_output_size=True,
        )
        keep = tf.range(per_class) < valid
        all_boxes.append(tf.gather(cand_boxes, idx))
        all_scores.append(tf.where(keep, tf.gather(s, idx), -1.0))
        all_labels.append(tf.fill([per_class], c))
    short = max_detections - num_classes * per_class
    if short > 0:  # fewer candidates than output rows (one class, tiny images): pad with empties
        all_boxes.append(tf.zeros([short, 4]))
        all_scores.append(tf.fill([short], -1.0))
        all_labels.append(tf.fill([short], -1))
    merged_scores = tf.concat(all_scores, 0)
    final_scores, order = tf.math.top_k(merged_scores, k=max_detections)
    valid = final_scores > 0
    count = tf.reduce_sum(tf.cast(valid, tf.int32))
    out_boxes = tf.where(valid[:, None], tf.gather(tf.concat(all_boxes, 0), order), 0.0)
    out_classes = tf.where(valid, tf.gather(tf.concat(all_labels, 0), order), -1)
    return out_boxes, tf.maximum(final_scores, 0.0), out_classes, count


def postprocess(raw, image_size, reg_max, num_classes, post, score_threshold=None):
    """Batched: map `nms_single` over images. Returns a dict of [B, D...] tensors."""
    boxes, scores = decode(raw, image_size, reg_max)
    thr = post.score_threshold if score_threshold is None else score_threshold

    def one(args):
        return nms_single(
            args[0],
            args[1],
            num_classes,
            post.max_detections,
            post.pre_nms_topk,
            post.iou_threshold,
            thr,
        )

    b, s, c, n = tf.map_fn(
        one,
        (boxes, scores),
        fn_output_signature=(
            tf.TensorSpec([post.max_detections, 4], tf.float32),
            tf.TensorSpec([post.max_detections], tf.float32),
            tf.TensorSpec([post.max_detections], tf.int32),
            tf.TensorSpec([], tf.int32),
        ),
    )
    return {"boxes": b, "scores": s, "classes": c, "num_detections": n}
