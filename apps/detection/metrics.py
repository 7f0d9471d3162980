"""COCO-style average precision, written from the COCO detection evaluation protocol.

For each class and IoU threshold t in 0.50:0.05:0.95: detections of every image (the
`max_detections` highest-scoring per image and class) are matched greedily in score order
to the unmatched ground-truth box of that class with the highest IoU >= t. Over all
images, precision is made monotonically non-increasing and sampled at 101 recall points
(0, 0.01, ..., 1); AP is their mean. Classes without ground truth are left out of the
mean. mAP@[.5:.95] averages over the ten thresholds, mAP@.5 and mAP@.75 take one each.
This is the "all areas" row of pycocotools' summary; tests check the two agree.
"""
from __future__ import annotations

import numpy as np

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between every x1y1x2y2 box in a [N, 4] and b [M, 4] -> [N, M]."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    a, b = a.astype(np.float64), b.astype(np.float64)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _match(det_boxes, gt_boxes, thresholds) -> np.ndarray:
    """det_boxes sorted by score. Returns [T, D] bool: detection d is a true positive at t."""
    ious = iou_matrix(det_boxes, gt_boxes)
    tp = np.zeros((len(thresholds), len(det_boxes)), bool)
    for ti, t in enumerate(thresholds):
        taken = np.zeros(len(gt_boxes), bool)
        for d in range(len(det_boxes)):
            best, best_iou = -1, min(t, 1 - 1e-10)
            for g in range(len(gt_boxes)):
                if not taken[g] and ious[d, g] >= best_iou:
                    best, best_iou = g, ious[d, g]
            if best >= 0:
                taken[best] = True
                tp[ti, d] = True
    return tp


def _average_precision(tp: np.ndarray, num_gt: int) -> np.ndarray:
    """tp [T, D] in global score order -> AP per threshold [T] (101-point interpolation)."""
    out = np.zeros(tp.shape[0])
    for ti in range(tp.shape[0]):
        tps = np.cumsum(tp[ti])
        fps = np.cumsum(~tp[ti])
        recall = tps / num_gt
        precision = tps / np.maximum(tps + fps, np.finfo(np.float64).eps)
        # precision envelope: the best precision at any recall >= r
        precision = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
        idx = np.searchsorted(recall, RECALL_POINTS, side="left")
        sampled = np.array([precision[i] if i < len(precision) else 0.0 for i in idx])
        out[ti] = sampled.mean()
    return out


def pr_curve(tp_row: np.ndarray, num_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """Recall and interpolated precision for plotting (one threshold)."""
    tps, fps = np.cumsum(tp_row), np.cumsum(~tp_row)
    recall = tps / max(num_gt, 1)
    precision = tps / np.maximum(tps + fps, 1e-12)
    if len(precision):
        precision = np.maximum.accumulate(precision[::-1])[::-1]
    return recall, precision


def evaluate_detections(predictions, ground_truth, num_classes: int, max_detections: int = 100,
                        class_names=None, keep_curves: bool = False) -> dict:
    """predictions / ground_truth: one entry per image.

    predictions[i] = (boxes [D, 4], scores [D], classes [D]); ground_truth[i] = (boxes, classes).
    Returns map_50_95, map_50, map_75, ap_per_class {name: AP@[.5:.95]}, ap50_per_class,
    and (keep_curves) the matched tp arrays for PR curves.
    """
    names = list(class_names) if class_names else [str(c) for c in range(num_classes)]
    per_class_ap = np.full((num_classes, len(IOU_THRESHOLDS)), np.nan)
    curves = {}
    for c in range(num_classes):
        scores_all, tp_all, num_gt = [], [], 0
        for (pb, ps, pc), (gb, gc) in zip(predictions, ground_truth):
            g = np.asarray(gb)[np.asarray(gc) == c]
            num_gt += len(g)
            sel = np.asarray(pc) == c
            boxes, scores = np.asarray(pb)[sel], np.asarray(ps)[sel]
            order = np.argsort(-scores, kind="mergesort")[:max_detections]
            boxes, scores = boxes[order], scores[order]
            if len(boxes):
                tp_all.append(_match(boxes, g, IOU_THRESHOLDS))
                scores_all.append(scores)
        if num_gt == 0:
            continue  # COCO leaves classes without ground truth out of the mean
        if tp_all:
            scores = np.concatenate(scores_all)
            order = np.argsort(-scores, kind="mergesort")
            tp = np.concatenate(tp_all, axis=1)[:, order]
        else:
            tp = np.zeros((len(IOU_THRESHOLDS), 0), bool)
        per_class_ap[c] = _average_precision(tp, num_gt)
        if keep_curves:
            curves[names[c]] = (tp[0], num_gt)
    present = ~np.isnan(per_class_ap[:, 0])
    mean = per_class_ap[present].mean(0) if present.any() else np.zeros(len(IOU_THRESHOLDS))
    result = {
        "map_50_95": float(mean.mean()),
        "map_50": float(mean[0]),
        "map_75": float(mean[5]),
        "ap_per_class": {names[c]: float(per_class_ap[c].mean()) for c in range(num_classes) if present[c]},
        "ap50_per_class": {names[c]: float(per_class_ap[c, 0]) for c in range(num_classes) if present[c]},
    }
    if keep_curves:
        result["_curves"] = curves
    return result
