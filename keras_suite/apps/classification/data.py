"""Classification data: built-in shapes, class-per-folder trees, or TFRecords."""

from __future__ import annotations

import numpy as np

from keras_suite import common
from keras_suite.common import shapes
from keras_suite.common.app import Datasets
from keras_suite.common.data import carve_missing_splits, eval_pipeline, train_pipeline
from keras_suite.common.duplicates import (
    IMAGE_RULE,
    dataset_hashes,
    disjoint_indices,
    evaluation_split,
    keep_elements,
    log_removed,
)
from keras_suite.common.errors import UserError
from keras_suite.common.images import (
    decode_resize,
    folder_splits,
    image_size_range,
    read_labels_txt,
    scan_tfrecords,
    tfrecord_dataset,
    tfrecord_files,
)
from keras_suite.common.runlog import log

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402

# The built-in splits come from fixed generator seeds, independent of the training seed,
# so runs with different seeds are compared on the same test images.
SHAPES_SEEDS = {"train": 1, "val": 2, "test": 3}


def augmentation_layers(dcfg, seed: int) -> list:
    """The augmentation the config asks for, applied to whole training batches.

    Small shifts and zooms keep the label of nearly any image. Flips and rotations do not
    (a mirrored 2 or "b" is another class; a road scene upside down is not a road scene),
    so each is a switch: horizontal flip on by default, vertical flip and rotation off."""
    layers = []
    if dcfg.hflip or dcfg.vflip:
        mode = (
            "horizontal_and_vertical"
            if dcfg.hflip and dcfg.vflip
            else "horizontal"
            if dcfg.hflip
            else "vertical"
        )
        layers.append(keras.layers.RandomFlip(mode, seed=seed, dtype="float32"))
    if dcfg.rotation:
        layers.append(
            keras.layers.RandomRotation(
                dcfg.rotation, fill_mode="reflect", seed=seed + 3, dtype="float32"
            )
        )
    layers += [
        keras.layers.RandomTranslation(
            0.08, 0.08, fill_mode="reflect", seed=seed + 1, dtype="float32"
        ),
        keras.layers.RandomZoom(0.1, fill_mode="reflect", seed=seed + 2, dtype="float32"),
    ]
    if dcfg.color_jitter:
        j = dcfg.color_jitter
        layers += [
            keras.layers.RandomBrightness(j, value_range=(0, 255), seed=seed + 4, dtype="float32"),
            keras.layers.RandomContrast(j, seed=seed + 5, dtype="float32"),
        ]
    return layers


def describe_augmentation(dcfg) -> str:
    if not dcfg.augment:
        return "off (data.augment=false)"
    return (
        f"horizontal flip {'on' if dcfg.hflip else 'off'}, vertical flip {'on' if dcfg.vflip else 'off'}, "
        f"rotation {dcfg.rotation:g} turn, colour jitter {dcfg.color_jitter:g}, shift 0.08, zoom 0.1"
        + (
            " (turn data.hflip off for orientation-sensitive data: digits, text)"
            if dcfg.hflip
            else ""
        )
    )


def augmenter(dcfg, seed: int):
    return keras.Sequential(augmentation_layers(dcfg, seed), name="augment")


def _shapes_splits(cfg):
    d = cfg.data
    out = {}
    for split, n in (("train", d.num_train), ("val", d.num_val), ("test", d.num_test)):
        images, labels = shapes.classification_images(n, d.image_size, SHAPES_SEEDS[split])
        out[split] = tf.data.Dataset.from_tensor_slices((images, labels)), n
    return out, list(shapes.SHAPES), {s: "generated" for s in out}, None


def _carve(found: dict, cfg) -> tuple[dict, dict]:
    """Fill in the splits the user's layout lacks from its training images:
    -> ({split: (paths, labels)}, {split: where it came from})."""
    if "all" in found:
        found = {"train": found.pop("all")}
        origin = {}
    else:
        origin = {s: f"{s}/ folder" for s in found}
    paths, labels = found["train"]
    missing = [s for s in ("val", "test") if s not in found]
    keep, carved = carve_missing_splits(
        len(paths), missing, cfg.data.val_fraction, cfg.data.test_fraction, cfg.train.seed
    )
    pick = lambda idx: ([paths[i] for i in idx], labels[idx])  # noqa: E731
    out = dict(found, train=pick(keep))
    origin.setdefault("train", "the image tree")
    for split, idx in carved.items():
        out[split] = pick(idx)
        origin[split] = (
            f"carved from train (data.{split}_fraction={getattr(cfg.data, split + '_fraction')})"
        )
    return out, origin


def _folder_splits(cfg):
    size = cfg.data.image_size
    found, names = folder_splits(cfg.data.path)
    lists, origin = _carve(found, cfg)

    def load(path, label):
        return decode_resize(tf.io.read_file(path), size), label

    out = {}
    for split, (paths, labels) in lists.items():
        ds = tf.data.Dataset.from_tensor_slices(
            (tf.constant(paths, tf.string), tf.constant(labels, tf.int64))
        )
        ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
        out[split] = (ds.cache() if cfg.data.cache else ds), len(paths)
    return out, names, origin, image_size_range(p for paths, _ in lists.values() for p in paths)


def _tfrecord_splits(cfg):
    size = cfg.data.image_size
    root = cfg.data.path
    files = {s: tfrecord_files(root, s) for s in ("train", "val", "test")}
    if not files["train"]:
        raise UserError(
            f"no training TFRecords in {root!r}: expected files named train*.tfrecord "
            "(and optionally val*/test*) with image/encoded and image/class/label features"
        )
    out, all_labels = {}, []
    scanned = {s: scan_tfrecords(f) for s, f in files.items() if f}
    missing = [s for s in ("val", "test") if s not in scanned]
    if missing:  # carve the missing splits out of the training records
        keep, labels = scanned["train"]
        kept = np.flatnonzero(keep)
        kept_train, carved = carve_missing_splits(
            len(kept), missing, cfg.data.val_fraction, cfg.data.test_fraction, cfg.train.seed
        )
        for split, idx in carved.items():
            mask = np.zeros_like(keep)
            mask[kept[idx]] = True
            scanned[split] = (mask, labels)
            files[split] = files["train"]
        train_mask = np.zeros_like(keep)
        train_mask[kept[kept_train]] = True
        scanned["train"] = (train_mask, labels)
    for split, (mask, labels) in scanned.items():
        all_labels.append(labels[mask])
        ds = tfrecord_dataset(files[split], mask).map(
            lambda b, y: (decode_resize(b, size), y), num_parallel_calls=tf.data.AUTOTUNE
        )
        out[split] = (ds.cache() if cfg.data.cache else ds), int(mask.sum())
    names = read_labels_txt(root) or [
        f"class_{i}" for i in range(int(np.concatenate(all_labels).max()) + 1)
    ]
    origin = {s: ("carved from train records" if s in missing else f"{s}* records") for s in out}
    return out, names, origin, None


def _tfds_splits(cfg):
    from keras_suite.common.tfds import classification_splits

    return (*classification_splits(cfg.data, cfg.train.seed), None)


def _without_copies(splits: dict) -> tuple[dict, dict]:
    """Drop val/test images whose pixels at the model input size (8-bit) equal an earlier
    split's: -> ({split: (dataset, count)}, {split: removed}). One decoding pass over every
    image; a cached folder keeps what it decoded."""

    def pixels(image, label):
        return tf.cast(tf.round(tf.cast(image, tf.float32)), tf.uint8)

    hashes = {
        split: dataset_hashes(ds.map(pixels, num_parallel_calls=tf.data.AUTOTUNE))
        for split, (ds, n) in splits.items()
        if n
    }
    keep, removed = disjoint_indices(hashes)
    log_removed(removed)
    return {
        split: (keep_elements(ds, keep[split], n), len(keep[split])) if split in keep else (ds, n)
        for split, (ds, n) in splits.items()
    }, removed


def build_datasets(cfg) -> Datasets:
    source = cfg.data.source
    splits, names, origin, image_sizes = {
        "shapes": _shapes_splits,
        "folder": _folder_splits,
        "tfrecord": _tfrecord_splits,
        "tfds": _tfds_splits,
    }[source](cfg)
    splits, removed = _without_copies(splits)
    counts = {s: n for s, (_, n) in splits.items() if n}
    log.info(
        "%s data, %d classes: %s",
        source,
        len(names),
        ", ".join(
            f"{s} {counts[s]} ({origin[s]})" for s in ("train", "val", "test") if s in counts
        ),
    )
    missing = [s for s in ("val", "test") if s not in counts]
    if "test" in missing:
        copies = (
            f", {removed['test']} were copies of training/validation images"
            if removed.get("test")
            else ""
        )
        raise UserError(
            f"the data has no test images (data.test_fraction={cfg.data.test_fraction}{copies}); "
            "add a test/ folder of other images or set data.test_fraction > 0 so evaluation "
            "has images to score"
        )
    log.info("augmentation: %s", describe_augmentation(cfg.data))
    batch = cfg.train.batch_size
    if counts["train"] < batch:
        raise UserError(
            f"only {counts['train']} training images for a global batch of {batch}; "
            "add images or lower train.batch_size"
        )
    to_float = lambda x, y: (tf.cast(x, tf.float32), tf.cast(y, tf.int64))  # noqa: E731
    augment = augmenter(cfg.data, cfg.train.seed) if cfg.data.augment else None
    batch_map = (lambda x, y: (augment(x, training=True), y)) if augment else None
    train_ds = splits["train"][0]

    def train_epoch(epoch: int):
        return train_pipeline(
            train_ds,
            batch,
            cfg.train.seed,
            epoch,
            min(cfg.data.shuffle_buffer, counts["train"]),
            batch_map,
            to_float,
        )

    evaluate = lambda s: eval_pipeline(splits[s][0], batch, to_float) if counts.get(s) else None  # noqa: E731
    info = {
        "class_names": names,
        "image_size": cfg.data.image_size,
        "source": source,
        "num_train": counts["train"],
        "num_val": counts.get("val", 0),
        "num_test": counts.get("test", 0),
        "split_sizes": counts,
        "evaluation_split": evaluation_split("test", counts["test"], removed, IMAGE_RULE),
        "split_origin": {s: origin[s] for s in counts},
    }
    if image_sizes:
        info["image_sizes"] = image_sizes
    # int8 calibration never sees the test images the parity report scores
    calibration = "val" if counts.get("val") else "train"
    return Datasets(
        train_epoch=train_epoch,
        steps_per_epoch=counts["train"] // batch,
        val=evaluate("val"),
        test=evaluate("test"),
        info=info,
        extras={"calibration": (calibration, evaluate(calibration), counts[calibration])},
    )
