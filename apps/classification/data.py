"""Classification data: built-in shapes, class-per-folder trees, or TFRecords."""
from __future__ import annotations

import numpy as np

import common
from common import shapes
from common.app import Datasets
from common.data import eval_pipeline, split_indices, train_pipeline
from common.errors import UserError
from common.images import (decode_resize, folder_splits, read_labels_txt, scan_tfrecords,
                           tfrecord_dataset, tfrecord_files)
from common.runlog import log

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402

# The built-in splits come from fixed generator seeds, independent of the training seed,
# so runs with different seeds are compared on the same test images.
SHAPES_SEEDS = {"train": 1, "val": 2, "test": 3}


def augmenter(seed: int):
    """Label-preserving augmentation applied to whole batches in the input pipeline."""
    return keras.Sequential([
        keras.layers.RandomFlip("horizontal_and_vertical", seed=seed, dtype="float32"),
        keras.layers.RandomTranslation(0.08, 0.08, fill_mode="reflect", seed=seed + 1, dtype="float32"),
        keras.layers.RandomZoom(0.1, fill_mode="reflect", seed=seed + 2, dtype="float32"),
    ], name="augment")


def _shapes_splits(cfg):
    d = cfg.data
    out = {}
    for split, n in (("train", d.num_train), ("val", d.num_val), ("test", d.num_test)):
        images, labels = shapes.classification_images(n, d.image_size, SHAPES_SEEDS[split])
        out[split] = tf.data.Dataset.from_tensor_slices((images, labels)), n
    return out, list(shapes.SHAPES)


def _split_lists(paths, labels, cfg):
    tr, va, te = split_indices(len(paths), cfg.data.val_fraction, cfg.data.test_fraction, cfg.train.seed)
    pick = lambda idx: ([paths[i] for i in idx], labels[idx])  # noqa: E731
    return {"train": pick(tr), "val": pick(va), "test": pick(te)}


def _folder_splits(cfg):
    size = cfg.data.image_size
    found, names = folder_splits(cfg.data.path)
    lists = _split_lists(*found["all"], cfg) if "all" in found else found

    def load(path, label):
        return decode_resize(tf.io.read_file(path), size), label

    out = {}
    for split, (paths, labels) in lists.items():
        ds = tf.data.Dataset.from_tensor_slices((tf.constant(paths, tf.string), tf.constant(labels, tf.int64)))
        ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
        out[split] = (ds.cache() if cfg.data.cache else ds), len(paths)
    return out, names


def _tfrecord_splits(cfg):
    size = cfg.data.image_size
    root = cfg.data.path
    files = {s: tfrecord_files(root, s) for s in ("train", "val", "test")}
    if not files["train"]:
        raise UserError(f"no training TFRecords in {root!r}: expected files named train*.tfrecord "
                        "(and optionally val*/test*) with image/encoded and image/class/label features")
    out, all_labels = {}, []
    scanned = {s: scan_tfrecords(f) for s, f in files.items() if f}
    missing = [s for s in ("val", "test") if s not in scanned]
    if missing:  # carve the missing splits out of the training records
        keep, labels = scanned["train"]
        kept = np.flatnonzero(keep)
        fractions = {"val": cfg.data.val_fraction, "test": cfg.data.test_fraction}
        _, va, te = split_indices(len(kept), *(fractions[s] if s in missing else 0.0 for s in ("val", "test")),
                                  cfg.train.seed)
        taken = {"val": va, "test": te}
        train_mask = keep.copy()
        for split in missing:
            mask = np.zeros_like(keep)
            mask[kept[taken[split]]] = True
            train_mask[kept[taken[split]]] = False
            scanned[split] = (mask, labels)
            files[split] = files["train"]
        scanned["train"] = (train_mask, labels)
    for split, (mask, labels) in scanned.items():
        all_labels.append(labels[mask])
        ds = tfrecord_dataset(files[split], mask).map(
            lambda b, y: (decode_resize(b, size), y), num_parallel_calls=tf.data.AUTOTUNE)
        out[split] = (ds.cache() if cfg.data.cache else ds), int(mask.sum())
    names = read_labels_txt(root) or [f"class_{i}" for i in range(int(np.concatenate(all_labels).max()) + 1)]
    return out, names


def build_datasets(cfg) -> Datasets:
    source = cfg.data.source
    splits, names = {"shapes": _shapes_splits, "folder": _folder_splits, "tfrecord": _tfrecord_splits}[source](cfg)
    counts = {s: n for s, (_, n) in splits.items()}
    log.info("%s data: %s examples, %d classes", source,
             ", ".join(f"{s} {n}" for s, n in counts.items()), len(names))
    batch = cfg.train.batch_size
    if counts["train"] < batch:
        raise UserError(f"only {counts['train']} training images for a global batch of {batch}; "
                        "add images or lower train.batch_size")
    to_float = lambda x, y: (tf.cast(x, tf.float32), tf.cast(y, tf.int64))  # noqa: E731
    augment = augmenter(cfg.train.seed) if cfg.data.augment else None
    batch_map = (lambda x, y: (augment(x, training=True), y)) if augment else None
    train_ds = splits["train"][0]

    def train_epoch(epoch: int):
        return train_pipeline(train_ds, batch, cfg.train.seed, epoch,
                              min(cfg.data.shuffle_buffer, counts["train"]), batch_map, to_float)

    evaluate = lambda s: eval_pipeline(splits[s][0], batch, to_float) if counts.get(s) else None  # noqa: E731
    info = {"class_names": names, "image_size": cfg.data.image_size, "source": source,
            "num_train": counts["train"], "num_val": counts.get("val", 0), "num_test": counts.get("test", 0)}
    return Datasets(train_epoch=train_epoch, steps_per_epoch=counts["train"] // batch,
                    val=evaluate("val"), test=evaluate("test"), info=info)
