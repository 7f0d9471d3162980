"""The detection app: what the shared pipeline calls (common/app.py has the contract)."""
from __future__ import annotations

import numpy as np

import common
from common.app import App, Datasets
from common.errors import UserError
from common.runlog import log
from apps.detection import config as config_lib
from apps.detection import data as data_lib

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402

# Splits are pure functions of the config: cache them so evaluate/export/convert in the
# same process do not regenerate or re-read thousands of images.
_SPLITS: dict = {}


def _load_splits(dcfg):
    key = repr(dcfg)
    if key not in _SPLITS:
        if dcfg.source == "shapes":
            from common import shapes

            splits = {name: data_lib.shapes_split(n, seed, dcfg) for name, n, seed in (
                ("train", dcfg.train_images, 1), ("val", dcfg.val_images, 2),
                ("test", dcfg.test_images, 3))}
            names = list(shapes.SHAPES)
        else:
            from apps.detection import formats

            splits, names = formats.load_dataset(dcfg.source, dcfg.image_size, dcfg.max_boxes)
        _SPLITS.clear()
        _SPLITS[key] = (splits, names)
    return _SPLITS[key]


class DetectionApp(App):
    name = "detection"
    description = "YOLOv8-style anchor-free object detector (CSP backbone, PAN neck, 3 scales)"
    presets = config_lib.PRESETS

    # ---- data and model --------------------------------------------------------------
    def datasets(self, cfg) -> Datasets:
        splits, names = _load_splits(cfg.data)
        train = splits["train"]
        steps = len(train) // cfg.train.batch_size
        if cfg.train.steps_per_epoch:
            steps = min(steps, cfg.train.steps_per_epoch) if steps else 0

        def train_epoch(epoch: int):
            return data_lib.train_dataset(train, cfg.data, cfg.train.batch_size, cfg.train.seed,
                                          epoch, cfg.train.epochs)

        val = splits.get("val")
        test = splits.get("test") or val
        info = {"class_names": names, "num_classes": len(names),
                "image_size": cfg.data.image_size, "reg_max": cfg.model.reg_max,
                "source": cfg.data.source,
                "split_sizes": {k: len(v) for k, v in splits.items()}}
        data = Datasets(train_epoch=train_epoch, steps_per_epoch=steps,
                        val=data_lib.eval_dataset(val, cfg.train.batch_size) if val is not None and len(val) else None,
                        test=data_lib.eval_dataset(test, cfg.train.batch_size) if test is not None else None,
                        info=info)
        data.splits = splits  # the arrays, for metrics against ground truth
        return data

    def build_state(self, cfg, info: dict):
        from apps.detection.model import build_detector
        from common.training import TrainState, make_optimizer

        model = build_detector(info["num_classes"], info["image_size"], cfg.model.variant,
                               cfg.model.reg_max)
        steps = info["split_sizes"]["train"] // cfg.train.batch_size
        if cfg.train.steps_per_epoch:
            steps = min(steps, cfg.train.steps_per_epoch)
        opt = make_optimizer(cfg.train, steps * cfg.train.epochs)
        self._cfg = cfg
        return TrainState(models={"model": model}, optimizers={"model": opt})

    def _anchors(self, image_size: int):
        from apps.detection.model import anchor_points

        points, strides = anchor_points(image_size)
        return tf.constant(points), tf.constant(strides)

    # ---- training --------------------------------------------------------------------
    def _loss(self, state, batch, training: bool):
        from apps.detection.loss import detection_loss

        cfg = self._cfg
        model = state.model
        anchors, strides = self._anchors(model.input_shape[1])
        raw = model(batch["images"], training=training)
        return detection_loss(raw, batch["boxes"], batch["classes"], anchors, strides,
                              model.output_shape[-1] - 4 * cfg.model.reg_max, cfg.model.reg_max,
                              cfg.loss)

    def train_step(self, state, batch, global_batch_size: int) -> dict:
        from common.training import apply_gradients

        # The YOLO loss is normalised over the whole local batch (by the sum of targets),
        # so weight it by this replica's share of the global batch: summing over replicas
        # then gives the batch-size-weighted mean.
        share = tf.cast(tf.shape(batch["images"])[0], tf.float32) / global_batch_size
        with tf.GradientTape() as tape:
            loss, parts = self._loss(state, batch, training=True)
            scaled = loss * share
        apply_gradients(tape, scaled, state.model.trainable_variables, state.optimizers["model"],
                        self._cfg.train.clip_norm)
        return {"loss": scaled, **{k: v * share for k, v in parts.items()}}

    def test_step(self, state, batch) -> dict:
        n = tf.cast(tf.shape(batch["images"])[0], tf.float32)
        loss, parts = self._loss(state, batch, training=False)
        return {"loss": loss * n, **{k: v * n for k, v in parts.items()}, "count": n}
