"""Image classification: the app contract implemented for the classifier."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_suite import common
from keras_suite.apps.classification import config as cfg_lib
from keras_suite.apps.classification import export
from keras_suite.apps.classification.data import build_datasets
from keras_suite.apps.classification.model import build_classifier
from keras_suite.common.app import App, TFLiteTarget
from keras_suite.common.errors import UserError
from keras_suite.common.finetune import apply_finetune_gradients, finetune_optimizer
from keras_suite.common.images import read_image_files, read_rgb_upright
from keras_suite.common.plots import plot_confusion_matrix
from keras_suite.common.runlog import write_json_atomic
from keras_suite.common.training import TrainState, replica_mean

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402


def classification_metrics(
    probabilities: np.ndarray, labels: np.ndarray, class_names: list[str]
) -> dict:
    """Top-1, top-5, per-class precision/recall and the confusion matrix."""
    n_classes = len(class_names)
    pred = probabilities.argmax(1)
    k = min(5, n_classes)
    topk = np.argsort(-probabilities, 1)[:, :k]
    confusion = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(confusion, (labels, pred), 1)
    tp = np.diag(confusion).astype(float)
    predicted, actual = confusion.sum(0), confusion.sum(1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    eps = 1e-12
    nll = -np.log(np.clip(probabilities[np.arange(len(labels)), labels], eps, 1.0)).mean()
    return {
        "top1": float((pred == labels).mean()),
        f"top{k}" if k != 5 else "top5": float((topk == labels[:, None]).any(1).mean()),
        "loss": float(nll),
        "macro_precision": float(precision[actual > 0].mean()),
        "macro_recall": float(recall[actual > 0].mean()),
        "num_examples": int(len(labels)),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "support": int(actual[i]),
            }
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": confusion.tolist(),
    }


class ClassificationApp(App):
    name = "classification"
    description = "Image classification (ResNet / MobileNetV2 / keras-hub backbones) on shapes, folders or TFRecords"
    presets = cfg_lib.PRESETS

    def datasets(self, *, cfg, artifacts):
        return build_datasets(cfg)

    def build_state(self, *, cfg, info):
        hub = cfg.model.arch.startswith("hub:")
        if cfg.train.freeze_backbone_epochs and not hub:
            raise UserError(
                "train.freeze_backbone_epochs needs a keras-hub backbone "
                "(--set model.arch=hub:resnet_18_imagenet); this model has none to freeze"
            )
        fine_tuning = hub and (cfg.model.pretrained or cfg.train.freeze_backbone_epochs > 0)
        model = build_classifier(
            cfg.model, info["image_size"], len(info["class_names"]), frozen_batch_norm=fine_tuning
        )
        per_epoch = info["num_train"] // cfg.train.batch_size
        optimizer = finetune_optimizer(cfg.train, cfg.train.epochs * per_epoch, per_epoch, model)
        return TrainState(models={"model": model}, optimizers={"model": optimizer})

    # ---- steps (per replica) ------------------------------------------------------------
    def train_step(self, state, batch, step):
        global_batch_size = step.global_batch_size
        images, labels = batch
        model, optimizer = state.model, state.optimizers["model"]
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            per_example = keras.losses.sparse_categorical_crossentropy(
                labels, logits, from_logits=True
            )
            loss = replica_mean(per_example, global_batch_size)
        # the backbone learns only after train.freeze_backbone_epochs (common/finetune.py)
        apply_finetune_gradients(tape, loss, model, optimizer, step, step.cfg.train.clip_norm)
        correct = tf.cast(tf.equal(tf.argmax(logits, -1), labels), tf.float32)
        return {"loss": loss, "accuracy": replica_mean(correct, global_batch_size)}

    def test_step(self, state, batch, step):
        images, labels = batch
        logits = state.model(images, training=False)
        per_example = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        correct = tf.cast(tf.equal(tf.argmax(logits, -1), labels), tf.float32)
        return {
            "loss": tf.reduce_sum(per_example),
            "accuracy": tf.reduce_sum(correct),
            "count": tf.cast(tf.size(labels), tf.float32),
        }

    # ---- evaluation ---------------------------------------------------------------------
    def predict_probabilities(self, model, dataset):
        predict = tf.function(lambda x: tf.nn.softmax(model(x, training=False)))
        probs, labels = [], []
        for images, y in dataset:
            probs.append(predict(images).numpy())
            labels.append(y.numpy())
        return np.concatenate(probs), np.concatenate(labels)

    def evaluate(self, *, state, data, cfg, run_dir):
        names = data.info["class_names"]
        probs, labels = self.predict_probabilities(state.model, data.test)
        metrics = classification_metrics(probs, labels, names)
        if data.val is not None:
            vp, vl = self.predict_probabilities(state.model, data.val)
            metrics["val_top1"] = float((vp.argmax(1) == vl).mean())
        run_dir = Path(run_dir)
        plot_confusion_matrix(
            np.asarray(metrics["confusion_matrix"]),
            names,
            run_dir / "plots" / "confusion_matrix.png",
            f"Test confusion matrix — top-1 {metrics['top1']:.2%}",
        )
        write_json_atomic(run_dir / "per_class.json", metrics["per_class"])
        return metrics

    # ---- serving ------------------------------------------------------------------------
    def export_archive(self, *, state, info, cfg, artifacts):
        return export.serving_archive(state.model, info)

    def sample_requests(self, *, data, info, cfg):
        images, _ = next(iter(data.test.unbatch().batch(2)))
        images = images.numpy().astype(np.float32)
        encoded = np.array([export.png_bytes(img) for img in images], dtype=object)
        return {"serving_default": [{"images": images}], "serve_bytes": [{"image_bytes": encoded}]}

    predict_inputs = "image files (JPEG/PNG/BMP/GIF)"

    def predict_request(self, *, inputs, info, cfg):
        return "serve_bytes", {"image_bytes": read_image_files(inputs)}

    def predict_examples(self, *, data, info, cfg, out_dir):
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        images, _ = next(iter(data.test.unbatch().batch(3)))
        paths = []
        for i, image in enumerate(images.numpy()):
            paths.append(out_dir / f"example_{i}.png")
            paths[-1].write_bytes(export.png_bytes(image))
        return [str(p) for p in paths]

    def render_predictions(self, *, inputs, outputs, info, out_dir):
        """A contact sheet: each input with its predicted class and confidence."""
        from keras_suite.common.plots import _pyplot, save_figure

        plt = _pyplot()
        n = len(inputs)
        cols = min(n, 6)
        rows = (n + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.6 * rows), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, path, probs, name in zip(
            axes.flat, inputs, outputs["probabilities"], outputs["class_names"]
        ):
            ax.imshow(read_rgb_upright(path))
            label = name.decode() if isinstance(name, bytes) else str(name)
            ax.set_title(f"{label} {float(np.max(probs)):.0%}", fontsize=9)
        return [str(save_figure(fig, Path(out_dir) / "predictions.png", dpi=90))]

    # ---- TFLite -------------------------------------------------------------------------
    def tflite_targets(self, *, state, data, cfg, workdir):
        archive = export.tflite_archive(state.model, data.info)
        path = str(Path(workdir) / "classification_fixed")
        archive.write_out(path, verbose=False)
        split, source, size = data.extras["calibration"]

        def representative_data():
            for images, _ in source.unbatch().batch(1):
                yield {"images": images.numpy().astype(np.float32)}

        return [
            TFLiteTarget(
                name="classifier",
                saved_model_dir=path,
                signature="serving_default",
                representative_data=representative_data,
                calibration_split=f"{split} ({size} images)",
                evaluation_split=f"test ({data.info['num_test']} images)",
            )
        ]

    def tflite_evaluate(self, *, run_signature, data, cfg, info, target):
        probs, labels = [], []
        for images, y in data.test.unbatch().batch(1):
            probs.append(
                np.asarray(
                    run_signature({"images": images.numpy().astype(np.float32)})["probabilities"],
                    np.float32,
                ).reshape(-1)
            )
            labels.append(int(y.numpy()[0]))
        m = classification_metrics(np.stack(probs), np.asarray(labels), info["class_names"])
        return {k: m[k] for k in m if k in ("top1", "top5", "loss")}

    # ---- TensorBoard ---------------------------------------------------------------------
    def tensorboard_images(self, *, state, data, cfg):
        """Eight validation images captioned with the predicted class: green when right,
        red with the true class when wrong."""
        from keras_suite.common.tensorboard import captioned

        if data.val is None:
            return {}
        images, labels = next(iter(data.val.unbatch().take(8).batch(8)))
        predicted = np.argmax(state.model(images, training=False), -1)
        names = data.info["class_names"]
        pictures = []
        for image, truth, guess in zip(images.numpy(), labels.numpy(), predicted):
            if guess == truth:
                pictures.append(captioned(image, names[guess], (0, 220, 0)))
            else:
                caption = f"{names[guess]} (is {names[truth]})"
                pictures.append(captioned(image, caption, (255, 60, 60)))
        return {"val/predictions": np.stack(pictures)}
