"""The detection app: what the shared pipeline calls (common/app.py has the contract)."""

from __future__ import annotations

import numpy as np

from keras_suite import common
from keras_suite.apps.detection import config as config_lib
from keras_suite.apps.detection import data as data_lib
from keras_suite.common import cache
from keras_suite.common.app import App, Datasets
from keras_suite.common.duplicates import IMAGE_RULE, evaluation_split
from keras_suite.common.errors import UserError
from keras_suite.common.runlog import log

tf = common.quiet_import_tensorflow()


def _load_splits(dcfg, seed: int):
    """-> ({split: Split}, class names, {split: where it came from}, {split: copies of an
    earlier split's images removed}). Splits are pure functions of the config, so
    evaluate/export/convert in one process share them (keras_suite/common/cache.py)."""

    def read():
        splits, names, origin = _read_splits(dcfg, seed)
        splits, removed = data_lib.without_copies(splits)
        return splits, names, origin, removed

    return cache.last_value("detection.splits", (repr(dcfg), seed), read)


def _read_splits(dcfg, seed: int):
    if dcfg.source == "shapes":
        from keras_suite.common import shapes

        splits = {
            name: data_lib.shapes_split(n, split_seed, dcfg)
            for name, n, split_seed in (
                ("train", dcfg.train_images, 1),
                ("val", dcfg.val_images, 2),
                ("test", dcfg.test_images, 3),
            )
        }
        names = list(shapes.SHAPES)
        origin = {name: "generated" for name in splits}
    elif dcfg.source == "tfds":  # a dataset by name: keras_suite/common/tfds.py
        splits, names, origin = data_lib.tfds_splits(dcfg, seed)
    else:
        from keras_suite.apps.detection import formats
        from keras_suite.common.data import carve_missing_splits

        splits, names = formats.load_dataset(
            dcfg.source, dcfg.image_size, dcfg.max_boxes, dcfg.train_difficult
        )
        splits = {k: v for k, v in splits.items() if len(v)}
        origin = {name: "data.yaml" for name in splits}
        missing = [s for s in ("val", "test") if s not in splits]
        keep, carved = carve_missing_splits(
            len(splits["train"]), missing, dcfg.val_fraction, dcfg.test_fraction, seed
        )
        for name, idx in carved.items():
            splits[name] = splits["train"].take(idx)
            origin[name] = (
                f"carved from train (data.{name}_fraction={getattr(dcfg, name + '_fraction')})"
            )
        splits["train"] = splits["train"].take(keep)
    return splits, names, origin


def describe_augmentation(dcfg) -> str:
    return (
        f"mosaic {dcfg.mosaic:g} (off in the last {dcfg.close_mosaic_epochs} epochs), horizontal flip "
        f"{'on' if dcfg.flip else 'off'}, no vertical flip, shift {dcfg.translate:g}, zoom {dcfg.zoom:g}"
        + (
            " (turn data.flip off when left/right matters: text, digits, signs)"
            if dcfg.flip
            else ""
        )
    )


class DetectionApp(App):
    name = "detection"
    description = "YOLOv8-style anchor-free object detector (CSP backbone, PAN neck, 3 scales)"
    presets = config_lib.PRESETS

    # ---- data and model --------------------------------------------------------------
    def datasets(self, *, cfg, artifacts) -> Datasets:
        splits, names, origin, removed = _load_splits(cfg.data, cfg.train.seed)
        if not len(splits.get("test") or []):
            copies = removed.get("test", 0)
            raise UserError(
                "the dataset has no test images"
                + (f" ({copies} were copies of training/validation images)" if copies else "")
                + ": add a test: entry to data.yaml or set data.test_fraction > 0; the test "
                "split is what evaluation scores, and it never falls back to val or train"
            )
        log.info(
            "detection data, %d classes: %s",
            len(names),
            ", ".join(f"{k} {len(v)} images ({origin[k]})" for k, v in splits.items()),
        )
        log.info("augmentation: %s", describe_augmentation(cfg.data))
        train = splits["train"]
        steps = len(train) // cfg.train.batch_size
        if cfg.train.steps_per_epoch:
            steps = min(steps, cfg.train.steps_per_epoch) if steps else 0

        train_epoch = data_lib.TrainPipeline(
            train, cfg.data, cfg.train.batch_size, cfg.train.seed, cfg.train.epochs
        )

        val, test = splits.get("val"), splits["test"]
        info = {
            "class_names": names,
            "num_classes": len(names),
            "image_size": cfg.data.image_size,
            "reg_max": cfg.model.reg_max,
            "source": cfg.data.source,
            "split_sizes": {k: len(v) for k, v in splits.items()},
            "evaluation_split": evaluation_split("test", len(test), removed, IMAGE_RULE),
            "split_origin": origin,
        }
        sizes = [getattr(v, "source_sizes", None) for v in splits.values()]
        sizes = np.concatenate([s for s in sizes if s is not None and len(s)] or [np.zeros((0, 2))])
        if len(sizes):
            info["image_sizes"] = {
                "min": sizes.min(0).astype(int).tolist(),
                "max": sizes.max(0).astype(int).tolist(),
            }
        data = Datasets(
            train_epoch=train_epoch,
            steps_per_epoch=steps,
            val=data_lib.eval_dataset(val, cfg.train.batch_size)
            if val is not None and len(val)
            else None,
            test=data_lib.eval_dataset(test, cfg.train.batch_size),
            info=info,
            # the arrays, for metrics against ground truth; int8 calibration
            # draws from the first epoch trained at the exported size
            extras={"splits": splits, "calibration_epoch": train_epoch.first_full_size_epoch},
        )
        return data

    def build_state(self, *, cfg, info):
        from keras_suite.apps.detection.model import build_detector
        from keras_suite.common.finetune import finetune_optimizer
        from keras_suite.common.training import TrainState

        m = cfg.model
        if cfg.train.freeze_backbone_epochs and not m.backbone:
            raise UserError(
                "train.freeze_backbone_epochs needs a keras-hub backbone "
                "(--set model.backbone=hub:resnet_18_imagenet)"
            )
        fine_tuning = bool(m.backbone) and (m.pretrained or cfg.train.freeze_backbone_epochs > 0)
        model = build_detector(
            info["num_classes"],
            m.variant,
            m.reg_max,
            backbone=m.backbone,
            pretrained=m.pretrained,
            frozen_batch_norm=fine_tuning,
        )
        steps = info["split_sizes"]["train"] // cfg.train.batch_size
        if cfg.train.steps_per_epoch:
            steps = min(steps, cfg.train.steps_per_epoch)
        opt = finetune_optimizer(cfg.train, steps * cfg.train.epochs, steps, model)
        return TrainState(models={"model": model}, optimizers={"model": opt})

    def _anchors(self, image_size: int):
        from keras_suite.apps.detection.model import anchor_points

        points, strides = anchor_points(image_size)
        return tf.constant(points), tf.constant(strides)

    # ---- training --------------------------------------------------------------------
    def _loss(self, state, batch, cfg, training: bool):
        from keras_suite.apps.detection.losses import detection_loss

        model = state.model
        anchors, strides = self._anchors(batch["images"].shape[1])
        raw = model(batch["images"], training=training)
        return detection_loss(
            raw,
            batch["boxes"],
            batch["classes"],
            anchors,
            strides,
            model.output_shape[-1] - 4 * cfg.model.reg_max,
            cfg.model.reg_max,
            cfg.loss,
        )

    def train_step(self, state, batch, step) -> dict:
        from keras_suite.common.finetune import apply_finetune_gradients

        # The YOLO loss is normalised over the whole local batch (by the sum of targets),
        # so weight it by this replica's share of the global batch: summing over replicas
        # then gives the batch-size-weighted mean.
        share = tf.cast(tf.shape(batch["images"])[0], tf.float32) / step.global_batch_size
        with tf.GradientTape() as tape:
            loss, parts = self._loss(state, batch, step.cfg, training=True)
            scaled = loss * share
        # a keras-hub backbone learns only after train.freeze_backbone_epochs
        apply_finetune_gradients(
            tape, scaled, state.model, state.optimizers["model"], step, step.cfg.train.clip_norm
        )
        return {"loss": scaled, **{k: v * share for k, v in parts.items()}}

    def test_step(self, state, batch, step) -> dict:
        n = tf.cast(tf.shape(batch["images"])[0], tf.float32)
        loss, parts = self._loss(state, batch, step.cfg, training=False)
        return {"loss": loss * n, **{k: v * n for k, v in parts.items()}, "count": n}

    # ---- evaluation ------------------------------------------------------------------
    def _split(self, data, name):
        splits = data.extras.get("splits")
        if splits is None:
            raise UserError("these datasets were not built by the detection app")
        split = splits.get(name)
        if split is None or not len(split):
            raise UserError(
                f"the dataset has no {name} images to evaluate on; add a {name}: entry to data.yaml"
            )
        return split

    def evaluate(self, *, state, data, cfg, run_dir) -> dict:
        from keras_suite.apps.detection.evaluate import evaluate_model

        metrics = evaluate_model(state.model, self._split(data, "test"), cfg, data.info, run_dir)
        coco = metrics["coco"]
        log.info(
            "test mAP@[.5:.95] %.4f, mAP@.5 %.4f, mAP@.75 %.4f on %d images (serving signature); "
            "COCO protocol: AP %.4f, AP50 %.4f, AP75 %.4f, APs/m/l %.3f/%.3f/%.3f, AR100 %.4f",
            metrics["map_50_95"],
            metrics["map_50"],
            metrics["map_75"],
            metrics["num_images"],
            coco["AP"],
            coco["AP50"],
            coco["AP75"],
            coco["APs"],
            coco["APm"],
            coco["APl"],
            coco["AR100"],
        )
        return metrics

    # ---- deployment ------------------------------------------------------------------
    def export_archive(self, *, state, info, cfg, artifacts):
        from keras_suite.apps.detection.export import serving_archive

        return serving_archive(state.model, info, cfg)

    def sample_requests(self, *, data, info, cfg) -> dict:
        from keras_suite.apps.detection.export import png_bytes

        split = self._split(data, "test")
        encoded = np.array(
            [png_bytes(split.images[i]) for i in range(min(2, len(split)))], dtype=object
        )
        return {"serving_default": [{"images": encoded}]}

    predict_inputs = "image files (JPEG/PNG/BMP/GIF)"

    def predict_request(self, *, inputs, info, cfg):
        from keras_suite.common.images import read_image_files

        return "serving_default", {"images": read_image_files(inputs)}

    def predict_examples(self, *, data, info, cfg, out_dir) -> list:
        from pathlib import Path

        from keras_suite.apps.detection.export import png_bytes

        split = self._split(data, "test")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for i in range(min(2, len(split))):
            paths.append(out_dir / f"example_{i}.png")
            paths[-1].write_bytes(png_bytes(split.images[i]))
        return [str(p) for p in paths]

    def render_predictions(self, *, inputs, outputs, info, out_dir) -> list:
        """One PNG per input: the original image with boxes, class names and scores."""
        from pathlib import Path

        from keras_suite.apps.detection.render import draw_detections, read_rgb, save_png

        written = []
        names = info["class_names"]
        for i, p in enumerate(inputs):
            image = read_rgb(p)
            if image is None:
                continue
            n = int(np.asarray(outputs["num_detections"])[i])
            img = draw_detections(
                image,
                np.asarray(outputs["boxes"])[i, :n],
                np.asarray(outputs["scores"])[i, :n],
                np.asarray(outputs["classes"])[i, :n],
                names,
                thickness=2,
            )
            written.append(save_png(img, Path(out_dir) / f"{Path(p).stem}_detections.png"))
        return written

    def tflite_targets(self, *, state, data, cfg, workdir) -> list:
        from pathlib import Path

        from keras_suite.apps.detection.export import tflite_archive
        from keras_suite.common.app import TFLiteTarget

        path = str(Path(workdir) / "detection_fixed")
        tflite_archive(state.model, data.info, cfg).write_out(path, verbose=False)
        pipeline, epoch = data.train_epoch, data.extras["calibration_epoch"]

        def representative_data():
            # Calibrate on what the model trains on (augmented training batches), at the
            # exported size (progressive resizing starts smaller).
            for batch in pipeline(epoch):
                for image in batch["images"].numpy():
                    yield {"images": image[None].astype(np.float32)}

        return [
            TFLiteTarget(
                name="detector",
                saved_model_dir=path,
                signature="serving_default",
                representative_data=representative_data,
                calibration_split=f"train (augmented batches of epoch {epoch + 1})",
                evaluation_split=f"test ({len(self._split(data, 'test'))} images)",
            )
        ]

    def tflite_evaluate(self, *, run_signature, data, cfg, info, target) -> dict:
        from keras_suite.apps.detection.metrics import evaluate_detections

        split = self._split(data, "test")
        preds, gts = [], []
        for i in range(len(split)):
            out = run_signature({"images": split.images[i][None].astype(np.float32)})
            n = int(np.asarray(out["num_detections"]).reshape(-1)[0])
            preds.append(
                (
                    np.asarray(out["boxes"])[0, :n],
                    np.asarray(out["scores"])[0, :n],
                    np.asarray(out["classes"])[0, :n].astype(np.int64),
                )
            )
            gts.append(split.ground_truth(i))
        m = evaluate_detections(
            preds,
            gts,
            info["num_classes"],
            cfg.post.max_detections,
            info["class_names"],
            **split.ignored(),
        )
        return {k: m[k] for k in ("map_50_95", "map_50", "map_75")}

    # ---- TensorBoard ---------------------------------------------------------------------
    def tensorboard_images(self, *, state, data, cfg):
        """Boxes on the first four validation images (ground truth in thin white)."""
        from keras_suite.apps.detection.evaluate import make_predict_fn
        from keras_suite.apps.detection.render import draw_detections
        from keras_suite.common.tensorboard import enlarge

        val = (data.extras.get("splits") or {}).get("val")
        if val is None or not len(val):
            return {}
        info, model = data.info, state.model
        predict = cache.last_value(  # traced once per model, not once per epoch
            "detection.tensorboard",
            model,
            lambda: make_predict_fn(model, cfg, info, cfg.post.score_threshold),
        )
        images = val.images[:4]
        out = {k: v.numpy() for k, v in predict(tf.constant(images, tf.float32)).items()}
        pictures = []
        for i, image in enumerate(images):
            # drawn on the enlarged image, so that labels stay legible on small inputs
            big = enlarge(image.astype(np.uint8), 256)
            scale = big.shape[0] / image.shape[0]
            n = int(out["num_detections"][i])
            pictures.append(
                draw_detections(
                    big,
                    out["boxes"][i, :n] * scale,
                    out["scores"][i, :n],
                    out["classes"][i, :n],
                    info["class_names"],
                    ground_truth=val.ground_truth(i)[0] * scale,
                )
            )
        return {"val/detections": np.stack(pictures)}
