"""Segmentation metrics: one confusion matrix over the whole test set, checked against
keras.metrics.MeanIoU / IoU (with the ignore index) on the same predictions."""

import keras
import numpy as np
import pytest

from keras_suite.apps.segmentation.metrics import (
    ConfusionMatrix,
    confusion_matrix,
    segmentation_metrics,
)

IGNORE = 255


def _batches(seed=0, n_batches=4, k=5):
    rng = np.random.default_rng(seed)
    out = []
    for b in range(n_batches):
        truth = rng.integers(0, k, (3, 16, 16))
        pred = np.where(rng.random(truth.shape) < 0.7, truth, rng.integers(0, k, truth.shape))
        truth[rng.random(truth.shape) < 0.1] = IGNORE  # unlabelled pixels
        if b == 0:
            truth[truth == 3] = 1  # batch 0 has no class 3: per-batch means would differ
        out.append((truth, pred))
    return out


def test_miou_matches_keras_meaniou_with_ignore():
    k = 5
    batches = _batches(k=k)
    ours = ConfusionMatrix(k, IGNORE)
    theirs = keras.metrics.MeanIoU(num_classes=k, ignore_class=IGNORE)
    for truth, pred in batches:
        ours.update(truth, pred)
        theirs.update_state(truth, pred)
    got = ours.result()
    assert got["miou"] == pytest.approx(float(theirs.result()), abs=1e-6)
    # per-class IoU against keras.metrics.IoU restricted to one class
    for c in range(k):
        one = keras.metrics.IoU(num_classes=k, target_class_ids=[c], ignore_class=IGNORE)
        for truth, pred in batches:
            one.update_state(truth, pred)
        assert got["per_class"][str(c)]["iou"] == pytest.approx(float(one.result()), abs=1e-6)
    # the ignore pixels are nowhere in the matrix
    labelled = sum(int((t != IGNORE).sum()) for t, _ in batches)
    assert got["num_pixels"] == labelled


def test_accumulated_over_the_set_not_averaged_per_batch():
    k = 5
    batches = _batches(seed=1, k=k)
    whole = segmentation_metrics(
        confusion_matrix(
            np.concatenate([t for t, _ in batches]),
            np.concatenate([p for _, p in batches]),
            k,
            IGNORE,
        )
    )
    acc = ConfusionMatrix(k, IGNORE)
    per_batch = []
    for truth, pred in batches:
        acc.update(truth, pred)
        per_batch.append(segmentation_metrics(confusion_matrix(truth, pred, k, IGNORE))["miou"])
    assert acc.result()["miou"] == pytest.approx(whole["miou"])
    assert abs(np.mean(per_batch) - whole["miou"]) > 1e-4  # the two really differ here


def test_pixel_accuracy_dice_and_absent_classes():
    truth = np.array([[0, 0, 1, 1], [2, 2, IGNORE, 1]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 3, 1]])
    m = segmentation_metrics(confusion_matrix(truth, pred, 5, IGNORE), ["bg", "a", "b", "c", "d"])
    # class 0: tp 1, fp 1, fn 1 -> IoU 1/3, Dice 2/4; class 1: tp 3, fp 1, fn 0 -> 3/4, 6/7
    # class 2: tp 1, fn 1 -> 1/2, 2/3; class 3 only predicted on an ignore pixel -> absent
    assert m["per_class"]["bg"]["iou"] == pytest.approx(1 / 3)
    assert m["per_class"]["a"]["iou"] == pytest.approx(3 / 4)
    assert m["per_class"]["b"]["iou"] == pytest.approx(1 / 2)
    assert m["per_class"]["c"]["iou"] is None and m["per_class"]["d"]["iou"] is None
    assert m["miou"] == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3)
    assert m["mean_dice"] == pytest.approx((2 / 4 + 6 / 7 + 2 / 3) / 3)
    assert m["pixel_accuracy"] == pytest.approx(5 / 7)
    keras_miou = keras.metrics.MeanIoU(num_classes=5, ignore_class=IGNORE)
    keras_miou.update_state(truth, pred)
    assert m["miou"] == pytest.approx(float(keras_miou.result()))


def test_no_ignore_index():
    truth = np.array([0, 1, 255])
    pred = np.array([0, 1, 1])
    # with ignore off, ids outside 0..C-1 cannot be counted either: never silently wrapped
    assert confusion_matrix(truth, pred, 2, -1).sum() == 2
