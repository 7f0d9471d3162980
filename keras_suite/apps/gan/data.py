"""GAN data: built-in shapes (8 classes) or a user image folder, with or without class
sub-folders. Images are resized (short side) and centre-cropped to the model resolution
(a GAN must not learn squashed aspect ratios); unreadable files are counted and skipped.

The training pipeline yields (images float32 0..255, labels int64); the test split is
the real reference set of FID/KID and is kept in memory as uint8 (`extras["test_images"]`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_suite import common
from keras_suite.common import shapes
from keras_suite.common.data import split_indices, train_pipeline
from keras_suite.common.duplicates import array_hashes, disjoint_indices, log_removed
from keras_suite.common.errors import UserError
from keras_suite.common.images import IMAGE_EXTENSIONS, decode_upright, readable_images, scan_folder

tf = common.quiet_import_tensorflow()

# Fixed generator seeds, independent of the training seed: every run is compared on the
# same held-out real images.
SHAPES_SEEDS = {"train": 1, "test": 3, "classifier": 5}


def decode_crop(encoded, size: int):
    """Encoded image -> float32 [size, size, 3] in 0..255: short side resized to `size`
    (antialiased), then the centre square cropped."""
    image = tf.cast(decode_upright(encoded), tf.float32)  # phone photos the right way up
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = size / tf.reduce_min(shape)
    new = tf.cast(tf.math.ceil(shape * scale), tf.int32)
    image = tf.image.resize(image, new, antialias=True)
    image = tf.image.resize_with_crop_or_pad(image, size, size)
    return tf.clip_by_value(image, 0.0, 255.0)


def scan_images(root: str | Path):
    """(paths, labels, class_names) of a folder: class sub-folders if it has them, else
    every image below it as one class-less set. Unreadable files are counted, named in the
    log and dropped."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(
            f"data.path {str(root)!r} is not a folder; point it at a folder of images "
            "(optionally one sub-folder per class)"
        )
    loose = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    subdirs = [d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")]
    if subdirs and not loose:
        return scan_folder(root)  # class-per-folder tree (common/images.py counts bad files)
    keep = readable_images(root)  # every readable image below root, bad ones counted and named
    return keep, np.zeros(len(keep), np.int64), []


def load_images(paths: list[str], size: int) -> np.ndarray:
    """Decode + crop a list of files into uint8 [n, size, size, 3] (in-graph decoder)."""
    ds = tf.data.Dataset.from_tensor_slices(tf.constant(paths, tf.string))
    ds = ds.map(
        lambda p: tf.cast(tf.round(decode_crop(tf.io.read_file(p), size)), tf.uint8),
        num_parallel_calls=tf.data.AUTOTUNE,
    ).batch(256)
    return (
        np.concatenate([b.numpy() for b in ds]) if paths else np.zeros((0, size, size, 3), np.uint8)
    )


def real_splits(cfg):
    """{"train": (uint8 images, labels), "test": (...)}, class names ([] = no classes) and
    {split: images removed}: held-out images whose pixels (after the crop to the model
    resolution) equal a training image's are dropped, so FID never compares the generator
    with copies of what it was trained on."""
    out, names = _read_splits(cfg)
    keep, removed = disjoint_indices({s: array_hashes(x) for s, (x, _) in out.items()})
    log_removed(removed)
    return {s: (x[keep[s]], y[keep[s]]) for s, (x, y) in out.items()}, names, removed


def _read_splits(cfg):
    d = cfg.data
    if d.source == "shapes":
        out = {
            s: shapes.classification_images(n, d.image_size, SHAPES_SEEDS[s])
            for s, n in (("train", d.num_train), ("test", d.num_test))
        }
        return out, list(shapes.SHAPES)
    if d.source == "tfds":  # a dataset by name (mnist, celeb_a): keras_suite/common/tfds.py
        from keras_suite.common.tfds import image_splits, to_arrays

        found, names, _ = image_splits(
            "gan", d, cfg.train.seed, ("train", "test"), 0.0, d.test_fraction, crop=True
        )
        return {s: to_arrays(ds, n, d.image_size) for s, (ds, n) in found.items()}, names
    paths, labels, names = scan_images(d.path)
    _, _, test = split_indices(len(paths), 0.0, d.test_fraction, cfg.train.seed)
    is_test = np.zeros(len(paths), bool)
    is_test[test] = True
    out = {}
    for split, mask in (("train", ~is_test), ("test", is_test)):
        idx = np.flatnonzero(mask)
        out[split] = load_images([paths[i] for i in idx], d.image_size), labels[idx]
    return out, list(names)


def train_epoch_fn(images: np.ndarray, labels: np.ndarray, cfg):
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    to_float = lambda x, y: (tf.cast(x, tf.float32), tf.cast(y, tf.int64))  # noqa: E731

    def train_epoch(epoch: int):
        return train_pipeline(
            ds, cfg.train.batch_size, cfg.train.seed, epoch, len(images), None, to_float
        )

    return train_epoch
