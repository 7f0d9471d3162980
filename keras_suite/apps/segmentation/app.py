"""Semantic segmentation: the app contract implemented for U-Net and DeepLabV3+."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_suite import common
from keras_suite.apps.segmentation import config as config_lib
from keras_suite.apps.segmentation.data import load_dataset
from keras_suite.common.app import App, Datasets, TFLiteTarget
from keras_suite.common.errors import UserError
from keras_suite.common.runlog import log, write_json_atomic

tf = common.quiet_import_tensorflow()

EVAL_BATCH = 32
# how val/test images that copy a training image are found (info["evaluation_split"])
DUPLICATE_RULE = (
    "exact pixel hash: a val image whose decoded pixels equal a training image's, and a test "
    "image equal to a training or kept val image, is removed and counted"
)


def _train_steps(cfg, num_train: int) -> int:
    steps = num_train // cfg.train.batch_size
    return min(steps, cfg.train.steps_per_epoch) if cfg.train.steps_per_epoch else steps


def predict_ids(model, images: np.ndarray, batch: int = EVAL_BATCH) -> np.ndarray:
    """Class-id masks uint8 [n, S, S] of a model over uint8 images, batch by batch."""
    run = tf.function(
        lambda x: tf.argmax(model(x, training=False), -1, output_type=tf.int32),
        reduce_retracing=True,
    )
    out = [
        run(tf.constant(images[i : i + batch], tf.float32)).numpy().astype(np.uint8)
        for i in range(0, len(images), batch)
    ]
    return np.concatenate(out) if out else np.zeros((0,) + images.shape[1:3], np.uint8)


def probability_batches(model, images: np.ndarray, batch: int = EVAL_BATCH):
    """(first index, float32 class probabilities [b, S, S, C]) per batch of uint8 images."""
    run = tf.function(
        lambda x: tf.nn.softmax(tf.cast(model(x, training=False), tf.float32)),
        reduce_retracing=True,
    )
    for i in range(0, len(images), batch):
        yield i, run(tf.constant(images[i : i + batch], tf.float32)).numpy()


def score_split(model, split, num_classes: int, ignore: int, lut=None):
    """-> (confusion at each image's own resolution, confusion at the model size, predicted
    ids at the model size). User data (`lut` given) is scored against its untouched mask
    files: the class probabilities are resized back to the image's size bilinearly, as the
    serving signature does, then the argmax is taken. Built-in scenes are generated at the
    model size, where both matrices are the same one."""
    from keras_suite.apps.segmentation.data import own_resolution_mask
    from keras_suite.apps.segmentation.metrics import ConfusionMatrix

    fixed = ConfusionMatrix(num_classes, ignore)
    own = ConfusionMatrix(num_classes, ignore) if lut is not None and split.files else fixed
    ids = np.zeros(split.masks.shape, np.uint8)
    for start, probs in probability_batches(model, split.images):
        stop = start + len(probs)
        ids[start:stop] = probs.argmax(-1)
        fixed.update(split.masks[start:stop], ids[start:stop])
        if own is fixed:
            continue
        for j, p in enumerate(probs):
            truth = own_resolution_mask(split.files[start + j], lut)
            full = tf.image.resize(p, truth.shape, method="bilinear")
            own.update(truth, tf.argmax(full, -1).numpy())
    return own, fixed, ids


class SegmentationApp(App):
    name = "segmentation"
    description = (
        "Semantic segmentation (U-Net / DeepLabV3+) on shape scenes, mask PNG pairs or Pascal VOC"
    )
    presets = config_lib.PRESETS
    predict_inputs = "image files (JPEG/PNG/BMP/GIF)"
    # `ksuite predict` writes the masks as PNG files (render_predictions); predictions.json
    # keeps these outputs' shapes only, not millions of per-pixel values
    predictions_json_omit = ("class_ids", "mask_png", "probabilities")

    # ---- data and model --------------------------------------------------------------
    def datasets(self, *, cfg, artifacts) -> Datasets:
        from keras_suite.common.data import eval_pipeline, train_pipeline

        dataset = load_dataset(cfg.data, cfg.train.seed)
        splits, names = dataset.splits, dataset.names
        train = splits["train"]
        batch = cfg.train.batch_size
        if len(train) < batch:
            raise UserError(
                f"only {len(train)} training images for a global batch of {batch}; "
                "add images or lower train.batch_size"
            )
        log.info(
            "%s data: %s images at %d px, %d classes",
            cfg.data.source,
            ", ".join(f"{s} {len(v)}" for s, v in splits.items()),
            cfg.data.image_size,
            len(names),
        )
        train_ds = tf.data.Dataset.from_tensor_slices((train.images, train.masks))
        to_float = lambda x, y: (tf.cast(x, tf.float32), y)  # noqa: E731

        def train_epoch(epoch: int):
            return train_pipeline(
                train_ds, batch, cfg.train.seed, epoch, len(train), element_map=to_float
            )

        def evaluation(split):
            if not len(split):
                return None
            return eval_pipeline(
                tf.data.Dataset.from_tensor_slices((split.images, split.masks)), batch, to_float
            )

        info = {
            "class_names": names,
            "num_classes": len(names),
            "image_size": cfg.data.image_size,
            "ignore_index": cfg.data.ignore_index,
            "source": cfg.data.source,
            "num_train": len(train),
            "num_val": len(splits["val"]),
            "num_test": len(splits["test"]),
            "split_sizes": {
                s: len(splits[s]) if s != "train" else len(train) for s in ("train", "val", "test")
            },
            "evaluation_split": {
                "split": "test",
                "size": len(splits["test"]),
                "near_duplicates_removed": dataset.duplicates_removed.get("test", 0),
                "duplicate_rule": DUPLICATE_RULE,
                "origin": dataset.origin["test"],
                "resolution": "each test image's own (masks untouched)"
                if dataset.lut is not None
                else f"{cfg.data.image_size} px (the scenes are generated at the model size)",
            },
            "split_origin": dataset.origin,
            "duplicates_removed": dataset.duplicates_removed,
            "mask_notes": dataset.notes,
        }
        return Datasets(
            train_epoch=train_epoch,
            steps_per_epoch=_train_steps(cfg, len(train)),
            val=evaluation(splits["val"]),
            test=evaluation(splits["test"]),
            info=info,
            extras={"splits": splits, "dataset": dataset},
        )

    def build_state(self, *, cfg, info):
        from keras_suite.apps.segmentation.model import build_segmenter
        from keras_suite.common.finetune import finetune_optimizer
        from keras_suite.common.training import TrainState

        weights = cfg.loss.class_weights
        if weights and len(weights) != info["num_classes"]:
            raise UserError(
                f"loss.class_weights has {len(weights)} values but the data has "
                f"{info['num_classes']} classes ({', '.join(info['class_names'])})"
            )
        if cfg.train.freeze_backbone_epochs and not cfg.model.backbone:
            raise UserError(
                "train.freeze_backbone_epochs needs a keras-hub backbone (--set "
                "model.arch=deeplabv3plus --set model.backbone=hub:resnet_18_imagenet)"
            )
        fine_tuning = bool(cfg.model.backbone) and (
            cfg.model.pretrained or cfg.train.freeze_backbone_epochs > 0
        )
        model = build_segmenter(
            cfg.model, info["image_size"], info["num_classes"], frozen_batch_norm=fine_tuning
        )
        per_epoch = _train_steps(cfg, info["num_train"])
        optimizer = finetune_optimizer(cfg.train, per_epoch * cfg.train.epochs, per_epoch, model)
        return TrainState(models={"model": model}, optimizers={"model": optimizer})

    # ---- training (per replica) --------------------------------------------------------
    def train_step(self, state, batch, step) -> dict:
        from keras_suite.apps.segmentation.augment import augment
        from keras_suite.apps.segmentation.losses import segmentation_loss
        from keras_suite.common.finetune import apply_finetune_gradients
        from keras_suite.common.training import replica_weighted_mean

        cfg = step.cfg
        images, masks = batch
        if cfg.data.augment:
            images, masks = augment(images, masks, step.seed(1), cfg.data)
        model = state.model
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            losses = segmentation_loss(
                logits,
                masks,
                cfg.loss,
                model.output_shape[-1],
                cfg.data.ignore_index,
                step.global_batch_size,
            )
        # a keras-hub backbone learns only after train.freeze_backbone_epochs
        apply_finetune_gradients(
            tape, losses["loss"], model, state.optimizers["model"], step, cfg.train.clip_norm
        )
        labels = tf.cast(masks, tf.int32)
        valid = tf.cast(tf.not_equal(labels, cfg.data.ignore_index), tf.float32)
        correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32)
        return {**losses, "pixel_accuracy": replica_weighted_mean(correct, valid)}

    def test_step(self, state, batch, step) -> dict:
        from keras_suite.apps.segmentation.losses import valid_pixels

        images, masks = batch
        logits = tf.cast(state.model(images, training=False), tf.float32)
        labels, valid = valid_pixels(masks, step.cfg.data.ignore_index)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
        correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32)
        return {
            "ce": tf.reduce_sum(ce * valid),
            "pixel_accuracy": tf.reduce_sum(correct * valid),
            "count": tf.reduce_sum(valid),
        }

    # ---- evaluation --------------------------------------------------------------------
    def _splits(self, data):
        splits = data.extras.get("splits")
        if splits is None:
            raise UserError("these datasets were not built by the segmentation app")
        return splits

    def evaluate(self, *, state, data, cfg, run_dir) -> dict:
        """The headline mIoU is computed at each test image's own resolution (VOC's
        convention: predictions resized back, masks untouched); `miou_fixed_size` is the
        same model scored on the masks resized to the square model input."""
        from keras_suite.apps.segmentation.metrics import ConfusionMatrix
        from keras_suite.apps.segmentation.render import plot_examples, plot_per_class_iou

        names, k = data.info["class_names"], data.info["num_classes"]
        ignore = cfg.data.ignore_index
        splits = self._splits(data)
        test = splits["test"]
        dataset = data.extras.get("dataset")
        lut = dataset.lut if dataset is not None else None
        cm, fixed, pred = score_split(state.model, test, k, ignore, lut)
        metrics = cm.result(names)
        metrics["miou_fixed_size"] = fixed.result()["miou"]
        metrics["num_images"] = len(test)
        if len(splits["val"]):
            val = ConfusionMatrix(k, ignore)
            val.update(splits["val"].masks, predict_ids(state.model, splits["val"].images))
            metrics["val_miou"] = val.result()["miou"]
        metrics["confusion_matrix"] = cm.matrix.tolist()
        # scalars first, then the tables (metrics.json reads top-down)
        metrics = {
            **{k_: v for k_, v in metrics.items() if not isinstance(v, (dict, list))},
            **{k_: v for k_, v in metrics.items() if isinstance(v, (dict, list))},
        }
        run_dir = Path(run_dir)
        shown = min(6, len(test))
        plot_examples(
            test.images[:shown],
            test.masks[:shown],
            pred[:shown],
            names,
            run_dir / "plots" / "examples.png",
            f"test images — mIoU {metrics['miou']:.3f}",
        )
        plot_per_class_iou(
            metrics["per_class"],
            run_dir / "plots" / "per_class_iou.png",
            f"per-class IoU on {len(test)} test images (mIoU {metrics['miou']:.3f})",
        )
        write_json_atomic(run_dir / "per_class.json", metrics["per_class"])
        log.info(
            "test mIoU %.4f (%.4f at the model size), pixel accuracy %.4f, mean Dice %.4f "
            "on %d images",
            metrics["miou"],
            metrics["miou_fixed_size"],
            metrics["pixel_accuracy"],
            metrics["mean_dice"],
            len(test),
        )
        return metrics

    # ---- serving -------------------------------------------------------------------------
    def export_archive(self, *, state, info, cfg, artifacts):
        from keras_suite.apps.segmentation.export import serving_archive

        return serving_archive(state.model, info)

    def sample_requests(self, *, data, info, cfg) -> dict:
        from keras_suite.apps.segmentation.export import png_bytes

        test = self._splits(data)["test"]
        encoded = np.array(
            [png_bytes(test.images[i]) for i in range(min(2, len(test)))], dtype=object
        )
        return {
            "serving_default": [{"images": encoded}],
            "probabilities": [{"images": encoded[:1]}],
        }

    def predict_request(self, *, inputs, info, cfg):
        from keras_suite.common.images import read_image_files

        return "serving_default", {"images": read_image_files(inputs)}

    def render_predictions(self, *, inputs, outputs, info, out_dir) -> list:
        """Per input: <stem>_overlay.png (image | colour mask | overlay) and <stem>_mask.png
        (the class-id PNG, at the input's resolution); with the `probabilities` signature
        also <stem>_probabilities.npy (float16 [H, W, C])."""
        import cv2

        from keras_suite.apps.segmentation.data import read_rgb
        from keras_suite.apps.segmentation.render import save_png, side_by_side

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for i, p in enumerate(inputs):
            stem = Path(p).stem
            image = read_rgb(Path(p))
            h, w = int(np.asarray(outputs["height"])[i]), int(np.asarray(outputs["width"])[i])
            if "class_ids" in outputs:
                ids = np.asarray(outputs["class_ids"])[i, :h, :w]
            else:  # the probabilities signature
                probs = np.asarray(outputs["probabilities"])[i, :h, :w]
                ids = probs.argmax(-1)
                np.save(out_dir / f"{stem}_probabilities.npy", probs.astype(np.float16))
                written.append(str(out_dir / f"{stem}_probabilities.npy"))
            upscale = max(1, 256 // max(h, w))
            written.append(
                save_png(
                    side_by_side(image, ids, info["num_classes"], upscale),
                    out_dir / f"{stem}_overlay.png",
                )
            )
            mask_path = out_dir / f"{stem}_mask.png"
            if "mask_png" in outputs:
                png = np.asarray(outputs["mask_png"], dtype=object)[i]
                mask_path.write_bytes(png if isinstance(png, bytes) else bytes(png))
            else:
                mask_path.write_bytes(cv2.imencode(".png", ids.astype(np.uint8))[1].tobytes())
            written.append(str(mask_path))
        return written

    def predict_examples(self, *, data, info, cfg, out_dir) -> list:
        """Three test images; the last one resized to another shape, so predict shows the
        mask comes back at the input's own resolution."""
        import cv2

        from keras_suite.apps.segmentation.export import png_bytes

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        test = self._splits(data)["test"]
        paths = []
        for i in range(min(3, len(test))):
            image = test.images[i]
            if i == 2:
                size = image.shape[0]
                image = cv2.resize(image, (size * 3 // 2, size), interpolation=cv2.INTER_LINEAR)
            paths.append(out_dir / f"example_{i}.png")
            paths[-1].write_bytes(png_bytes(image))
        return [str(p) for p in paths]

    # ---- TFLite --------------------------------------------------------------------------
    def calibration_images(self, *, data) -> np.ndarray:
        """int8 calibration images: the training split's (disjoint from val and test by
        construction and by pixel hash; the parity report scores the test split)."""
        return self._splits(data)["train"].images

    def tflite_targets(self, *, state, data, cfg, workdir) -> list:
        from keras_suite.apps.segmentation.export import tflite_archive

        path = str(Path(workdir) / "segmentation_fixed")
        tflite_archive(state.model, data.info).write_out(path, verbose=False)
        calibration = self.calibration_images(data=data)

        def representative_data():
            for image in calibration:
                yield {"images": image[None].astype(np.float32)}

        return [
            TFLiteTarget(
                name="segmenter",
                saved_model_dir=path,
                signature="serving_default",
                representative_data=representative_data,
            )
        ]

    def tflite_evaluate(self, *, run_signature, data, cfg, info, target) -> dict:
        from keras_suite.apps.segmentation.metrics import ConfusionMatrix

        test = self._splits(data)["test"]
        cm = ConfusionMatrix(info["num_classes"], cfg.data.ignore_index)
        for i in range(len(test)):
            out = run_signature({"images": test.images[i][None].astype(np.float32)})
            cm.update(test.masks[i], np.asarray(out["class_ids"]).reshape(test.masks[i].shape))
        m = cm.result()
        return {
            "miou": m["miou"],
            "pixel_accuracy": m["pixel_accuracy"],
            "mean_dice": m["mean_dice"],
        }

    # ---- TensorBoard ---------------------------------------------------------------------
    def tensorboard_images(self, *, state, data, cfg):
        """The first four validation images: [image | ground truth | prediction] overlays."""
        from keras_suite.apps.segmentation.render import overlay
        from keras_suite.common import cache
        from keras_suite.common.tensorboard import enlarge

        val = self._splits(data)["val"]
        if not len(val):
            return {}
        model = state.model
        predict = cache.last_value(  # traced once per model, not once per epoch
            "segmentation.tensorboard",
            model,
            lambda: tf.function(lambda x: tf.argmax(model(x, training=False), -1)),
        )
        images, truths = val.images[:4], val.masks[:4]
        preds = predict(tf.constant(images, tf.float32)).numpy()
        k = data.info["num_classes"]
        rows = [
            enlarge(np.concatenate([x, overlay(x, t, k), overlay(x, p, k)], 1))
            for x, t, p in zip(images, truths, preds)
        ]
        return {"val/image_truth_prediction": np.stack(rows)}
