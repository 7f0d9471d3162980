"""Training pipeline (exact reshuffle per epoch, mosaic, box-aware augmentation) and the
task-aligned assigner, without training a model."""

import dataclasses

import numpy as np
import pytest

from keras_suite import common
from keras_suite.apps.detection import data as data_lib
from keras_suite.apps.detection.config import smoke
from keras_suite.common.errors import UserError

tf = common.quiet_import_tensorflow()


def _split():
    cfg = smoke()
    return cfg, data_lib.shapes_split(32, seed=5, dcfg=cfg.data)


def test_epoch_order_is_a_function_of_seed_and_epoch():
    cfg, split = _split()
    dcfg = dataclasses.replace(cfg.data, flip=False, translate=0.0, zoom=0.0, mosaic=0.5)
    pipe = data_lib.TrainPipeline(split, dcfg, 8, seed=1, epochs=4)
    first = [b["boxes"].numpy() for b in pipe(0)]
    again = [
        b["boxes"].numpy() for b in data_lib.TrainPipeline(split, dcfg, 8, seed=1, epochs=4)(0)
    ]
    other = [b["boxes"].numpy() for b in pipe(1)]
    assert len(first) == 4  # 32 images / batch 8, remainder dropped
    np.testing.assert_array_equal(np.stack(first), np.stack(again))
    assert not np.array_equal(np.stack(first), np.stack(other))


def test_augmented_boxes_stay_valid_and_follow_the_pixels():
    cfg, split = _split()
    dcfg = dataclasses.replace(cfg.data, mosaic=1.0, close_mosaic_epochs=0, zoom=0.2)
    size = dcfg.image_size
    for batch in data_lib.TrainPipeline(split, dcfg, 8, seed=3, epochs=2)(0):
        boxes, classes, images = (
            batch["boxes"].numpy(),
            batch["classes"].numpy(),
            batch["images"].numpy(),
        )
        valid = classes >= 0
        assert valid.any()
        b = boxes[valid]
        assert (b >= 0).all() and (b <= size).all()
        assert (b[:, 2] - b[:, 0] >= data_lib.MIN_BOX_SIDE).all()
        assert (boxes[~valid] == 0).all()
        # every kept box holds pixels that differ from the fill colour / flat background
        for img, bx in zip(images, boxes):
            for x1, y1, x2, y2 in bx[(bx[:, 2] > 0)]:
                patch = img[int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2))]
                assert patch.std() > 1.0


def test_progressive_resizing_downscales_early_epochs_only():
    cfg, split = _split()
    # mosaic only: its randomness is replayed exactly, the Keras layers' is not
    dcfg = dataclasses.replace(cfg.data, flip=False, translate=0.0, zoom=0.0, mosaic=0.5)
    full = data_lib.TrainPipeline(split, dcfg, 8, seed=2, epochs=3)
    early = data_lib.TrainPipeline(
        split, dataclasses.replace(dcfg, early_image_size=32, early_epochs=2), 8, seed=2, epochs=3
    )
    assert [early.image_size(e) for e in range(3)] == [32, 32, 64]
    for small, big in zip(early(1), full(1)):  # same shuffle and augmentation, then resized
        assert small["images"].shape == (8, 32, 32, 3)
        want = tf.image.resize(big["images"], [32, 32], antialias=True)
        np.testing.assert_allclose(small["images"].numpy(), want.numpy(), atol=1e-3)
        np.testing.assert_allclose(small["boxes"].numpy(), big["boxes"].numpy() / 2, atol=1e-5)
        np.testing.assert_array_equal(small["classes"].numpy(), big["classes"].numpy())
    for last_early, last_full in zip(early(2), full(2)):
        np.testing.assert_array_equal(last_early["images"].numpy(), last_full["images"].numpy())


@pytest.mark.parametrize("size", [48, 64, 96])
def test_early_image_size_must_be_a_smaller_multiple_of_32(size):
    cfg, _ = _split()
    with pytest.raises(UserError, match="early_image_size"):
        dataclasses.replace(cfg.data, early_image_size=size, early_epochs=1).validate()


def test_early_epochs_must_leave_an_epoch_at_the_exported_size():
    cfg, split = _split()
    dcfg = dataclasses.replace(cfg.data, early_image_size=32, early_epochs=3)
    with pytest.raises(UserError, match="early_epochs=3"):
        data_lib.TrainPipeline(split, dcfg, 8, seed=2, epochs=3)


def test_assigner_picks_anchors_inside_the_box_with_its_class():
    from keras_suite.apps.detection.losses import assign
    from keras_suite.apps.detection.model import anchor_points

    points, _ = anchor_points(64)
    a = len(points)
    gt = tf.constant([[[8.0, 8.0, 40.0, 40.0], [0.0, 0.0, 0.0, 0.0]]])
    cls = tf.constant([[2, -1]], tf.int64)
    # predictions: every anchor predicts the gt box with a moderate score for class 2
    pred_boxes = tf.tile(gt[:, :1], [1, a, 1])
    scores = tf.concat(
        [tf.fill([1, a, 2], 0.1), tf.fill([1, a, 1], 0.5), tf.fill([1, a, 1], 0.1)], -1
    )
    t_boxes, t_scores, fg = assign(scores, pred_boxes, tf.constant(points), gt, cls, 4, topk=5)
    fg = fg.numpy()[0].astype(bool)
    assert fg.sum() == 5
    inside = (points[:, 0] > 8) & (points[:, 0] < 40) & (points[:, 1] > 8) & (points[:, 1] < 40)
    assert inside[fg].all()
    np.testing.assert_allclose(t_boxes.numpy()[0][fg], np.tile([[8, 8, 40, 40]], (5, 1)))
    ts = t_scores.numpy()[0]
    assert (ts[~fg] == 0).all() and (ts[fg][:, [0, 1, 3]] == 0).all()
    np.testing.assert_allclose(ts[fg][:, 2].max(), 1.0, atol=1e-5)  # best anchor gets its IoU (1)


def test_ciou_assigner_prefers_centred_predictions():
    """A prediction shifted by 2 px overlaps the box a little more (IoU 0.681) than a
    centred, slightly larger one (0.675); plain IoU picks the shifted one, CIoU (YOLOv8's
    assigner metric, which charges the centre distance) the centred one."""
    from keras_suite.apps.detection.boxes import box_ciou, box_iou
    from keras_suite.apps.detection.losses import assign

    gt = tf.constant([[[10.0, 10.0, 30.0, 30.0]]])
    side = 20.0 / 0.675**0.5
    pred = tf.constant(
        [[[12.0, 12.0, 32.0, 32.0], [20 - side / 2, 20 - side / 2, 20 + side / 2, 20 + side / 2]]]
    )
    iou, ciou = box_iou(gt[0], pred[0]).numpy(), box_ciou(gt[0], pred[0]).numpy()
    assert iou[0] > iou[1] and ciou[0] < ciou[1]
    points = tf.constant([[19.0, 19.0], [21.0, 21.0]])  # both anchor centres inside the box
    picked = {}
    for overlap in ("iou", "ciou"):
        _, _, fg = assign(
            tf.fill([1, 2, 1], 0.5),
            pred,
            points,
            gt,
            tf.constant([[0]], tf.int64),
            1,
            topk=1,
            overlap=overlap,
        )
        picked[overlap] = fg.numpy()[0].tolist()
    assert picked == {"iou": [1.0, 0.0], "ciou": [0.0, 1.0]}
