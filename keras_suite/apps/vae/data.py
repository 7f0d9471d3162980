"""VAE data: built-in shapes or a user's folder of images, as float32 [S, S, C] pixels.

Pixels are whole numbers 0..255 (the discretised likelihoods score 256 levels per
sub-pixel), or exactly 0/255 when binarised for a Bernoulli decoder. Labels, if a folder
has class sub-folders, are ignored: a VAE models the images alone.
"""

from __future__ import annotations

from pathlib import Path

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
from keras_suite.common.images import decode_resize, readable_images
from keras_suite.common.runlog import log

tf = common.quiet_import_tensorflow()

# Fixed generator seeds, independent of the training seed: every run is scored on the same images.
SHAPES_SEEDS = {"train": 1, "val": 2, "test": 3}


def to_model_pixels(rgb, channels: int, binarize: bool):
    """float32 RGB 0..255 (any shape [..., 3]) -> the pixels the model sees: greyscale if
    asked, rounded to whole levels, thresholded at 128 if binarised. Used by the input
    pipeline and by `ksuite predict`, so both see the same thing."""
    x = tf.round(tf.clip_by_value(tf.cast(rgb, tf.float32), 0.0, 255.0))  # 8-bit RGB, as cached
    if channels == 1:
        x = tf.round(tf.image.rgb_to_grayscale(x))
    if binarize:
        x = tf.where(x >= 128.0, 255.0, 0.0)
    return x


def _shapes_splits(cfg):
    d = cfg.data
    out = {}
    for split, n in (("train", d.num_train), ("val", d.num_val), ("test", d.num_test)):
        images, _ = shapes.classification_images(n, d.image_size, SHAPES_SEEDS[split])
        out[split] = tf.data.Dataset.from_tensor_slices(images)
    return out


def _tfds_splits(cfg):
    """A TFDS dataset by name (mnist, celeb_a): keras_suite/common/tfds.py; labels ignored."""
    from keras_suite.common.tfds import image_splits

    d = cfg.data
    found, _, _ = image_splits(
        "vae", d, cfg.train.seed, ("train", "val", "test"), d.val_fraction, d.test_fraction
    )
    return {s: ds.map(lambda image, label: image) for s, (ds, _) in found.items()}


def _folder_splits(cfg):
    root = Path(cfg.data.path)
    if not root.is_dir():
        raise UserError(f"data.path {str(root)!r} is not a folder; point it at a folder of images")
    present = [s for s in ("train", "val", "test") if (root / s).is_dir()]
    # a train/ folder with any of val/, test/; or one tree: missing splits are carved out of train
    lists = (
        {s: readable_images(root / s) for s in present}
        if "train" in present
        else {"train": readable_images(root)}
    )
    keep, carved = carve_missing_splits(
        len(lists["train"]),
        [s for s in ("val", "test") if s not in lists],
        cfg.data.val_fraction,
        cfg.data.test_fraction,
        cfg.train.seed,
    )
    train = lists["train"]
    lists.update(
        {split: [train[i] for i in idx] for split, idx in carved.items()},
        train=[train[i] for i in keep],
    )
    size = cfg.data.image_size
    out = {}
    for split, paths in lists.items():
        if not paths:
            continue
        ds = tf.data.Dataset.from_tensor_slices(tf.constant(paths, tf.string))
        # kept as 8-bit RGB: a quarter of the memory of float32 when cached
        out[split] = ds.map(
            lambda p: tf.cast(tf.round(decode_resize(tf.io.read_file(p), size)), tf.uint8),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    return out


def _without_duplicates(splits: dict, cfg) -> tuple[dict, dict]:
    """Drop val/test images whose pixels, as the model sees them (greyscale, binarised),
    equal an earlier split's: -> ({split: (dataset, count)}, {split: removed})."""
    d = cfg.data

    def model_pixels(x):
        return tf.cast(to_model_pixels(x, d.channels, d.binarize), tf.uint8)

    hashes = {
        split: dataset_hashes(ds.map(model_pixels, num_parallel_calls=tf.data.AUTOTUNE))
        for split, ds in splits.items()
    }
    keep, removed = disjoint_indices(hashes)
    log_removed(removed, "images (pixels as the model sees them)")
    out = {}
    for split, ds in splits.items():
        kept = keep[split]
        ds = keep_elements(ds, kept, len(hashes[split]))
        if d.source in ("folder", "tfds") and d.cache:
            ds = ds.cache()
        out[split] = ds, len(kept)
    return out, removed


def build_datasets(cfg) -> Datasets:
    d = cfg.data
    read = {"shapes": _shapes_splits, "tfds": _tfds_splits}.get(d.source, _folder_splits)
    splits, removed = _without_duplicates(read(cfg), cfg)
    counts = {s: n for s, (_, n) in splits.items()}
    log.info(
        "%s data: %s images, %dx%dx%d%s",
        d.source,
        ", ".join(f"{s} {n}" for s, n in counts.items()),
        d.image_size,
        d.image_size,
        d.channels,
        " binarised" if d.binarize else "",
    )
    batch = cfg.train.batch_size
    if counts.get("train", 0) < batch:
        raise UserError(
            f"only {counts.get('train', 0)} training images for a global batch of {batch}; "
            "add images or lower train.batch_size"
        )
    if not counts.get("test"):
        copies = f" ({removed['test']} were copies of training/validation images)"
        raise UserError(
            f"no test images{copies if removed.get('test') else ''}: raise "
            "data.test_fraction or add a test/ folder of other images"
        )
    prepare = lambda x: to_model_pixels(x, d.channels, d.binarize)  # noqa: E731

    def train_epoch(epoch: int):
        return train_pipeline(
            splits["train"][0],
            batch,
            cfg.train.seed,
            epoch,
            min(d.shuffle_buffer, counts["train"]),
            None,
            prepare,
        )

    evaluate = lambda s: eval_pipeline(splits[s][0], batch, prepare) if counts.get(s) else None  # noqa: E731
    steps = counts["train"] // batch
    if cfg.train.steps_per_epoch:
        steps = min(steps, cfg.train.steps_per_epoch)
    info = {
        "image_size": d.image_size,
        "channels": d.channels,
        "binarize": d.binarize,
        "likelihood": cfg.model.likelihood,
        "kind": cfg.model.kind,
        "latent_dim": cfg.model.latent_dim,
        "source": d.source,
        "num_train": counts["train"],
        "num_val": counts.get("val", 0),
        "num_test": counts["test"],
        "split_sizes": {s: int(n) for s, n in counts.items()},
        "evaluation_split": evaluation_split("test", counts["test"], removed, IMAGE_RULE),
    }
    if cfg.model.kind == "vqvae":
        info.update(
            latent_grid=d.image_size // 2**cfg.model.num_downsamples,
            codebook_size=cfg.model.codebook_size,
        )
    # int8 calibration never sees the test images the parity report scores: the
    # validation split, or the training images when there is none
    calibration = "val" if counts.get("val") else "train"
    return Datasets(
        train_epoch=train_epoch,
        steps_per_epoch=steps,
        val=evaluate("val"),
        test=evaluate("test"),
        info=info,
        extras={"calibration": (calibration, evaluate(calibration), counts[calibration])},
    )


def split_images(data: Datasets, limit: int = 0) -> np.ndarray:
    """The test split (or its first `limit` images) as one float32 array."""
    ds = data.test.unbatch()
    if limit:
        ds = ds.take(limit)
    return np.stack(list(ds.as_numpy_iterator())).astype(np.float32)
