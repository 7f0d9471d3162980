"""Datasets by name from TensorFlow Datasets: `--set data.source=tfds --set data.name=cifar10`.

TFDS downloads a dataset the first time it is named and keeps it in `~/tensorflow_datasets`
(or `data.tfds_dir`); later runs read it from there without the network. This module maps
each dataset's features to what an app's field takes (an image and a class label, an image
and a segmentation mask, objects with boxes, a pair of texts, a text, an image), keeps the
split names TFDS has (`validation` is the app's `val`), and carves the splits a dataset
lacks out of its training split with the run's seed, as the folder sources do.

TFDS is an optional extra (`pip install -e ".[tfds]"`), imported only when a config asks
for it. docs/ecosystem.md shows the commands and the offline story.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from keras_suite import common
from keras_suite.common.data import carve_missing_splits
from keras_suite.common.errors import UserError
from keras_suite.common.runlog import log
from keras_suite.common.tfds_names import FIELDS, INSTALL_HINT, fitting

tf = common.quiet_import_tensorflow()

# TFDS split name -> the app's split name. Other splits (`unlabelled`, `extra`) are not used.
SPLIT_ROLES = {"train": "train", "validation": "val", "valid": "val", "dev": "val", "test": "test"}

# Split names of the datasets above, for a builder that has not been prepared and so does
# not list its splits (TFDS's mock in the tests; a prepared dataset lists its own).
KNOWN_SPLITS = {
    "cifar10": ("train", "test"),
    "cifar100": ("train", "test"),
    "mnist": ("train", "test"),
    "fashion_mnist": ("train", "test"),
    "svhn_cropped": ("train", "test", "extra"),
    "tf_flowers": ("train",),
    "oxford_flowers102": ("train", "validation", "test"),
    "oxford_iiit_pet": ("train", "test"),
    "food101": ("train", "validation"),
    "beans": ("train", "validation", "test"),
    "eurosat": ("train",),
    "voc": ("train", "validation", "test"),
    "coco": ("train", "validation", "test"),
    "ted_hrlr_translate": ("train", "validation", "test"),
    "wmt14_translate": ("train", "validation", "test"),
    "tiny_shakespeare": ("train", "validation", "test"),
    "imdb_reviews": ("train", "test", "unsupervised"),
    "ag_news_subset": ("train", "test"),
    "celeb_a": ("train", "validation", "test"),
}

# Datasets whose `test` split has no labels (the challenge servers keep them): their
# validation split is the test split, and a validation split is carved out of train.
UNLABELLED_TEST = {"coco", "voc/2012"}

# Segmentation masks whose values are not class ids: value -> class id, and the names.
# Oxford-IIIT Pet's trimaps are 1 pet, 2 background, 3 outline.
MASK_CLASSES = {"oxford_iiit_pet": ({2: 0, 1: 1, 3: 2}, ["background", "pet", "outline"])}


def import_tfds():
    """tensorflow_datasets, or one clear line saying how to install it."""
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise UserError(f"data.source=tfds needs TensorFlow Datasets; {INSTALL_HINT}") from None
    return tfds


# ---- which features play which part ----------------------------------------------------


def _kind(feature) -> str:
    tfds = import_tfds()
    f = tfds.features
    if isinstance(feature, f.Image):
        return "image"
    if isinstance(feature, f.ClassLabel):
        return "label"
    if isinstance(feature, f.Text):
        return "text"
    if isinstance(feature, f.Sequence):
        return "sequence"
    if isinstance(feature, f.FeaturesDict):
        return "dict"
    return type(feature).__name__


def _channels(feature) -> int | None:
    shape = getattr(feature, "shape", None)
    return shape[-1] if shape else None


def _first(keys, prefer=()) -> str | None:
    for key in prefer:
        if key in keys:
            return key
    return keys[0] if keys else None


def feature_roles(field_name: str, features, supervised_keys=None) -> dict | None:
    """{role: feature key} for the field, or None when the dataset does not fit it."""
    kinds = {k: _kind(v) for k, v in features.items()}
    images = [k for k, v in kinds.items() if v == "image" and _channels(features[k]) in (1, 3)]
    colour = [k for k in images if _channels(features[k]) == 3]
    labels = [k for k, v in kinds.items() if v == "label"]
    texts = [k for k, v in kinds.items() if v == "text"]
    sup = tuple(supervised_keys or ())
    if field_name == "classification":
        image = sup[0] if sup and sup[0] in images else _first(images, ("image",))
        label = sup[1] if len(sup) > 1 and sup[1] in labels else _first(labels, ("label",))
        return {"image": image, "label": label} if image and label else None
    if field_name == "segmentation":
        masks = [
            k
            for k in images
            if _channels(features[k]) == 1 and any(w in k for w in ("mask", "segment", "annot"))
        ]
        image = _first([k for k in colour if k not in masks], ("image",))
        return {"image": image, "mask": masks[0]} if image and masks else None
    if field_name == "detection":
        for key, kind in kinds.items():
            if kind != "sequence":
                continue
            inner = getattr(features[key], "feature", None)
            if not hasattr(inner, "keys") or "bbox" not in inner.keys():
                continue
            if "label" in inner.keys() and _kind(inner["label"]) == "label" and colour:
                return {"image": _first(colour, ("image",)), "objects": key}
        return None
    if field_name == "translation":
        nested = [k for k, v in kinds.items() if v == "dict"]
        if len(texts) < 2 and len(nested) == 1:  # a Translation feature: {lang: text}
            inner = features[nested[0]]
            langs = [k for k in inner.keys() if _kind(inner[k]) == "text"]
            if len(langs) >= 2:
                return {"source": f"{nested[0]}/{langs[0]}", "target": f"{nested[0]}/{langs[1]}"}
        if len(sup) == 2 and all(k in texts for k in sup):
            return {"source": sup[0], "target": sup[1]}
        return {"source": texts[0], "target": texts[1]} if len(texts) >= 2 else None
    if field_name == "textgen":
        text = _first(texts, ("text", "content", "description"))
        return {"text": text} if text else None
    if field_name in ("gan", "vae"):
        image = _first(colour or images, ("image",))
        if not image:
            return None
        label = sup[1] if len(sup) > 1 and sup[1] in labels else _first(labels, ("label",))
        return (
            {"image": image, "label": label} if field_name == "gan" and label else {"image": image}
        )
    raise ValueError(f"no TFDS mapping for the {field_name} field")


def _describe(features) -> str:
    return ", ".join(f"{k} ({_kind(v)})" for k, v in features.items())


# ---- opening a dataset -------------------------------------------------------------------


@dataclass
class TfdsData:
    """One TFDS dataset mapped to an app: its splits as tf.data datasets of example dicts."""

    name: str
    features: Any
    roles: dict
    splits: dict  # app split -> tf.data.Dataset of decoded example dicts
    sizes: dict  # app split -> examples
    origin: dict  # app split -> where it came from
    extras: dict = field(default_factory=dict)

    def get(self, example: dict, role: str):
        """The tensor playing `role` in an example (nested keys joined with '/')."""
        value = example
        for part in self.roles[role].split("/"):
            value = value[part]
        return value

    def class_names(self, role: str = "label") -> list[str]:
        return list(self.features[self.roles[role]].names)


def _builder(tfds, field_name: str, name: str, data_dir: str | None):
    try:
        return tfds.builder(name, data_dir=data_dir)
    except Exception as exc:  # DatasetNotFoundError, a config that does not exist, ...
        known = FIELDS[field_name][1]
        close = difflib.get_close_matches(name, list(known), n=2)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        first = str(exc).strip().splitlines()[0][:160]
        raise UserError(
            f"data.name={name!r} is not a TensorFlow Datasets dataset{hint} ({first}); "
            + fitting(field_name)
        ) from None


def _prepare(builder, name: str, data_dir: str | None) -> None:
    try:
        builder.download_and_prepare()
    except Exception as exc:  # no network, a manual download, a full disk
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        where = data_dir or "~/tensorflow_datasets"
        raise UserError(
            f"could not download or prepare TFDS dataset {name!r} into {where} ({first}); "
            "run once with network access (or copy a prepared copy there and set data.tfds_dir)"
        ) from None


def _select(ds, indices, n: int):
    """The examples of `ds` at `indices` (in order): carving keeps the file order."""
    mask = np.zeros(n, bool)
    mask[indices] = True
    table = tf.constant(mask)
    return ds.enumerate().filter(lambda i, ex: tf.gather(table, i)).map(lambda i, ex: ex)


def _count(ds) -> int:
    n = int(ds.cardinality().numpy())
    return n if n >= 0 else int(ds.reduce(0, lambda c, _: c + 1).numpy())


def load(
    field_name: str,
    dcfg,
    seed: int,
    wanted=("train", "val", "test"),
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> TfdsData:
    """Open data.name for the field: check its features fit, download it if needed, and
    return the `wanted` splits (the missing ones carved, seeded, out of train)."""
    tfds = import_tfds()
    name, data_dir = dcfg.name, (getattr(dcfg, "tfds_dir", "") or None)
    builder = _builder(tfds, field_name, name, data_dir)
    info = builder.info
    roles = feature_roles(field_name, info.features, info.supervised_keys)
    if roles is None:
        raise UserError(
            f"data.name={name!r} does not fit: its features are {_describe(info.features)}; "
            + fitting(field_name)
        )
    _prepare(builder, name, data_dir)
    family = name.split("/")[0]
    available = list(info.splits.keys()) or list(KNOWN_SPLITS.get(family, ("train", "test")))
    if "train" not in available:
        raise UserError(f"TFDS dataset {name!r} has no train split (it has {available})")
    source = {}
    for tfds_split in available:
        role = SPLIT_ROLES.get(tfds_split)
        if role and role not in source:
            source[role] = tfds_split
    if (family in UNLABELLED_TEST or name in UNLABELLED_TEST) and "val" in source:
        source["test"] = source.pop("val")  # the labelled held-out split scores the model
    source = {role: s for role, s in source.items() if role in wanted or role == "train"}

    def read(tfds_split):
        return builder.as_dataset(split=tfds_split, shuffle_files=False)

    splits = {role: read(s) for role, s in source.items()}
    sizes = {}
    for role, s in source.items():
        known = info.splits[s].num_examples if s in info.splits else 0
        sizes[role] = int(known) or _count(splits[role])
    origin = {role: f"TFDS {name} {s}" for role, s in source.items()}
    missing = [s for s in wanted if s != "train" and s not in splits]
    if missing:
        keep, carved = carve_missing_splits(
            sizes["train"], missing, val_fraction, test_fraction, seed
        )
        whole, n = splits["train"], sizes["train"]
        for role, idx in carved.items():
            splits[role], sizes[role] = _select(whole, idx, n), len(idx)
            fraction = val_fraction if role == "val" else test_fraction
            origin[role] = f"carved from TFDS {name} train ({fraction:g}, seed {seed})"
        splits["train"], sizes["train"] = _select(whole, keep, n), len(keep)
    log.info(
        "TFDS %s (%s): %s",
        name,
        ", ".join(f"{r} <- {k}" for r, k in roles.items()),
        ", ".join(f"{s} {sizes[s]}" for s in wanted if s in sizes),
    )
    return TfdsData(name, info.features, roles, splits, sizes, origin)


# ---- per-field adapters ------------------------------------------------------------------


def _rgb(image):
    image = tf.convert_to_tensor(image)
    return tf.image.grayscale_to_rgb(image) if image.shape[-1] == 1 else image


def resize_rgb(image, size: int):
    """uint8 [H, W, 1|3] -> float32 [size, size, 3] in 0..255 (antialiased, squashed, as
    the folder sources resize)."""
    image = tf.image.resize(tf.cast(_rgb(image), tf.float32), (size, size), antialias=True)
    return tf.clip_by_value(image, 0.0, 255.0)


def crop_rgb(image, size: int):
    """uint8 [H, W, 1|3] -> float32 [size, size, 3]: short side to `size`, centre square
    (the GAN's folder loader does the same: no squashed aspect ratios)."""
    image = tf.cast(_rgb(image), tf.float32)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    new = tf.cast(tf.math.ceil(shape * (size / tf.reduce_min(shape))), tf.int32)
    image = tf.image.resize(image, new, antialias=True)
    return tf.clip_by_value(tf.image.resize_with_crop_or_pad(image, size, size), 0.0, 255.0)


def classification_splits(dcfg, seed: int):
    """-> ({split: (dataset of (float32 [S,S,3], int64 label), n)}, class names, origin)."""
    data = load(
        "classification",
        dcfg,
        seed,
        ("train", "val", "test"),
        dcfg.val_fraction,
        dcfg.test_fraction,
    )
    size = dcfg.image_size

    def example(ex):
        return resize_rgb(data.get(ex, "image"), size), tf.cast(data.get(ex, "label"), tf.int64)

    out = {
        s: (ds.map(example, num_parallel_calls=tf.data.AUTOTUNE), data.sizes[s])
        for s, ds in data.splits.items()
    }
    return out, data.class_names(), data.origin


def image_splits(
    field_name: str, dcfg, seed: int, wanted, val_fraction=0.1, test_fraction=0.1, crop=False
):
    """GAN / VAE images: -> ({split: (dataset of (uint8 [S,S,3], int64 label), n)}, class
    names ([] when the dataset has no label), origin). Labels are 0 without a label feature."""
    data = load(field_name, dcfg, seed, wanted, val_fraction, test_fraction)
    size = dcfg.image_size
    shape = crop_rgb if crop else resize_rgb
    has_label = "label" in data.roles

    def example(ex):
        image = tf.cast(tf.round(shape(data.get(ex, "image"), size)), tf.uint8)
        label = tf.cast(data.get(ex, "label"), tf.int64) if has_label else tf.constant(0, tf.int64)
        return image, label

    out = {
        s: (ds.map(example, num_parallel_calls=tf.data.AUTOTUNE), data.sizes[s])
        for s, ds in data.splits.items()
    }
    return out, (data.class_names() if has_label else []), data.origin


def to_arrays(dataset, n: int, size: int):
    """(uint8 images [n, S, S, 3], int64 labels [n]) of an `image_splits` dataset."""
    images, labels = np.zeros((n, size, size, 3), np.uint8), np.zeros(n, np.int64)
    for i, (image, label) in enumerate(dataset.batch(256).as_numpy_iterator() if n else []):
        images[i * 256 : i * 256 + len(image)], labels[i * 256 : i * 256 + len(label)] = (
            image,
            label,
        )
    return images, labels


def segmentation_arrays(dcfg, seed: int):
    """-> ({split: (uint8 images [n,S,S,3], uint8 masks [n,S,S])}, class names, origin).
    Mask values that are not classes become data.ignore_index."""
    import cv2

    data = load(
        "segmentation", dcfg, seed, ("train", "val", "test"), dcfg.val_fraction, dcfg.test_fraction
    )
    size = dcfg.image_size
    ignore = dcfg.ignore_index if dcfg.ignore_index >= 0 else 0
    mapping, names = MASK_CLASSES.get(dcfg.name.split("/")[0], (None, None))
    lut = None
    if mapping is not None:
        lut = np.full(256, ignore, np.uint8)
        for value, class_id in mapping.items():
            lut[value] = class_id
    out, top = {}, 0
    for split, ds in data.splits.items():
        images, masks = [], []
        for ex in ds.as_numpy_iterator():
            image = np.asarray(data.get(ex, "image"))
            image = np.repeat(image, 3, -1) if image.shape[-1] == 1 else image
            mask = np.asarray(data.get(ex, "mask"))[..., 0].astype(np.uint8)
            mask = lut[mask] if lut is not None else mask
            images.append(cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA))
            masks.append(cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST))
            top = max(top, int(masks[-1][masks[-1] != dcfg.ignore_index].max(initial=0)))
        out[split] = (
            np.stack(images).reshape(-1, size, size, 3),
            np.stack(masks).reshape(-1, size, size),
        )
    if names is None:
        names = [f"class_{i}" for i in range(dcfg.num_classes or top + 1)]
    return out, list(names), data.origin


def detection_records(dcfg, seed: int):
    """-> ({split: dict}, class names, origin). Each split dict holds `images` uint8
    [n,S,S,3], and per image `boxes` (float32 [k,4] x1,y1,x2,y2 in pixels of the S x S
    image), `classes` (int64 [k]), `difficult` and `crowd` ((boxes, classes) that evaluation
    ignores) and `sizes` (original width, height). TFDS boxes are ymin, xmin, ymax, xmax
    fractions of the image."""
    import cv2

    data = load(
        "detection", dcfg, seed, ("train", "val", "test"), dcfg.val_fraction, dcfg.test_fraction
    )
    size = dcfg.image_size
    names = list(data.features[data.roles["objects"]]["label"].names)
    out = {}
    for split, ds in data.splits.items():
        rec = {"images": [], "boxes": [], "classes": [], "difficult": [], "crowd": [], "sizes": []}
        for ex in ds.as_numpy_iterator():
            image = np.asarray(data.get(ex, "image"))
            h, w = image.shape[:2]
            objects = data.get(ex, "objects")
            k = min(len(objects["bbox"]), len(objects["label"]))
            bbox = np.clip(np.asarray(objects["bbox"][:k], np.float32).reshape(-1, 4), 0.0, 1.0)
            y = np.sort(bbox[:, [0, 2]], axis=1) * size
            x = np.sort(bbox[:, [1, 3]], axis=1) * size
            boxes = np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], 1).astype(np.float32)
            classes = np.asarray(objects["label"][:k], np.int64)
            hard = np.zeros(k, bool)
            for flag in ("is_difficult", "is_crowd"):
                if flag in objects and len(objects[flag]) >= k:
                    hard |= np.asarray(objects[flag][:k], bool)
            kind = "crowd" if "is_crowd" in objects else "difficult"
            rec[kind].append((boxes[hard], classes[hard]))
            other = "difficult" if kind == "crowd" else "crowd"
            rec[other].append((np.zeros((0, 4), np.float32), np.zeros(0, np.int64)))
            rec["images"].append(cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA))
            rec["boxes"].append(boxes[~hard])
            rec["classes"].append(classes[~hard])
            rec["sizes"].append((w, h))
        rec["images"] = np.stack(rec["images"]).reshape(-1, size, size, 3)
        out[split] = rec
    return out, names, data.origin


def _text(value) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def text_pairs(dcfg, seed: int):
    """-> ({split: [(source, target)]}, origin, (source key, target key)): whitespace
    collapsed, pairs with an empty side or more words than data.max_*_words left out."""
    data = load(
        "translation", dcfg, seed, ("train", "val", "test"), dcfg.val_fraction, dcfg.test_fraction
    )
    out = {}
    for split, ds in data.splits.items():
        pairs = []
        for ex in ds.as_numpy_iterator():
            src = " ".join(_text(data.get(ex, "source")).split())
            tgt = " ".join(_text(data.get(ex, "target")).split())
            if not src or not tgt:
                continue
            if len(src.split()) > dcfg.max_source_words or len(tgt.split()) > dcfg.max_target_words:
                continue
            pairs.append((src, tgt))
            if split == "train" and dcfg.max_pairs and len(pairs) >= dcfg.max_pairs:
                break
        out[split] = pairs
    return out, data.origin, (data.roles["source"], data.roles["target"])


def text_documents(dcfg, seed: int, val_fraction: float):
    """-> ({"train": [(name, text)], "val": [...]}, origin): every example's text is one
    document; at most data.max_chars characters are read from the training split."""
    data = load("textgen", dcfg, seed, ("train", "val"), val_fraction, 0.0)
    out = {}
    for split, ds in data.splits.items():
        docs, total = [], 0
        for i, ex in enumerate(ds.as_numpy_iterator()):
            text = _text(data.get(ex, "text")).replace("\r\n", "\n")
            if not text.strip():
                continue
            text = text[: max(dcfg.max_chars - total, 0)]
            docs.append((f"{dcfg.name}/{split}/{i}", text))
            total += len(text)
            if total >= dcfg.max_chars:
                break
        out[split] = docs
    return out, data.origin
