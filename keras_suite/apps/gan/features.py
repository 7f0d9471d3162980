"""The feature network behind FID/KID/precision/recall, available offline.

Default: a small CNN classifier trained by this app on the run's domain — the built-in
shapes (8 classes), or the classes of a user folder — whose global-average-pooled last
conv layer (post-ReLU, like InceptionV3's pool3) gives the features. It is trained once
per run, in `datasets()`, and kept in the run's artifacts so evaluate/convert in a later
process score with the very same network. Every report names it
("FID (shapes-classifier features)"); the numbers compare runs with each other and with
the held-out real set, not with published Inception FIDs.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from keras_suite import common
from keras_suite.common import shapes
from keras_suite.common.errors import UserError
from keras_suite.common.runlog import log

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402
from keras import layers  # noqa: E402

WEIGHTS = "feature_classifier.weights.h5"
META = "feature_classifier.json"


def build_classifier(image_size: int, num_classes: int) -> keras.Model:
    inputs = keras.Input((image_size, image_size, 3), name="images")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0)(inputs)
    for i, ch in enumerate((32, 64, 128)):
        for j in "ab":
            x = layers.Conv2D(ch, 3, padding="same", use_bias=False, name=f"conv{i}{j}")(x)
            x = layers.BatchNormalization(momentum=0.9, name=f"bn{i}{j}")(x)
            x = layers.ReLU(name=f"relu{i}{j}")(x)
        if i < 2:
            x = layers.MaxPooling2D(2)(x)
    features = layers.GlobalAveragePooling2D(name="features")(x)
    logits = layers.Dense(num_classes, name="logits")(features)
    return keras.Model(inputs, [features, logits], name="feature_classifier")


def classifier_training_set(cfg, real_train, class_names):
    """(images, labels, domain name): the run's own labelled images, or built-in shapes
    when a user folder has no classes."""
    images, labels = real_train
    if class_names and len(class_names) > 1:
        return images, labels, class_names, ("shapes" if cfg.data.source == "shapes" else "folder")
    log.info("the data has no classes: the FID/KID feature network is trained on built-in shapes")
    imgs, labs = shapes.classification_images(cfg.metrics.classifier_images, cfg.data.image_size, 5)
    return imgs, labs, list(shapes.SHAPES), "shapes"


def train_classifier(cfg, real_train, real_test, class_names, artifacts) -> None:
    """Train the feature classifier and write it (weights + a description) to artifacts."""
    images, labels, names, domain = classifier_training_set(cfg, real_train, class_names)
    n = min(len(images), max(cfg.metrics.classifier_images, 1))
    images, labels = images[:n], labels[:n]
    model = build_classifier(cfg.data.image_size, len(names))
    keras.utils.set_random_seed(cfg.train.seed + 7)
    logits_model = keras.Model(model.input, model.outputs[1])
    logits_model.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    log.info(
        "training the FID/KID feature classifier on %d %s images (%d classes, %d epochs)",
        n,
        domain,
        len(names),
        cfg.metrics.classifier_epochs,
    )
    logits_model.fit(
        images.astype(np.float32),
        labels,
        batch_size=64,
        epochs=cfg.metrics.classifier_epochs,
        verbose=0,
        shuffle=True,
    )
    accuracy = None
    if domain != "shapes" or cfg.data.source == "shapes":
        test_images, test_labels = real_test
        if len(test_images) and len(names) > 1:
            pred = logits_model.predict(
                test_images.astype(np.float32), batch_size=256, verbose=0
            ).argmax(1)
            accuracy = float((pred == test_labels).mean())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / WEIGHTS
        model.save_weights(path)
        artifacts.write_bytes(WEIGHTS, path.read_bytes())
    meta = {
        "name": f"{domain}-classifier",
        "domain": domain,
        "classes": names,
        "image_size": cfg.data.image_size,
        "train_images": int(n),
        "epochs": cfg.metrics.classifier_epochs,
        "test_accuracy": accuracy,
        "feature_dim": 128,
        "layer": "global average pool of the last conv (post-ReLU)",
    }
    artifacts.write_text(META, json.dumps(meta, indent=2))
    log.info(
        "feature classifier %s: test accuracy %s",
        meta["name"],
        "n/a" if accuracy is None else f"{accuracy:.3f}",
    )
    # Back to the run's seed: the epoch shuffles (tf.data, op seed + global seed) and the
    # initial weights must not depend on whether this process trained the classifier, or a
    # resumed run would see other batches than the interrupted one.
    keras.utils.set_random_seed(cfg.train.seed)


class FeatureNet:
    """images uint8/float 0..255 [N, S, S, 3] -> features [N, D]."""

    def __init__(self, model, name: str, meta: dict):
        self.model, self.name, self.meta = model, name, meta
        self._fn = tf.function(
            lambda x: (
                model(x, training=False)[0]
                if isinstance(model.output, list)
                else model(x, training=False)
            )
        )

    def __call__(self, images, batch_size=256) -> np.ndarray:
        out = [
            self._fn(tf.constant(np.asarray(images[i : i + batch_size], np.float32))).numpy()
            for i in range(0, len(images), batch_size)
        ]
        return np.concatenate(out).astype(np.float64)

    @property
    def tag(self) -> str:  # used in metric keys: fid_shapes_classifier, ...
        return self.name.replace("-", "_")


def load_feature_net(cfg, artifacts) -> FeatureNet:
    if cfg.metrics.features == "inception_v3":
        return _inception(cfg)
    meta = json.loads(artifacts.read_text(META))
    model = build_classifier(meta["image_size"], len(meta["classes"]))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / WEIGHTS
        path.write_bytes(artifacts.read_bytes(WEIGHTS))
        model.load_weights(path)
    return FeatureNet(model, meta["name"], meta)


def _inception(cfg) -> FeatureNet:
    try:
        base = keras.applications.InceptionV3(include_top=False, pooling="avg", weights="imagenet")
    except Exception as exc:  # no network, no cached weights
        raise UserError(
            f"metrics.features=inception_v3 needs the ImageNet InceptionV3 weights, which could not "
            f"be loaded ({str(exc).splitlines()[0][:120]}); use metrics.features=classifier "
            "offline"
        ) from None
    inputs = keras.Input((cfg.data.image_size, cfg.data.image_size, 3))
    x = layers.Resizing(299, 299, interpolation="bilinear")(inputs)
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0)(x)
    model = keras.Model(inputs, base(x))
    return FeatureNet(model, "inception-v3", {"name": "inception-v3", "layer": "pool3 (2048)"})
