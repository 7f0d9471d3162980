"""Detection datasets: arrays of images + padded boxes, tf.data pipelines, augmentation.

Every split is held as numpy arrays: images uint8 [N, S, S, 3], boxes float32 [N, M, 4]
(x1, y1, x2, y2 in pixels of the S x S image) and classes int64 [N, M] where -1 marks a
padding row. Training adds, per epoch: a seeded shuffle, mosaic (our own: four images on
a 2S x 2S canvas cropped back to S x S) and Keras 3 core augmentation layers that move
the boxes with the pixels (`bounding_box_format="xyxy"`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from keras_suite import common
from keras_suite.common import shapes
from keras_suite.common.data import AUTOTUNE, epoch_seed
from keras_suite.common.duplicates import array_hashes, disjoint_indices, log_removed
from keras_suite.common.errors import UserError
from keras_suite.common.runlog import log, progress

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402

MIN_BOX_SIDE = 2.0  # pixels: smaller boxes left by cropping are dropped


@dataclass
class Split:
    """Images with padded boxes/classes (class -1 = padding), plus per image the
    (boxes, classes) that evaluation ignores: COCO crowd regions (`crowd`, never trained
    on) and VOC difficult objects (`difficult`; trained on only with
    data.train_difficult, then also flagged in `scored` = False so mAP skips them)."""

    images: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray
    crowd: list | None = None
    difficult: list | None = None
    scored: np.ndarray | None = None  # [N, max_boxes] bool; None = every real box is scored
    # Where each image came from, for predictions_coco.json: (width, height) before the
    # resize to the model input, its id and file in the dataset (None: 1..N, no file), and
    # the dataset's category id of each class index (COCO files; None: index + 1).
    source_sizes: np.ndarray | None = None
    image_ids: np.ndarray | None = None
    file_names: list | None = None
    category_ids: list | None = None

    def __len__(self) -> int:
        return len(self.images)

    def take(self, indices) -> "Split":
        pick = lambda items: [items[i] for i in indices] if items is not None else None  # noqa: E731
        rows = lambda array: array[indices] if array is not None else None  # noqa: E731
        return Split(
            self.images[indices],
            self.boxes[indices],
            self.classes[indices],
            pick(self.crowd),
            pick(self.difficult),
            rows(self.scored),
            rows(self.source_sizes),
            rows(self.coco_image_ids()),
            pick(self.file_names),
            self.category_ids,
        )

    def coco_image_ids(self) -> np.ndarray:
        return np.arange(1, len(self) + 1) if self.image_ids is None else np.asarray(self.image_ids)

    def original_sizes(self) -> np.ndarray:
        """(width, height) of each image before resizing; the input size where unknown."""
        if self.source_sizes is not None and len(self.source_sizes) == len(self):
            return np.asarray(self.source_sizes, np.float64).reshape(-1, 2)
        height, width = self.images.shape[1:3]
        return np.tile(np.float64([width, height]), (len(self), 1))

    def ignored(self) -> dict:
        """Keyword arguments for `evaluate_detections`: the regions evaluation ignores."""
        return {"crowd": self.crowd, "difficult": self.difficult}

    def ground_truth(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        keep = self.classes[i] >= 0
        if self.scored is not None:
            keep &= self.scored[i]
        return self.boxes[i][keep], self.classes[i][keep]


def pad_targets(box_list, class_list, max_boxes: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Pad per-image box lists to [N, max_boxes]; returns also how many boxes were cut."""
    n = len(box_list)
    boxes = np.zeros((n, max_boxes, 4), np.float32)
    classes = np.full((n, max_boxes), -1, np.int64)
    cut = 0
    for i, (b, c) in enumerate(zip(box_list, class_list)):
        k = min(len(b), max_boxes)
        cut += len(b) - k
        boxes[i, :k] = b[:k]
        classes[i, :k] = c[:k]
    return boxes, classes, cut


def shapes_split(n: int, seed: int, dcfg) -> Split:
    """n built-in scenes (several shapes each, small objects and overlaps included)."""
    bar = progress(n, f"generating {n} scenes", unit="img")
    images = np.empty((n, dcfg.image_size, dcfg.image_size, 3), np.uint8)
    box_list, cls_list = [], []
    rng = np.random.default_rng(seed)
    for i in range(n):
        s = shapes.scene(
            rng,
            dcfg.image_size,
            max_objects=dcfg.max_objects,
            min_radius=dcfg.min_radius,
            max_radius=dcfg.max_radius,
            max_overlap=dcfg.max_overlap,
        )
        images[i] = s.image
        box_list.append(s.boxes)
        cls_list.append(s.classes)
        bar.update(1)
    bar.close()
    boxes, classes, cut = pad_targets(box_list, cls_list, dcfg.max_boxes)
    if cut:
        log.warning("%d boxes beyond data.max_boxes=%d were dropped", cut, dcfg.max_boxes)
    return Split(images, boxes, classes)


def without_copies(splits: dict) -> tuple[dict, dict]:
    """Drop val/test images whose pixels (at the model input size) equal an earlier split's
    (train, then val): -> ({split: Split}, {split: images removed})."""
    keep, removed = disjoint_indices({name: array_hashes(s.images) for name, s in splits.items()})
    log_removed(removed)
    return {
        name: s if len(keep[name]) == len(s) else s.take(keep[name]) for name, s in splits.items()
    }, removed


def _to_tensors(split: Split):
    return tf.data.Dataset.from_tensor_slices(
        {"images": split.images, "boxes": split.boxes, "classes": split.classes}
    )


def _as_float(example):
    return {
        "images": tf.cast(example["images"], tf.float32),
        "boxes": example["boxes"],
        "classes": example["classes"],
    }


def eval_dataset(split: Split, batch_size: int):
    return _to_tensors(split).map(_as_float).batch(batch_size).prefetch(AUTOTUNE)


def filter_boxes(boxes, classes, size: float, original_area=None, min_visible=0.3):
    """Clip to the image; rows that became too small (or mostly cropped away) -> padding."""
    clipped = tf.clip_by_value(boxes, 0.0, size)
    w = clipped[..., 2] - clipped[..., 0]
    h = clipped[..., 3] - clipped[..., 1]
    keep = (classes >= 0) & (w >= MIN_BOX_SIDE) & (h >= MIN_BOX_SIDE)
    if original_area is not None:
        keep &= w * h >= min_visible * original_area
    # Valid rows first so that truncating to max_boxes drops padding, not objects.
    order = tf.argsort(tf.cast(keep, tf.int32), axis=-1, direction="DESCENDING", stable=True)
    clipped = tf.gather(
        tf.where(keep[..., None], clipped, 0.0), order, batch_dims=len(keep.shape) - 1
    )
    classes = tf.gather(
        tf.where(keep, classes, tf.constant(-1, classes.dtype)),
        order,
        batch_dims=len(keep.shape) - 1,
    )
    return clipped, classes


def mosaic(example, size: int, max_boxes: int, seed):
    """Four images tiled on a 2S x 2S canvas, cropped at a random S x S window."""
    imgs, boxes, classes = example["images"], example["boxes"], example["classes"]
    top = tf.concat([imgs[0], imgs[1]], axis=1)
    bottom = tf.concat([imgs[2], imgs[3]], axis=1)
    canvas = tf.concat([top, bottom], axis=0)
    origin = tf.random.stateless_uniform([2], seed, size // 4, 3 * size // 4 + 1, dtype=tf.int32)
    ox, oy = origin[0], origin[1]
    image = tf.slice(canvas, tf.stack([oy, ox, 0]), [size, size, 3])
    shift = tf.constant([[0, 0], [size, 0], [0, size], [size, size]], tf.float32)
    shift = tf.tile(shift, [1, 2])[:, None, :]  # [4, 1, 4]
    moved = boxes + shift - tf.cast(tf.stack([ox, oy, ox, oy]), tf.float32)
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    flat = tf.reshape(moved, [-1, 4])
    b, c = filter_boxes(flat, tf.reshape(classes, [-1]), float(size), tf.reshape(area, [-1]))
    return {"images": image, "boxes": b[:max_boxes], "classes": c[:max_boxes]}


def make_augmenters(dcfg, seed: int):
    """Keras 3 core layers that transform boxes along with pixels."""
    layers = []
    if dcfg.flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed, bounding_box_format="xyxy"))
    if dcfg.translate > 0:
        layers.append(
            keras.layers.RandomTranslation(
                dcfg.translate,
                dcfg.translate,
                fill_mode="constant",
                fill_value=114.0,
                seed=seed + 1,
                bounding_box_format="xyxy",
            )
        )
    if dcfg.zoom > 0:
        layers.append(
            keras.layers.RandomZoom(
                (-dcfg.zoom, dcfg.zoom),
                fill_mode="constant",
                fill_value=114.0,
                seed=seed + 2,
                bounding_box_format="xyxy",
            )
        )
    return layers


def resize_batch(batch, size: int, target: int):
    """Scale a batch of size x size images and their boxes to target x target."""
    scale = target / size
    # Antialiased, so the small images look like a lower-resolution camera, not aliased.
    images = tf.image.resize(batch["images"], [target, target], antialias=True)
    boxes = batch["boxes"] * scale  # padding rows are zeros and stay zeros
    return {"images": images, "boxes": boxes, "classes": batch["classes"]}


class TrainPipeline:
    """Builds each epoch's dataset from one in-memory copy of the training split.

    Epochs shuffle indices, not images, so the arrays are neither copied into shuffle
    buffers nor embedded again in every epoch's graph.
    """

    def __init__(self, split: Split, dcfg, batch_size: int, seed: int, epochs: int):
        self.n = len(split)
        self.dcfg, self.batch_size, self.seed, self.epochs = dcfg, batch_size, seed, epochs
        self.images = tf.constant(split.images)
        self.boxes = tf.constant(split.boxes)
        self.classes = tf.constant(split.classes)
        self.augmenters = make_augmenters(dcfg, seed)
        # progressive resizing: the epochs before this one train at data.early_image_size
        self.first_full_size_epoch = dcfg.early_epochs if dcfg.early_image_size else 0
        if self.first_full_size_epoch:
            if dcfg.early_epochs >= epochs:
                raise UserError(
                    f"data.early_epochs={dcfg.early_epochs} leaves no epoch at "
                    f"data.image_size={dcfg.image_size}, the size the model is "
                    f"exported at; set it below train.epochs={epochs}"
                )
            log.info(
                "progressive resizing: epochs 1-%d train at %d px, the rest at %d px",
                dcfg.early_epochs,
                dcfg.early_image_size,
                dcfg.image_size,
            )

    def image_size(self, epoch: int) -> int:
        """The input size of this epoch's batches."""
        if epoch < self.first_full_size_epoch:
            return self.dcfg.early_image_size
        return self.dcfg.image_size

    def _example(self, i):
        return {
            "images": tf.cast(tf.gather(self.images, i), tf.float32),
            "boxes": tf.gather(self.boxes, i),
            "classes": tf.gather(self.classes, i),
        }

    def _order(self, seed: int):
        return tf.data.Dataset.range(self.n).shuffle(
            self.n, seed=seed, reshuffle_each_iteration=False
        )

    def __call__(self, epoch: int):
        """One epoch: shuffled by (seed, epoch); mosaic with probability data.mosaic (off in
        the last data.close_mosaic_epochs epochs); flip/translate/zoom on whole batches;
        downscaled to data.early_image_size in the first data.early_epochs epochs."""
        dcfg = self.dcfg
        size, max_boxes = dcfg.image_size, dcfg.max_boxes
        base = epoch_seed(self.seed, epoch)
        use_mosaic = dcfg.mosaic > 0 and epoch < self.epochs - dcfg.close_mosaic_epochs
        if use_mosaic:
            # Partners for the mosaic: three more independently shuffled orders.
            ds = tf.data.Dataset.zip(
                (tf.data.Dataset.range(self.n), *[self._order(base + k) for k in range(4)])
            )

            def maybe_mosaic(pos, *idx):
                s = tf.stack([tf.constant(base % 100003, tf.int64), pos])
                first = self._example(idx[0])
                coin = tf.random.stateless_uniform([], s)
                return tf.cond(
                    coin < dcfg.mosaic,
                    lambda: mosaic(self._example(tf.stack(idx)), size, max_boxes, s + 1),
                    lambda: first,
                )

            ds = ds.map(maybe_mosaic, num_parallel_calls=AUTOTUNE, deterministic=True)
        else:
            ds = self._order(base).map(
                self._example, num_parallel_calls=AUTOTUNE, deterministic=True
            )
        ds = ds.batch(self.batch_size, drop_remainder=True)
        if self.augmenters:
            ds = ds.map(self._augment, num_parallel_calls=AUTOTUNE, deterministic=True)
        target = self.image_size(epoch)
        if target != size:
            ds = ds.map(
                lambda batch: resize_batch(batch, size, target),
                num_parallel_calls=AUTOTUNE,
                deterministic=True,
            )
        return ds.prefetch(AUTOTUNE)

    def _augment(self, batch):
        data = {
            "images": batch["images"],
            "bounding_boxes": {
                "boxes": batch["boxes"],
                "labels": tf.cast(batch["classes"], tf.int32),
            },
        }
        for layer in self.augmenters:
            data = layer(data, training=True)
        boxes, classes = filter_boxes(
            data["bounding_boxes"]["boxes"], batch["classes"], float(self.dcfg.image_size)
        )
        return {"images": data["images"], "boxes": boxes, "classes": classes}


def tfds_splits(dcfg, seed: int):
    """A TFDS dataset by name (data.source=tfds, data.name=voc): -> ({split: Split}, class
    names, origin). Difficult (VOC) and crowd (COCO) objects are ignored by evaluation and
    trained on only with data.train_difficult, as for data.yaml datasets."""
    from keras_suite.common.tfds import detection_records

    records, names, origin = detection_records(dcfg, seed)
    splits = {}
    for name, rec in records.items():
        hard = rec["difficult"]
        box_list, cls_list, scored = [], [], []
        for boxes, classes, (hb, hc) in zip(rec["boxes"], rec["classes"], hard):
            extra = dcfg.train_difficult and len(hc)
            box_list.append(np.concatenate([boxes, hb]) if extra else boxes)
            cls_list.append(np.concatenate([classes, hc]) if extra else classes)
            scored.append(np.arange(len(box_list[-1])) < len(boxes))
        boxes, classes, cut = pad_targets(box_list, cls_list, dcfg.max_boxes)
        if cut:
            log.warning("%d boxes beyond data.max_boxes=%d were dropped", cut, dcfg.max_boxes)
        mask = np.zeros(classes.shape, bool)
        for i, flags in enumerate(scored):
            mask[i, : min(len(flags), dcfg.max_boxes)] = flags[: dcfg.max_boxes]
        has_hard, has_crowd = any(len(c) for _, c in hard), any(len(c) for _, c in rec["crowd"])
        split = Split(
            rec["images"],
            boxes,
            classes,
            rec["crowd"] if has_crowd else None,
            hard if has_hard else None,
            mask if has_hard and dcfg.train_difficult else None,
        )
        split.source_sizes = np.asarray(rec["sizes"], np.float64).reshape(-1, 2)
        splits[name] = split
    return splits, names, origin
