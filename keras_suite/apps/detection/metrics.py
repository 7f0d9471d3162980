"""COCO-style average precision, written from the COCO detection evaluation protocol.

For each class and IoU threshold t in 0.50:0.05:0.95: detections of every image (the
`max_detections` highest-scoring per image and class) are matched greedily in score order
to the unmatched ground-truth box of that class with the highest IoU >= t. Over all
images, precision is made monotonically non-increasing and sampled at 101 recall points
(0, 0.01, ..., 1); AP is their mean. Classes without ground truth are left out of the
mean. mAP@[.5:.95] averages over the ten thresholds, mAP@.5 and mAP@.75 take one each.
Crowd regions (COCO `iscrowd=1`) are not objects to find: a detection matched to one is
ignored (neither true nor false positive), their overlap is intersection / detection
area, and one region can absorb many detections; as in pycocotools, ordinary boxes are
matched first. Pascal VOC `difficult` objects are ignored the same way (by IoU; duplicates on one are
ignored too, as in the VOC devkit). One difference from the VOC devkit remains: a
detection that overlaps an ordinary object enough is matched to it even when it overlaps
a difficult one more (COCO's order), where the devkit takes the larger overlap. This is the "all areas" row of pycocotools' summary; tests check the two
agree, with and without crowd regions.
"""

from __future__ import annotations

import numpy as np

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def iou_matrix(a: np.ndarray, b: np.ndarray, crowd: np.ndarray | None = None) -> np.ndarray:
    """IoU between every x1y1x2y2 box in a [N, 4] and b [M, 4] -> [N, M]; for the b boxes
    flagged `crowd`, intersection over the area of the a box (pycocotools' iscrowd rule)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    a, b = a.astype(np.float64), b.astype(np.float64)
    iw = np.clip(
        np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None
    )
    ih = np.clip(
        np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None
    )
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    if crowd is not None:
        union = np.where(np.asarray(crowd, bool)[None, :], area_a[:, None], union)
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _match(
    det_boxes, gt_boxes, thresholds, ignore=None, crowd=None, shared=None
) -> tuple[np.ndarray, np.ndarray]:
    """det_boxes sorted by score. Returns [T, D] bools: detection d is a true positive at
    t, and detection d matched an ignored box at t. `ignore` marks boxes that are neither
    found nor missed (crowd regions, VOC difficult objects, objects outside an area
    range); `crowd` the ignored ones whose overlap is intersection over detection area;
    `shared` the ignored ones any number of detections may fall on (default: crowd)."""
    n = len(gt_boxes)
    crowd = np.zeros(n, bool) if crowd is None else np.asarray(crowd, bool)
    ignore = crowd.copy() if ignore is None else np.asarray(ignore, bool) | crowd
    shared = crowd.copy() if shared is None else np.asarray(shared, bool) & ignore
    order = np.argsort(ignore, kind="stable")  # ordinary boxes first, ignored ones last
    gt_boxes, crowd, ignore, shared = (
        np.asarray(gt_boxes).reshape(-1, 4)[order],
        crowd[order],
        ignore[order],
        shared[order],
    )
    ious = iou_matrix(det_boxes, gt_boxes, crowd)
    tp = np.zeros((len(thresholds), len(det_boxes)), bool)
    ignored = np.zeros_like(tp)
    for ti, t in enumerate(thresholds):
        taken = np.zeros(len(gt_boxes), bool)
        for d in range(len(det_boxes)):
            best, best_iou = -1, min(t, 1 - 1e-10)
            for g in range(len(gt_boxes)):
                if taken[g] and not shared[g]:
                    continue
                if best >= 0 and not ignore[best] and ignore[g]:
                    break  # a real match beats any ignored box
                if ious[d, g] >= best_iou:
                    best, best_iou = g, ious[d, g]
            if best >= 0:
                taken[best] = True
                ignored[ti, d] = ignore[best]
                tp[ti, d] = not ignore[best]
    return tp, ignored


def _average_precision(
    tp: np.ndarray, num_gt: int, ignored: np.ndarray | None = None
) -> np.ndarray:
    """tp [T, D] in global score order -> AP per threshold [T] (101-point interpolation);
    `ignored` detections count neither way."""
    out = np.zeros(tp.shape[0])
    counted = np.ones_like(tp) if ignored is None else ~ignored
    for ti in range(tp.shape[0]):
        tps = np.cumsum(tp[ti] & counted[ti])
        fps = np.cumsum(~tp[ti] & counted[ti])
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


def evaluate_detections(
    predictions,
    ground_truth,
    num_classes: int,
    max_detections: int = 100,
    class_names=None,
    keep_curves: bool = False,
    crowd=None,
    difficult=None,
) -> dict:
    """predictions / ground_truth / crowd / difficult: one entry per image.

    predictions[i] = (boxes [D, 4], scores [D], classes [D]); ground_truth[i] = (boxes, classes);
    crowd[i] = (boxes, classes) of the image's COCO crowd regions, difficult[i] of its VOC
    difficult objects (None: none). Both are ignored: a detection matched to one counts
    neither way; difficult objects match by IoU, as the VOC protocol does.
    Returns map_50_95, map_50, map_75, ap_per_class {name: AP@[.5:.95]}, ap50_per_class,
    and (keep_curves) the matched tp arrays for PR curves.
    """
    names = list(class_names) if class_names else [str(c) for c in range(num_classes)]
    per_class_ap = np.full((num_classes, len(IOU_THRESHOLDS)), np.nan)
    curves = {}
    none = (np.zeros((0, 4)), np.zeros(0, np.int64))
    crowd = crowd if crowd is not None else [none] * len(ground_truth)
    difficult = difficult if difficult is not None else [none] * len(ground_truth)
    for c in range(num_classes):
        scores_all, tp_all, ig_all, num_gt = [], [], [], 0
        for (pb, ps, pc), (gb, gc), (cb, cc), (hb, hc) in zip(
            predictions, ground_truth, crowd, difficult
        ):
            g = np.asarray(gb).reshape(-1, 4)[np.asarray(gc) == c]
            hard = np.asarray(hb).reshape(-1, 4)[np.asarray(hc) == c]
            regions = np.asarray(cb).reshape(-1, 4)[np.asarray(cc) == c]
            num_gt += len(g)
            sel = np.asarray(pc) == c
            boxes, scores = np.asarray(pb)[sel], np.asarray(ps)[sel]
            order = np.argsort(-scores, kind="mergesort")[:max_detections]
            boxes, scores = boxes[order], scores[order]
            if len(boxes):
                kinds = np.r_[np.zeros(len(g)), np.ones(len(hard)), np.full(len(regions), 2)]
                tp, ignored = _match(
                    boxes,
                    np.concatenate([g, hard, regions]),
                    IOU_THRESHOLDS,
                    ignore=kinds > 0,
                    crowd=kinds == 2,
                    shared=kinds > 0,
                )
                tp_all.append(tp)
                ig_all.append(ignored)
                scores_all.append(scores)
        if num_gt == 0:
            continue  # COCO leaves classes without ground truth out of the mean
        if tp_all:
            scores = np.concatenate(scores_all)
            order = np.argsort(-scores, kind="mergesort")
            tp = np.concatenate(tp_all, axis=1)[:, order]
            ignored = np.concatenate(ig_all, axis=1)[:, order]
        else:
            tp = ignored = np.zeros((len(IOU_THRESHOLDS), 0), bool)
        per_class_ap[c] = _average_precision(tp, num_gt, ignored)
        if keep_curves:
            curves[names[c]] = (tp[0][~ignored[0]], num_gt)
    present = ~np.isnan(per_class_ap[:, 0])
    mean = per_class_ap[present].mean(0) if present.any() else np.zeros(len(IOU_THRESHOLDS))
    result = {
        "map_50_95": float(mean.mean()),
        "map_50": float(mean[0]),
        "map_75": float(mean[5]),
        "ap_per_class": {
            names[c]: float(per_class_ap[c].mean()) for c in range(num_classes) if present[c]
        },
        "ap50_per_class": {
            names[c]: float(per_class_ap[c, 0]) for c in range(num_classes) if present[c]
        },
    }
    if keep_curves:
        result["_curves"] = curves
    return result


# ---- the COCO protocol's full summary -------------------------------------------------

AREA_RANGES = {
    "all": (0.0, 1e10),
    "small": (0.0, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, 1e10),
}
MAX_DETS = (1, 10, 100)


def _area(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def coco_summary(predictions, ground_truth, num_classes: int, crowd=None, difficult=None) -> dict:
    """The twelve numbers of pycocotools' `COCOeval.summarize()` for boxes: AP (IoU
    .50:.95), AP50, AP75, AP small/medium/large, AR with 1/10/100 detections per image,
    AR small/medium/large. Per image and class the best 100 detections count (COCO allows
    100 per class); objects and detections outside an area range are ignored for it
    (areas are box areas in the evaluated image's pixels)."""
    none = (np.zeros((0, 4)), np.zeros(0, np.int64))
    crowd = crowd if crowd is not None else [none] * len(ground_truth)
    difficult = difficult if difficult is not None else [none] * len(ground_truth)
    T, R = len(IOU_THRESHOLDS), len(RECALL_POINTS)
    precision = -np.ones((T, R, num_classes, len(AREA_RANGES), len(MAX_DETS)))
    recall = -np.ones((T, num_classes, len(AREA_RANGES), len(MAX_DETS)))
    for c in range(num_classes):
        per_image = []  # (gt boxes, kinds, det boxes, det scores) of this class
        for (pb, ps, pc), (gb, gc), (cb, cc), (hb, hc) in zip(
            predictions, ground_truth, crowd, difficult
        ):
            parts = [
                np.asarray(b).reshape(-1, 4)[np.asarray(k) == c]
                for b, k in ((gb, gc), (hb, hc), (cb, cc))
            ]
            kinds = np.concatenate([np.full(len(p), kind) for kind, p in enumerate(parts)])
            sel = np.asarray(pc) == c
            scores = np.asarray(ps, np.float64)[sel]
            order = np.argsort(-scores, kind="mergesort")[: MAX_DETS[-1]]
            per_image.append(
                (
                    np.concatenate(parts),
                    kinds,
                    np.asarray(pb).reshape(-1, 4)[sel][order],
                    scores[order],
                )
            )
        for a, (low, high) in enumerate(AREA_RANGES.values()):
            images = []
            for gt, kinds, det, scores in per_image:
                outside = (_area(gt) < low) | (_area(gt) > high)
                ignore = (kinds > 0) | outside
                tp, matched_ignored = _match(
                    det, gt, IOU_THRESHOLDS, ignore=ignore, crowd=kinds == 2, shared=kinds > 0
                )
                det_outside = (_area(det) < low) | (_area(det) > high)
                ignored = matched_ignored | (~tp & ~matched_ignored & det_outside[None, :])
                images.append((scores, tp, ignored, int((~ignore).sum())))
            num_gt = sum(n for *_, n in images)
            if num_gt == 0:
                continue
            for m, max_det in enumerate(MAX_DETS):
                scores = np.concatenate([s[:max_det] for s, *_ in images])
                order = np.argsort(-scores, kind="mergesort")
                tp = np.concatenate([t[:, :max_det] for _, t, _, _ in images], axis=1)[:, order]
                ignored = np.concatenate([g[:, :max_det] for _, _, g, _ in images], axis=1)[
                    :, order
                ]
                precision[:, :, c, a, m] = _precision_at_recall_points(tp, ignored, num_gt)
                recall[:, c, a, m] = (tp & ~ignored).sum(1) / num_gt
    names = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")

    def mean(values):
        values = values[values > -1]
        return float(values.mean()) if values.size else -1.0

    stats = [
        mean(precision[:, :, :, 0, 2]),
        mean(precision[0, :, :, 0, 2]),
        mean(precision[5, :, :, 0, 2]),
        mean(precision[:, :, :, 1, 2]),
        mean(precision[:, :, :, 2, 2]),
        mean(precision[:, :, :, 3, 2]),
        mean(recall[:, :, 0, 0]),
        mean(recall[:, :, 0, 1]),
        mean(recall[:, :, 0, 2]),
        mean(recall[:, :, 1, 2]),
        mean(recall[:, :, 2, 2]),
        mean(recall[:, :, 3, 2]),
    ]
    return dict(zip(names, stats))


def _precision_at_recall_points(tp: np.ndarray, ignored: np.ndarray, num_gt: int) -> np.ndarray:
    """[T, D] matches in score order -> interpolated precision at the 101 recall points [T, R]."""
    out = np.zeros((tp.shape[0], len(RECALL_POINTS)))
    for ti in range(tp.shape[0]):
        tps = np.cumsum(tp[ti] & ~ignored[ti])
        fps = np.cumsum(~tp[ti] & ~ignored[ti])
        rec = tps / num_gt
        prec = tps / np.maximum(tps + fps, np.finfo(np.float64).eps)
        if len(prec):
            prec = np.maximum.accumulate(prec[::-1])[::-1]
        idx = np.searchsorted(rec, RECALL_POINTS, side="left")
        out[ti] = [prec[i] if i < len(prec) else 0.0 for i in idx]
    return out
