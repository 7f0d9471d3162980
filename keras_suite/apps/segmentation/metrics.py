"""Segmentation metrics from one confusion matrix accumulated over the whole test set
(the way Pascal VOC and Cityscapes score: not an average of per-batch values)."""

from __future__ import annotations

import numpy as np


def confusion_matrix(truth, pred, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """int64 [C, C], rows = true class, columns = predicted; ignore pixels left out."""
    truth = np.asarray(truth).reshape(-1).astype(np.int64)
    pred = np.asarray(pred).reshape(-1).astype(np.int64)
    keep = (truth >= 0) & (truth < num_classes)
    if ignore_index >= 0:
        keep &= truth != ignore_index
    return np.bincount(
        truth[keep] * num_classes + pred[keep], minlength=num_classes * num_classes
    ).reshape(num_classes, num_classes)


class ConfusionMatrix:
    """Running confusion matrix: `update(truth, pred)` per batch, `result()` at the end."""

    def __init__(self, num_classes: int, ignore_index: int = 255):
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.matrix = np.zeros((num_classes, num_classes), np.int64)

    def update(self, truth, pred) -> None:
        self.matrix += confusion_matrix(truth, pred, self.num_classes, self.ignore_index)

    def result(self, class_names=None) -> dict:
        return segmentation_metrics(self.matrix, class_names)


def segmentation_metrics(matrix: np.ndarray, class_names=None) -> dict:
    """mIoU, pixel accuracy, mean Dice and per-class IoU/Dice from a confusion matrix.

    A class that appears neither in the ground truth nor in the predictions has no IoU
    (0/0) and is left out of the means, as keras.metrics.MeanIoU and the VOC devkit do.
    """
    matrix = np.asarray(matrix, np.float64)
    k = matrix.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    tp = np.diag(matrix)
    fp = matrix.sum(0) - tp
    fn = matrix.sum(1) - tp
    union = tp + fp + fn
    present = union > 0
    iou = np.divide(tp, union, out=np.zeros(k), where=present)
    dice = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros(k), where=present)
    total = matrix.sum()
    support = matrix.sum(1)
    per_class = {
        names[c]: {
            "iou": float(iou[c]) if present[c] else None,
            "dice": float(dice[c]) if present[c] else None,
            "pixels": int(support[c]),
        }
        for c in range(k)
    }
    return {
        "miou": float(iou[present].mean()) if present.any() else 0.0,
        "pixel_accuracy": float(tp.sum() / total) if total else 0.0,
        "mean_dice": float(dice[present].mean()) if present.any() else 0.0,
        "mean_class_accuracy": float(np.mean(tp[support > 0] / support[support > 0]))
        if (support > 0).any()
        else 0.0,
        "num_pixels": int(total),
        "per_class": per_class,
    }
