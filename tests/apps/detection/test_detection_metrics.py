"""Our COCO mAP against pycocotools on the same predictions (agreement within 0.001)."""

import contextlib
import io

import numpy as np
import pytest

from keras_suite.apps.detection.metrics import coco_summary, evaluate_detections, iou_matrix

pycocotools = pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402


def _random_case(seed, n_images=40, num_classes=5):
    """Ground truth plus predictions of mixed quality: jittered hits, duplicates, misses,
    false positives, a class with no detections and a class with no ground truth."""
    rng = np.random.default_rng(seed)
    gts, preds = [], []
    for _ in range(n_images):
        k = rng.integers(0, 7)
        xy = rng.uniform(0, 200, (k, 2))
        wh = rng.uniform(4, 80, (k, 2))
        gb = np.concatenate([xy, xy + wh], 1)
        gc = rng.integers(0, num_classes - 1, k)  # the last class never has ground truth
        boxes, scores, classes = [], [], []
        for b, c in zip(gb, gc):
            if c == 3 or rng.random() < 0.15:  # class 3 is never detected; some misses
                continue
            for _ in range(rng.integers(1, 3)):  # sometimes a duplicate
                jitter = rng.normal(0, 0.12, 4) * np.r_[b[2:] - b[:2], b[2:] - b[:2]]
                boxes.append(b + jitter)
                scores.append(rng.uniform(0.05, 1.0))
                classes.append(c if rng.random() > 0.1 else rng.integers(0, num_classes))
        for _ in range(rng.integers(0, 4)):  # false positives
            xy = rng.uniform(0, 200, 2)
            boxes.append(np.r_[xy, xy + rng.uniform(4, 60, 2)])
            scores.append(rng.uniform(0.01, 0.7))
            classes.append(rng.integers(0, num_classes))
        gts.append((gb.reshape(-1, 4), gc))
        preds.append(
            (
                np.asarray(boxes, float).reshape(-1, 4),
                np.asarray(scores, float),
                np.asarray(classes, int),
            )
        )
    return gts, preds


def _pycocotools_stats(gts, preds, num_classes, crowd=None):
    images = [{"id": i + 1, "width": 300, "height": 300} for i in range(len(gts))]
    anns, dets = [], []
    crowd = crowd or [(np.zeros((0, 4)), np.zeros(0, int))] * len(gts)
    for i, ((gb, gc), (pb, ps, pc), (cb, cc)) in enumerate(zip(gts, preds, crowd)):
        for b, c, is_crowd in [(b, c, 0) for b, c in zip(gb, gc)] + [
            (b, c, 1) for b, c in zip(cb, cc)
        ]:
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": int(c) + 1,
                    "bbox": [float(b[0]), float(b[1]), float(w), float(h)],
                    "area": float(w * h),
                    "iscrowd": is_crowd,
                }
            )
        for b, s, c in zip(pb, ps, pc):
            dets.append(
                {
                    "image_id": i + 1,
                    "category_id": int(c) + 1,
                    "score": float(s),
                    "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])],
                }
            )
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {
            "images": images,
            "annotations": anns,
            "categories": [{"id": c + 1, "name": str(c)} for c in range(num_classes)],
        }
        coco.createIndex()
        result = coco.loadRes(dets)
        ev = COCOeval(coco, result, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    # precision[T, R, K, A, M]: per-class AP at area "all", maxDets 100
    prec = ev.eval["precision"][:, :, :, 0, -1]
    per_class = {}
    for k in range(num_classes):
        p = prec[:, :, k]
        if (p > -1).any():
            per_class[str(k)] = float(p[p > -1].mean())
    return ev.stats, per_class


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_map_matches_pycocotools(seed):
    num_classes = 5
    gts, preds = _random_case(seed, num_classes=num_classes)
    ours = evaluate_detections(preds, gts, num_classes)
    stats, per_class = _pycocotools_stats(gts, preds, num_classes)
    assert 0.05 < ours["map_50_95"] < 0.95  # a case that exercises the whole curve
    assert abs(ours["map_50_95"] - stats[0]) < 1e-3
    assert abs(ours["map_50"] - stats[1]) < 1e-3
    assert abs(ours["map_75"] - stats[2]) < 1e-3
    assert set(ours["ap_per_class"]) == set(per_class)  # class 4 (no ground truth) left out
    for name, ap in per_class.items():
        assert abs(ours["ap_per_class"][name] - ap) < 1e-3, name
    assert ours["ap_per_class"]["3"] == 0.0  # ground truth but never detected


def _with_crowd_regions(gts, preds, seed):
    """Turn about a third of the ground-truth boxes into crowd regions (grown by up to 30 %,
    so some detections fall inside one), and add detections inside each region."""
    rng = np.random.default_rng(seed + 100)
    new_gts, crowd, new_preds = [], [], []
    for (gb, gc), (pb, ps, pc) in zip(gts, preds):
        is_crowd = rng.random(len(gb)) < 0.35
        grown = gb[is_crowd].copy()
        if len(grown):
            size = grown[:, 2:] - grown[:, :2]
            grown[:, :2] -= size * rng.uniform(0, 0.3, (len(grown), 1))
            grown[:, 2:] += size * rng.uniform(0, 0.3, (len(grown), 1))
        extra_boxes, extra_scores, extra_classes = [], [], []
        for b, c in zip(grown, gc[is_crowd]):
            for _ in range(rng.integers(1, 4)):  # several detections inside one crowd region
                size = b[2:] - b[:2]
                xy = b[:2] + rng.uniform(0, 0.5, 2) * size
                extra_boxes.append(np.r_[xy, xy + rng.uniform(0.2, 0.5, 2) * size])
                extra_scores.append(rng.uniform(0.05, 1.0))
                extra_classes.append(c)
        new_gts.append((gb[~is_crowd], gc[~is_crowd]))
        crowd.append((grown.reshape(-1, 4), gc[is_crowd]))
        new_preds.append(
            (
                np.concatenate([pb, np.asarray(extra_boxes, float).reshape(-1, 4)]),
                np.concatenate([ps, extra_scores]),
                np.concatenate([pc, extra_classes]).astype(int),
            )
        )
    return new_gts, new_preds, crowd


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_crowd_regions_are_ignored_exactly_as_pycocotools_does(seed):
    num_classes = 5
    gts, preds, crowd = _with_crowd_regions(*_random_case(seed, num_classes=num_classes), seed)
    assert sum(len(c[0]) for c in crowd) > 10
    ours = evaluate_detections(preds, gts, num_classes, crowd=crowd)
    stats, per_class = _pycocotools_stats(gts, preds, num_classes, crowd)
    for ours_key, index in (("map_50_95", 0), ("map_50", 1), ("map_75", 2)):
        assert abs(ours[ours_key] - stats[index]) < 1e-3, (ours_key, ours[ours_key], stats[index])
    for name, ap in per_class.items():
        assert abs(ours["ap_per_class"][name] - ap) < 1e-3, name
    # dropping the crowd regions (the old behaviour) gives a different, lower score
    dropped = evaluate_detections(preds, gts, num_classes)
    assert dropped["map_50_95"] < ours["map_50_95"] - 0.01


def test_perfect_and_empty_predictions():
    gts, _ = _random_case(5)
    perfect = [(gb, np.linspace(1, 0.5, len(gb)), gc) for gb, gc in gts]
    assert evaluate_detections(perfect, gts, 5)["map_50_95"] == pytest.approx(1.0)
    empty = [(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int)) for _ in gts]
    assert evaluate_detections(empty, gts, 5)["map_50"] == 0.0


def test_iou_matrix():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    np.testing.assert_allclose(iou_matrix(a, b), [[1.0, 50 / 150, 0.0]])


@pytest.mark.parametrize(
    "num_classes,anchors,max_detections,pre_nms_topk",
    [
        (1, 336, 100, 50),  # one class, fewer candidates than output rows
        (4, 21, 100, 200),  # 32 px images: 21 anchors
        (1, 21, 100, 200),
        (80, 336, 100, 200),  # many classes
        (3, 336, 20, 200),
    ],
)
def test_postprocess_never_crashes_and_pads_to_max_detections(
    num_classes, anchors, max_detections, pre_nms_topk
):
    from keras_suite import common
    from keras_suite.apps.detection.postprocess import nms_single

    tf = common.quiet_import_tensorflow()
    rng = np.random.default_rng(anchors + num_classes)
    xy = rng.uniform(0, 100, (anchors, 2))
    boxes = tf.constant(np.concatenate([xy, xy + rng.uniform(2, 30, (anchors, 2))], 1), tf.float32)
    scores = tf.constant(rng.uniform(0, 1, (anchors, num_classes)), tf.float32)
    out_boxes, out_scores, out_classes, count = nms_single(
        boxes, scores, num_classes, max_detections, pre_nms_topk, 0.6, 0.1
    )
    assert out_boxes.shape == (max_detections, 4) and out_scores.shape == (max_detections,)
    n = int(count)
    assert 0 < n <= min(max_detections, anchors, pre_nms_topk * num_classes)
    assert (out_classes.numpy()[:n] >= 0).all() and (out_classes.numpy()[n:] == -1).all()
    assert (np.diff(out_scores.numpy()[:n]) <= 0).all()  # best first


def test_invalid_postprocess_settings_are_one_line_errors():
    from keras_suite.apps.detection.config import PRESETS
    from keras_suite.common import config as config_lib
    from keras_suite.common.errors import UserError

    for bad in (
        "post.max_detections=0",
        "post.pre_nms_topk=0",
        "post.iou_threshold=0",
        "post.score_threshold=1.5",
    ):
        with pytest.raises(UserError):
            config_lib.resolve(PRESETS, "smoke", overrides=[bad])


def test_voc_difficult_objects_are_ignored_hand_computed():
    """Image 1: object A and difficult object D; detections on D (0.95, twice) and A (0.9).
    Image 2: object B and difficult D2 (never detected); a detection on B (0.8).
    Ignoring D/D2 (VOC): the counted detections are A, B, both hits: AP = 1.
    If D were dropped from the annotations, the D detections would be false positives
    ahead of every hit (AP 101-point = 0.5); as ordinary objects, the second D detection is
    a duplicate (false positive) and recall stops at 3/4: precision 1 up to recall 0.25
    (26 points), then 0.75 up to 0.75 (50 points): AP = (26 + 37.5) / 101."""
    a, d = [0, 0, 10, 10], [20, 20, 30, 30]
    b, d2 = [50, 50, 60, 60], [70, 70, 80, 80]
    gts = [(np.array([a], float), np.array([0])), (np.array([b], float), np.array([0]))]
    hard = [(np.array([d], float), np.array([0])), (np.array([d2], float), np.array([0]))]
    preds = [
        (np.array([d, d, a], float), np.array([0.95, 0.94, 0.9]), np.array([0, 0, 0])),
        (np.array([b], float), np.array([0.8]), np.array([0])),
    ]
    assert evaluate_detections(preds, gts, 1, difficult=hard)["map_50_95"] == pytest.approx(1.0)
    dropped = evaluate_detections(preds, gts, 1)["map_50"]
    assert dropped == pytest.approx(0.5, abs=1e-9)
    as_objects = [(np.concatenate([g[0], h[0]]), np.array([0, 0])) for g, h in zip(gts, hard)]
    ordinary = evaluate_detections(preds, as_objects, 1)["map_50"]
    assert ordinary == pytest.approx(63.5 / 101)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("with_crowd", [False, True])
def test_full_coco_summary_equals_pycocotools(seed, with_crowd):
    """All twelve numbers of COCOeval.summarize() (AP by IoU and area, AR@1/10/100, AR by
    area), on boxes from 4 to 200 px so every area range has objects."""
    num_classes = 5
    gts, preds = _random_case(seed, num_classes=num_classes)
    rng = np.random.default_rng(seed)
    scale = rng.choice([0.5, 1.0, 3.0], len(gts))  # small, medium and large objects
    gts = [(gb * s, gc) for (gb, gc), s in zip(gts, scale)]
    preds = [(pb * s, ps, pc) for (pb, ps, pc), s in zip(preds, scale)]
    crowd = None
    if with_crowd:
        gts, preds, crowd = _with_crowd_regions(gts, preds, seed)
    ours = coco_summary(preds, gts, num_classes, crowd=crowd)
    stats, _ = _pycocotools_stats(gts, preds, num_classes, crowd)
    assert len(ours) == 12 and ours["APs"] > -1 and ours["APl"] > -1
    for (name, value), reference in zip(ours.items(), stats):
        assert abs(value - reference) < 1e-3, (name, value, reference)


def test_coco_protocol_candidates_are_multi_label_and_per_class():
    """One anchor scoring high for two classes gives a detection of each (the serving
    signature keeps only the best class per anchor)."""
    from types import SimpleNamespace

    from keras_suite import common
    from keras_suite.apps.detection.data import Split
    from keras_suite.apps.detection.evaluate import predict_split_coco
    from keras_suite.apps.detection.model import anchor_points

    tf = common.quiet_import_tensorflow()
    size, reg_max, num_classes = 64, 4, 3
    anchors = len(anchor_points(size)[0])
    raw = np.full((1, anchors, 4 * reg_max + num_classes), -10.0, np.float32)
    raw[0, :, : 4 * reg_max] = 0.0  # uniform distance bins: a box around every anchor
    raw[0, 5, 4 * reg_max + 0] = 4.0  # anchor 5: classes 0 and 2 both likely
    raw[0, 5, 4 * reg_max + 2] = 3.0

    class FakeModel:
        def __call__(self, images, training=False):
            return tf.constant(raw)

    cfg = SimpleNamespace(
        model=SimpleNamespace(reg_max=reg_max),
        post=SimpleNamespace(iou_threshold=0.6, eval_score_threshold=0.01),
    )
    split = Split(
        np.zeros((1, size, size, 3), np.uint8), np.zeros((1, 1, 4)), -np.ones((1, 1), np.int64)
    )
    ((boxes, scores, classes),) = predict_split_coco(
        FakeModel(), split, cfg, {"num_classes": num_classes, "image_size": size}
    )
    assert sorted(classes.tolist()) == [0, 2]
    np.testing.assert_allclose(boxes[0], boxes[1])
