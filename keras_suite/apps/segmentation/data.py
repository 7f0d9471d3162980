"""Segmentation data: built-in shape scenes with per-pixel class masks, image + mask PNG
pairs, and the Pascal VOC layout.

Every split is held in memory as uint8 arrays at the model size (images [n, S, S, 3],
masks [n, S, S] of class ids, `ignore_index` where unlabelled): user images are resized
with area averaging, masks with nearest neighbour so no new class id is invented.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from keras_suite.common import cache, shapes
from keras_suite.common.errors import UserError
from keras_suite.common.images import IMAGE_EXTENSIONS
from keras_suite.common.runlog import log

# The built-in splits come from fixed generator seeds, independent of the training seed,
# so runs with different seeds are compared on the same test images.
SHAPES_SEEDS = {"train": 1, "val": 2, "test": 3}
LINE = "line"

# Pascal VOC's 21 classes, in the order of its palette indices.
VOC_CLASSES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)


@dataclass
class Split:
    images: np.ndarray  # uint8 [n, S, S, 3]
    masks: np.ndarray  # uint8 [n, S, S]

    def __len__(self) -> int:
        return len(self.images)


# ---- built-in scenes -----------------------------------------------------------------


def shape_class_names(binary: bool = False) -> list[str]:
    return ["background", "foreground"] if binary else ["background", *shapes.SHAPES, LINE]


def _draw_lines(rng, image: np.ndarray, mask: np.ndarray, count: int, widths, value: int) -> None:
    """Thin straight strokes on top of a finished scene (the thin-object class)."""
    size = image.shape[0]
    for _ in range(count):
        length = rng.uniform(0.25, 0.7) * size
        angle = rng.uniform(0, math.pi)
        cx, cy = rng.uniform(0.15 * size, 0.85 * size, 2)
        dx, dy = 0.5 * length * math.cos(angle), 0.5 * length * math.sin(angle)
        p1 = (int(round(cx - dx)), int(round(cy - dy)))
        p2 = (int(round(cx + dx)), int(round(cy + dy)))
        width = int(rng.integers(widths[0], widths[1] + 1))
        below = image[int(np.clip(cy, 0, size - 1)), int(np.clip(cx, 0, size - 1))].astype(
            np.float32
        )
        colour = rng.integers(0, 256, 3).astype(np.float32)
        for _ in range(20):  # a colour that stands out from what is under the line's centre
            if np.abs(colour - below).sum() > 160:
                break
            colour = rng.integers(0, 256, 3).astype(np.float32)
        stroke = np.zeros(mask.shape, np.uint8)
        cv2.line(stroke, p1, p2, 1, width, cv2.LINE_8)
        noisy = colour + rng.normal(0, 4, (int(stroke.sum()), 3))
        image[stroke == 1] = np.clip(noisy, 0, 255).astype(np.uint8)
        mask[stroke == 1] = value


def shape_scenes(n: int, dcfg, seed: int) -> Split:
    """n scenes from keras_suite.common.shapes (shapes of many sizes, overlapping, on textured
    backgrounds; the top-most shape wins in the mask) plus thin lines on top."""
    rng = np.random.default_rng(seed)
    size = dcfg.image_size
    images = np.empty((n, size, size, 3), np.uint8)
    masks = np.empty((n, size, size), np.uint8)
    line_value = len(shapes.SHAPES) + 1
    for i in range(n):
        s = shapes.scene(
            rng,
            size,
            max_objects=dcfg.max_objects,
            min_radius=dcfg.min_radius,
            max_radius=dcfg.max_radius,
            max_overlap=dcfg.max_overlap,
        )
        image, mask = s.image.copy(), s.mask.copy()
        if dcfg.max_lines:
            _draw_lines(
                rng,
                image,
                mask,
                int(rng.integers(0, dcfg.max_lines + 1)),
                dcfg.line_width,
                line_value,
            )
        images[i], masks[i] = image, mask
    if dcfg.binary:
        masks = (masks > 0).astype(np.uint8)
    return Split(images, masks)


# ---- user data -----------------------------------------------------------------------


class Problems:
    """Pairs that were skipped, with file names and why, reported once per dataset."""

    def __init__(self):
        self.items: list[str] = []

    def add(self, text: str) -> None:
        self.items.append(text)

    def report(self, total: int, where: str) -> None:
        if not self.items:
            return
        shown = "; ".join(self.items[:8]) + (
            f"; ... ({len(self.items) - 8} more)" if len(self.items) > 8 else ""
        )
        log.warning(
            "skipped %d of %d image/mask pairs in %s: %s", len(self.items), total, where, shown
        )


def read_mask(path: Path) -> np.ndarray:
    """Class ids of a palette ("P") or greyscale ("L"/"I") PNG. An RGB mask is ambiguous
    (colours, not ids) and is refused."""
    from PIL import Image

    with Image.open(path) as img:
        if img.mode in ("RGB", "RGBA"):
            raise ValueError(
                f"is an {img.mode} image; masks must be palette or greyscale PNGs of class ids"
            )
        if img.mode in ("LA", "PA"):
            img = img.getchannel(0)
        array = np.asarray(img)
    if array.ndim != 2:
        raise ValueError(f"has shape {array.shape}; a mask is one channel of class ids")
    return array.astype(np.int64)


def read_rgb(path: Path) -> np.ndarray:
    data = np.frombuffer(path.read_bytes(), np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("could not be decoded as an image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def load_pair(image_path: Path, mask_path: Path, size: int, num_classes: int, ignore: int):
    """(image, mask) resized to size x size, or raise ValueError saying what is wrong."""
    try:
        image = read_rgb(image_path)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{image_path.name}: {exc}") from None
    try:
        mask = read_mask(mask_path)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{mask_path.name}: {exc}") from None
    except Exception as exc:  # PIL raises many kinds for broken files
        raise ValueError(f"{mask_path.name}: not a readable PNG ({type(exc).__name__})") from None
    if mask.shape != image.shape[:2]:
        raise ValueError(
            f"{mask_path.name}: mask is {mask.shape[1]}x{mask.shape[0]} but its image "
            f"{image_path.name} is {image.shape[1]}x{image.shape[0]}"
        )
    if mask.max(initial=0) > 255:
        raise ValueError(
            f"{mask_path.name}: class id {int(mask.max())} above 255 (masks hold 8-bit ids)"
        )
    if num_classes:
        bad = np.unique(mask[(mask >= num_classes) & (mask != ignore)])
        if bad.size:
            raise ValueError(
                f"{mask_path.name}: unknown class id(s) {', '.join(map(str, bad[:5]))} "
                f"(classes are 0..{num_classes - 1}, ignore {ignore})"
            )
    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    mask = cv2.resize(mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST)
    return image, mask


def _find_images(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_EXTENSIONS}


def _load_all(
    pairs: list[tuple[Path, Path | None]], dcfg, num_classes: int, problems: Problems, where: str
):
    ignore = dcfg.ignore_index
    todo = [(i, m) for i, m in pairs if m is not None]
    for image_path, mask_path in pairs:
        if mask_path is None:
            problems.add(f"{image_path.name}: no mask with the same name")

    def one(pair):
        try:
            return load_pair(pair[0], pair[1], dcfg.image_size, num_classes, ignore)
        except ValueError as exc:
            return str(exc)

    images, masks = [], []
    with ThreadPoolExecutor(max_workers=4) as pool:
        for result in pool.map(one, todo):
            if isinstance(result, str):
                problems.add(result)
            else:
                images.append(result[0])
                masks.append(result[1])
    if not images:
        raise UserError(
            f"no usable image/mask pairs in {where} ({len(pairs)} images; first problem: "
            f"{problems.items[0] if problems.items else 'none found'}); masks must be "
            "PNGs with the image's name and size"
        )
    size = dcfg.image_size
    return Split(
        np.stack(images).reshape(-1, size, size, 3), np.stack(masks).reshape(-1, size, size)
    )


def _labels_txt(root: Path) -> list[str] | None:
    for name in ("labels.txt", "classes.txt"):
        path = root / name
        if path.is_file():
            return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return None


def _pair_folders(root: Path) -> dict[str, tuple[Path, Path]]:
    """{split: (images dir, masks dir)}: root/images + root/masks, or per split folders."""
    per_split = {
        s: (root / s / "images", root / s / "masks")
        for s in ("train", "val", "test")
        if (root / s / "images").is_dir()
    }
    if per_split:
        if "train" not in per_split:
            raise UserError(
                f"{root} has split folders but no train/images; add train/images and train/masks"
            )
        return per_split
    if not (root / "images").is_dir() or not (root / "masks").is_dir():
        raise UserError(
            f"{root} has no images/ and masks/ folders: put image files in images/ and "
            "PNG masks with the same names in masks/ (or train/images, train/masks, ...)"
        )
    return {"all": (root / "images", root / "masks")}


def pairs_dataset(dcfg, seed: int):
    """{split: Split} and class names from images/ + masks/ folders."""
    root = Path(dcfg.path)
    if not root.is_dir():
        raise UserError(
            f"data.path {str(root)!r} is not a folder; point it at a folder with images/ and masks/"
        )
    folders = _pair_folders(root)
    names = _labels_txt(root)
    num_classes = len(names) if names else dcfg.num_classes
    splits, problems, total = {}, Problems(), 0
    for split, (image_dir, mask_dir) in folders.items():
        found = _find_images(image_dir)
        masks = {p.stem: p for p in mask_dir.glob("*.png")} if mask_dir.is_dir() else {}
        pairs = [(path, masks.get(stem)) for stem, path in found.items()]
        total += len(pairs)
        if not pairs:
            raise UserError(f"{image_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        splits[split] = _load_all(pairs, dcfg, num_classes, problems, str(image_dir))
    problems.report(total, str(root))
    return _finish_user_splits(splits, names, num_classes, dcfg, seed)


def voc_dataset(dcfg, seed: int):
    """Pascal VOC: JPEGImages/, SegmentationClass/ (palette PNGs, 255 = boundary) and
    ImageSets/Segmentation/{train,val}.txt. VOC's test labels are not public, so its val
    list is the test split and a validation split is carved out of train."""
    root = Path(dcfg.path)
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (candidate / "SegmentationClass").is_dir():
            root = candidate
            break
    else:
        raise UserError(
            f"{dcfg.path} is not a Pascal VOC folder (no SegmentationClass/); point data.path "
            "at VOC2012/ (with JPEGImages/, SegmentationClass/, ImageSets/Segmentation/)"
        )
    lists = root / "ImageSets" / "Segmentation"
    names = _labels_txt(root) or list(VOC_CLASSES)
    splits, problems, total = {}, Problems(), 0
    for split, file in (("train", "train.txt"), ("test", "val.txt")):
        if not (lists / file).is_file():
            raise UserError(f"{lists / file} is missing; VOC lists its segmentation images there")
        ids = [line.split()[0] for line in (lists / file).read_text().splitlines() if line.strip()]
        pairs = []
        for image_id in ids:
            image = root / "JPEGImages" / f"{image_id}.jpg"
            mask = root / "SegmentationClass" / f"{image_id}.png"
            if not image.is_file():
                problems.add(f"{image.name}: listed in {file} but missing")
                continue
            pairs.append((image, mask if mask.is_file() else None))
        total += len(ids)
        splits[split] = _load_all(pairs, dcfg, len(names), problems, str(root))
    problems.report(total, str(root))
    return _finish_user_splits(splits, names, len(names), dcfg, seed)


def _take(split: Split, index) -> Split:
    return Split(split.images[index], split.masks[index])


def _finish_user_splits(splits: dict, names, num_classes: int, dcfg, seed: int):
    from keras_suite.common.data import split_indices

    if "all" in splits:
        whole = splits.pop("all")
        tr, va, te = split_indices(len(whole), dcfg.val_fraction, dcfg.test_fraction, seed)
        splits = {"train": _take(whole, tr), "val": _take(whole, va), "test": _take(whole, te)}
    elif "val" not in splits and dcfg.val_fraction > 0:
        tr, va, _ = split_indices(len(splits["train"]), dcfg.val_fraction, 0.0, seed)
        whole = splits["train"]
        splits["train"], splits["val"] = _take(whole, tr), _take(whole, va)
    if not splits.get("test") or not len(splits["test"]):
        splits["test"] = splits.get("val") or splits["train"]
    if not names:
        ignore = dcfg.ignore_index
        top = max(int(s.masks[s.masks != ignore].max(initial=0)) for s in splits.values() if len(s))
        count = num_classes or top + 1
        names = [f"class_{i}" for i in range(count)]
    if dcfg.binary:
        for s in splits.values():
            keep = s.masks == dcfg.ignore_index
            s.masks[:] = np.where(keep, s.masks, (s.masks > 0).astype(np.uint8))
        names = ["background", "foreground"]
    return splits, list(names)


# ---- all sources -----------------------------------------------------------------------


def load_splits(dcfg, seed: int):
    """{train, val, test: Split} and class names; shared per config in this process
    (evaluate, export and convert rebuild the datasets of one run; common/cache.py)."""
    return cache.last_value(
        "segmentation.splits", (repr(dcfg), seed), lambda: _read_splits(dcfg, seed)
    )


def _read_splits(dcfg, seed: int):
    if dcfg.source == "shapes":
        splits = {
            name: shape_scenes(n, dcfg, SHAPES_SEEDS[name])
            for name, n in (
                ("train", dcfg.num_train),
                ("val", dcfg.num_val),
                ("test", dcfg.num_test),
            )
        }
        names = shape_class_names(dcfg.binary)
    elif dcfg.source == "pairs":
        splits, names = pairs_dataset(dcfg, seed)
    else:
        splits, names = voc_dataset(dcfg, seed)
    return splits, names
