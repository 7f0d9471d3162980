"""Segmentation data: built-in shape scenes with per-pixel class masks, image + mask PNG
pairs, and the Pascal VOC layout.

Every split is held in memory as uint8 arrays at the model size (images [n, S, S, 3],
masks [n, S, S] of class ids, `ignore_index` where unlabelled): user images are resized
with area averaging, masks with nearest neighbour so no new class id is invented. User
splits also keep their file paths, so evaluation can score each test image at its own
resolution against its untouched mask (docs/segmentation.md, "Evaluation protocol").
"""

from __future__ import annotations

import hashlib
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
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
    hashes: list | None = None  # per image: a hash of its decoded pixels (duplicate checks)
    files: list | None = None  # user data: (image path, mask path) per example

    def __len__(self) -> int:
        return len(self.images)


def pixel_hash(image: np.ndarray) -> str:
    """Exact-duplicate key of an image: its shape and every pixel value."""
    digest = hashlib.blake2b(str(image.shape).encode(), digest_size=16)
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


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
    return Split(images, masks, hashes=[pixel_hash(image) for image in images])


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

    if path.stat().st_size == 0:
        raise ValueError("is an empty file (0 bytes)")
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
    if not data.size:
        raise ValueError("is an empty file (0 bytes)")
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error:  # OpenCV asserts on some truncated headers instead of returning None
        image = None
    if image is None:
        raise ValueError("could not be decoded as an image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def load_pair(image_path: Path, mask_path: Path, size: int, num_classes: int, ignore: int):
    """(image, mask, mask values, pixel hash): image and mask resized to size x size, the
    set of values in the full-size mask, the hash of the full-size image; or raise
    ValueError saying what is wrong."""
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
    values = set(np.unique(mask).tolist())
    if num_classes:
        # a 0/255 mask of a two-class dataset is a binary mask: 255 is mapped to 1 later
        allowed = {255} if num_classes == 2 and values <= {0, 255} else set()
        bad = sorted(v for v in values if v >= num_classes and v != ignore and v not in allowed)
        if bad:
            raise ValueError(
                f"{mask_path.name}: unknown class id(s) {', '.join(map(str, bad[:5]))} "
                f"(classes are 0..{num_classes - 1}, ignore {ignore})"
            )
    digest = pixel_hash(image)
    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    mask = cv2.resize(mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST)
    return image, mask, values, digest


def _find_images(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_EXTENSIONS}


def _load_all(
    pairs: list[tuple[Path, Path | None]], dcfg, num_classes: int, problems: Problems, where: str
) -> tuple[Split, set]:
    """The usable pairs of one folder as a Split (raw mask values), and the mask values seen."""
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

    images, masks, hashes, files, values = [], [], [], [], set()
    with ThreadPoolExecutor(max_workers=4) as pool:
        for pair, result in zip(todo, pool.map(one, todo)):
            if isinstance(result, str):
                problems.add(result)
                continue
            images.append(result[0])
            masks.append(result[1])
            values |= result[2]
            hashes.append(result[3])
            files.append(pair)
    if not images:
        raise UserError(
            f"no usable image/mask pairs in {where} ({len(pairs)} images; first problem: "
            f"{problems.items[0] if problems.items else 'none found'}); masks must be "
            "PNGs with the image's name and size"
        )
    size = dcfg.image_size
    split = Split(
        np.stack(images).reshape(-1, size, size, 3),
        np.stack(masks).reshape(-1, size, size),
        hashes=hashes,
        files=files,
    )
    return split, values


def _labels_txt(root: Path) -> list[str] | None:
    for name in ("labels.txt", "classes.txt"):
        path = root / name
        if path.is_file():
            return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return None


def find_voc_root(path) -> Path | None:
    """The VOC2012-like folder at or just under `path` (JPEGImages/ and SegmentationClass/),
    or None."""
    root = Path(path)
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (candidate / "JPEGImages").is_dir() and (candidate / "SegmentationClass").is_dir():
            return candidate
    return None


VOC_HINT = (
    "this looks like Pascal VOC (JPEGImages/, SegmentationClass/): add --source voc "
    "(segmentation-check) or --set data.source=voc (train)"
)


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
        if find_voc_root(root) is not None:
            raise UserError(f"{root} has no images/ and masks/ folders; {VOC_HINT}")
        raise UserError(
            f"{root} has no images/ and masks/ folders: put image files in images/ and "
            "PNG masks with the same names in masks/ (or train/images, train/masks, ...)"
        )
    return {"all": (root / "images", root / "masks")}


@dataclass
class Folders:
    """A user dataset as found on disk, before any split is carved out of it."""

    splits: dict  # "all" (one images/ + masks/ pool) or "train"/"val"/"test" -> Split
    where: dict  # the same keys -> the folder or list each came from
    labels: list | None  # labels.txt / classes.txt, or VOC's names
    num_classes: int  # classes the user declared (labels or data.num_classes); 0 = unknown
    values: set  # every mask value seen, at full resolution


def read_pair_folders(dcfg) -> Folders:
    root = Path(dcfg.path)
    if not root.is_dir():
        raise UserError(
            f"data.path {str(root)!r} is not a folder; point it at a folder with images/ and masks/"
        )
    folders = _pair_folders(root)
    names = _labels_txt(root)
    num_classes = len(names) if names else dcfg.num_classes
    splits, where, values, problems, total = {}, {}, set(), Problems(), 0
    for split, (image_dir, mask_dir) in folders.items():
        found = _find_images(image_dir)
        masks = {p.stem: p for p in mask_dir.glob("*.png")} if mask_dir.is_dir() else {}
        pairs = [(path, masks.get(stem)) for stem, path in found.items()]
        total += len(pairs)
        if not pairs:
            raise UserError(f"{image_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        splits[split], seen = _load_all(pairs, dcfg, num_classes, problems, str(image_dir))
        where[split] = f"{image_dir.relative_to(root)}/"
        values |= seen
    problems.report(total, str(root))
    return Folders(splits, where, names, num_classes, values)


def read_voc_folders(dcfg) -> Folders:
    """Pascal VOC: JPEGImages/, SegmentationClass/ (palette PNGs, 255 = boundary) and
    ImageSets/Segmentation/{train,val}.txt. VOC's test labels are not public, so its val
    list is the test split (a validation split is carved out of train later)."""
    root = find_voc_root(dcfg.path)
    if root is None:
        raise UserError(
            f"{dcfg.path} is not a Pascal VOC folder (no JPEGImages/ and SegmentationClass/); "
            "point data.path at VOC2012/ (with JPEGImages/, SegmentationClass/, "
            "ImageSets/Segmentation/)"
        )
    lists = root / "ImageSets" / "Segmentation"
    names = _labels_txt(root) or list(VOC_CLASSES)
    splits, where, values, problems, total = {}, {}, set(), Problems(), 0
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
        splits[split], seen = _load_all(pairs, dcfg, len(names), problems, str(root))
        where[split] = f"VOC list ImageSets/Segmentation/{file}"
        values |= seen
    problems.report(total, str(root))
    return Folders(splits, where, names, len(names), values)


# ---- what mask values mean -------------------------------------------------------------


def is_binary_0_255(values: set, num_classes: int) -> bool:
    """Masks that hold only 0 and 255 (and at most two declared classes): the common
    binary-mask format, where 255 is the object, not VOC's "unlabelled" boundary."""
    return 255 in values and values <= {0, 255} and num_classes in (0, 2)


def mask_lookup(folders: Folders, dcfg) -> tuple[np.ndarray, list[str]]:
    """(lookup table raw mask value -> class id, uint8 [256]; notes on the choices made).
    Applied to the resized masks when the data is read and to the full-size masks when
    evaluation scores each test image at its own resolution."""
    ignore = dcfg.ignore_index
    lut = np.arange(256, dtype=np.uint8)
    notes = []
    if is_binary_0_255(folders.values, folders.num_classes):
        lut[255] = 1
        masks = np.concatenate([s.masks for s in folders.splits.values()])
        share = float((masks == 255).mean())
        notes.append(
            f"masks hold only the values 0 and 255 ({len(masks)} masks, {share:.1%} of pixels "
            "255 at the model size): read as binary masks, 0 -> class 0 background, "
            "255 -> class 1 foreground (masks with other class ids keep 255 as ignore)"
        )
    if dcfg.binary:
        raw = np.arange(256)
        keep_ignore = (lut == ignore) & (raw == ignore)
        lut = np.where(keep_ignore, lut, (lut > 0).astype(np.uint8)).astype(np.uint8)
    return lut, notes


def class_names(folders: Folders, lut: np.ndarray, dcfg) -> list[str]:
    binary_0_255 = is_binary_0_255(folders.values, folders.num_classes)
    if dcfg.binary:
        names = ["background", "foreground"]
    elif folders.labels:
        names = list(folders.labels)
    elif binary_0_255:
        names = ["background", "foreground"]
    else:
        ids = {int(lut[v]) for v in folders.values if v != dcfg.ignore_index}
        count = folders.num_classes or max(ids, default=0) + 1
        names = [f"class_{i}" for i in range(count)]
    if len(names) < 2:
        raise UserError(
            f"the masks in {dcfg.path} hold only class 0 (values seen: "
            f"{', '.join(map(str, sorted(folders.values)[:8]))}, ignore {dcfg.ignore_index}): "
            "nothing to segment; masks hold one class id per pixel (0 background, 1, 2, ...)"
        )
    return names


# ---- splits: carved when missing, duplicates of training images removed ----------------


def _take(split: Split, index) -> Split:
    index = np.asarray(index, np.int64)
    return Split(
        split.images[index],
        split.masks[index],
        hashes=[split.hashes[i] for i in index] if split.hashes is not None else None,
        files=[split.files[i] for i in index] if split.files is not None else None,
    )


def _too_small(n: int, fraction: float, where: str) -> UserError:
    if fraction <= 0:
        reason = "data.test_fraction=0"
    else:
        reason = (
            f"data.test_fraction={fraction:g} carves none of its {n} pairs "
            f"(raise it to at least {1 / max(n, 1):.2f})"
        )
    return UserError(
        f"{where} has no test split and {reason}; the result is never computed on training "
        "or validation images: add a test split (test/images + test/masks), more pairs, "
        "or set data.test_fraction"
    )


def carve_splits(folders: Folders, dcfg, seed: int) -> tuple[dict, dict]:
    """{train, val, test: Split} and where each came from. A split the data lacks is carved
    out of the training images (seeded fractions); test never falls back to val or train."""
    from keras_suite.common.data import carve_missing_splits, split_indices

    found, where = dict(folders.splits), folders.where
    if "all" in found:
        whole, pool = found.pop("all"), where["all"]
        tr, va, te = split_indices(len(whole), dcfg.val_fraction, dcfg.test_fraction, seed)
        if not len(te):
            raise _too_small(len(whole), dcfg.test_fraction, pool)
        if not len(tr):
            raise UserError(
                f"{pool}: data.val_fraction + data.test_fraction leave no training image "
                f"of {len(whole)}; lower them or add pairs"
            )
        splits = {"train": _take(whole, tr), "val": _take(whole, va), "test": _take(whole, te)}
        origin = {
            "train": f"{pool} (what the carving left)",
            "val": f"carved from {pool} (seeded, data.val_fraction={dcfg.val_fraction:g})",
            "test": f"carved from {pool} (seeded, data.test_fraction={dcfg.test_fraction:g})",
        }
        return splits, origin
    train = found["train"]
    missing = [s for s in ("val", "test") if s not in found]
    keep, carved = carve_missing_splits(
        len(train), missing, dcfg.val_fraction, dcfg.test_fraction, seed
    )
    if "test" in missing and "test" not in carved:
        raise _too_small(len(train), dcfg.test_fraction, where["train"])
    if not len(keep):
        raise UserError(f"{where['train']}: carving val/test left no training image; add pairs")
    splits = {"train": _take(train, keep)}
    origin = {"train": where["train"]}
    for name, fraction in (("val", dcfg.val_fraction), ("test", dcfg.test_fraction)):
        if name in found:
            splits[name], origin[name] = found[name], where[name]
        elif name in carved:
            splits[name] = _take(train, carved[name])
            origin[name] = (
                f"carved from {where['train']} (seeded, data.{name}_fraction={fraction:g})"
            )
        else:
            splits[name] = _take(train, [])
            origin[name] = f"none (data.{name}_fraction=0)"
    return splits, origin


def remove_duplicates(splits: dict) -> dict:
    """Drop val/test images whose pixels equal a training image's (and test images equal
    to a kept val image's), in place; -> {split: count removed}. The rule: an exact hash
    of the decoded pixels, at the image's own resolution."""
    seen = set(splits["train"].hashes or ())
    removed = {}
    for name in ("val", "test"):
        split = splits[name]
        if split.hashes is None:
            removed[name] = 0
            continue
        keep = [i for i, h in enumerate(split.hashes) if h not in seen]
        removed[name] = len(split) - len(keep)
        if removed[name]:
            dropped = sorted(set(range(len(split))) - set(keep))
            shown = [Path(split.files[i][0]).name for i in dropped[:5]] if split.files else []
            log.warning(
                "removed %d of %d %s images whose pixels equal a training%s image "
                "(exact pixel hash)%s",
                removed[name],
                len(split),
                name,
                " or validation" if name == "test" else "",
                (": " + ", ".join(shown) + (" ..." if len(dropped) > 5 else "")) if shown else "",
            )
            splits[name] = _take(split, keep)
        seen.update(splits[name].hashes)
    return removed


@dataclass
class SegmentationData:
    """Everything the app needs from one dataset: splits, class names, and how the
    evaluation split was made (for metrics.json)."""

    splits: dict  # train / val / test -> Split
    names: list  # class names, index = class id
    origin: dict  # split -> where it came from ("test/images/", "carved from images/ ...")
    duplicates_removed: dict  # val / test -> images removed as copies of training images
    lut: np.ndarray | None = None  # user data: raw mask value -> class id (None: built-in)
    notes: list = field(default_factory=list)  # choices made reading the masks, logged


def user_dataset(folders: Folders, dcfg, seed: int) -> SegmentationData:
    lut, notes = mask_lookup(folders, dcfg)
    for note in notes:
        log.info("%s", note)
    names = class_names(folders, lut, dcfg)
    for split in folders.splits.values():
        split.masks = lut[split.masks]
    splits, origin = carve_splits(folders, dcfg, seed)
    removed = remove_duplicates(splits)
    if not len(splits["test"]):
        raise UserError(
            f"every test image of {dcfg.path} is a copy of a training image (exact pixels): "
            "add distinct test images"
        )
    return SegmentationData(splits, names, origin, removed, lut, notes)


def pairs_dataset(dcfg, seed: int) -> SegmentationData:
    """images/ + masks/ folders (or train/, val/, test/ with images/ + masks/ each)."""
    return user_dataset(read_pair_folders(dcfg), dcfg, seed)


def voc_dataset(dcfg, seed: int) -> SegmentationData:
    return user_dataset(read_voc_folders(dcfg), dcfg, seed)


def own_resolution_mask(files: tuple, lut: np.ndarray) -> np.ndarray:
    """A user test example's mask at its image's own resolution, as class ids (the lookup
    the training masks went through; nothing resized)."""
    return lut[read_mask(Path(files[1]))]


# ---- all sources -----------------------------------------------------------------------


def load_dataset(dcfg, seed: int) -> SegmentationData:
    """The dataset of a config; shared per config in this process (evaluate, export and
    convert rebuild the datasets of one run; common/cache.py)."""
    return cache.last_value(
        "segmentation.splits", (repr(dcfg), seed), lambda: _read_dataset(dcfg, seed)
    )


def load_splits(dcfg, seed: int):
    """{train, val, test: Split} and class names."""
    data = load_dataset(dcfg, seed)
    return data.splits, data.names


def _read_dataset(dcfg, seed: int) -> SegmentationData:
    if dcfg.source == "shapes":
        splits = {
            name: shape_scenes(n, dcfg, SHAPES_SEEDS[name])
            for name, n in (
                ("train", dcfg.num_train),
                ("val", dcfg.num_val),
                ("test", dcfg.num_test),
            )
        }
        origin = {name: f"generated (seed {SHAPES_SEEDS[name]})" for name in splits}
        removed = remove_duplicates(splits)
        return SegmentationData(splits, shape_class_names(dcfg.binary), origin, removed)
    if dcfg.source == "pairs":
        return pairs_dataset(dcfg, seed)
    if dcfg.source == "tfds":
        return tfds_dataset(dcfg, seed)
    return voc_dataset(dcfg, seed)


def tfds_dataset(dcfg, seed: int) -> SegmentationData:
    """A TFDS dataset by name (data.name=oxford_iiit_pet): keras_suite/common/tfds.py."""
    from keras_suite.common.tfds import segmentation_arrays

    arrays, names, origin = segmentation_arrays(dcfg, seed)
    splits = {
        s: Split(images, masks, [pixel_hash(i) for i in images])
        for s, (images, masks) in arrays.items()
    }
    for name in ("val", "test"):  # a fraction of 0 carves nothing
        if name not in splits:
            splits[name] = _take(splits["train"], [])
    if not len(splits["test"]):
        raise UserError(f"TFDS {dcfg.name}: no test images; set data.test_fraction > 0")
    removed = remove_duplicates(splits)
    return SegmentationData(splits, names, origin, removed)
