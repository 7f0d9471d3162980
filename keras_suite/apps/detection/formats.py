"""Users' detection datasets: YOLO txt, COCO JSON and Pascal VOC XML, described by a
data.yaml in the style practitioners already write:

    path: .               # root for the relative paths below (default: the yaml's folder)
    format: yolo          # yolo | coco | voc (default: guessed from the split entries)
    names: [cat, dog]     # or {0: cat, 1: dog}; COCO/VOC may omit it (read from the files)
    train: images/train   # yolo: an images folder; labels/ sits beside images/
    val: images/val       # coco: an annotations .json (images next to it, or give
    test: images/test     #       {annotations: a.json, images: folder}); voc: a folder of .xml

Every box is checked: outside the image, zero or negative area, unknown class, or a line
that does not parse is reported as `file:line: reason` and skipped, and the number skipped
is logged. Images are resized to the model's square input and the boxes with them.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import yaml

from keras_suite.apps.detection.data import Split, pad_targets
from keras_suite.common.errors import UserError
from keras_suite.common.images import read_rgb_upright, upright_size
from keras_suite.common.runlog import log, progress

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
TOLERANCE = 1.0  # pixels a box may poke out of the image (rounding) before it is invalid


@dataclass
class Record:
    image: Path
    boxes: list = field(default_factory=list)  # x1, y1, x2, y2 in original pixels
    classes: list = field(default_factory=list)
    crowd_boxes: list = field(default_factory=list)  # COCO iscrowd=1 regions (evaluation only)
    crowd_classes: list = field(default_factory=list)
    difficult_boxes: list = field(default_factory=list)  # VOC <difficult>1</difficult> objects
    difficult_classes: list = field(default_factory=list)
    image_id: int | None = None  # the COCO file's image id (other formats: None)
    category_ids: list | None = None  # the COCO file's category id of each class index


@dataclass
class Report:
    """What was wrong in the annotation files (each entry: 'file:line: reason')."""

    problems: list = field(default_factory=list)

    def skip(self, where: str, reason: str) -> None:
        self.problems.append(f"{where}: {reason}")
        if len(self.problems) <= 20:
            log.warning("%s: %s; skipped", where, reason)


def check_box(box, width, height, cls, num_classes, where, report) -> bool:
    """True if the pixel box is usable; otherwise report why."""
    x1, y1, x2, y2 = box
    if not all(np.isfinite(box)):
        report.skip(where, "box has a non-finite coordinate")
    elif cls is None or not 0 <= cls < num_classes:
        report.skip(where, f"unknown class {cls!r} (the dataset has {num_classes} classes)")
    elif x2 <= x1 or y2 <= y1:
        report.skip(where, f"box has zero or negative area ({x1:g}, {y1:g}, {x2:g}, {y2:g})")
    elif x1 < -TOLERANCE or y1 < -TOLERANCE or x2 > width + TOLERANCE or y2 > height + TOLERANCE:
        report.skip(
            where, f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) lies outside the {width}x{height} image"
        )
    else:
        return True
    return False


def _image_size(path: Path):
    """(width, height) as displayed: EXIF orientation applied, like the pixels we train on."""
    return upright_size(path)


# ---- YOLO -------------------------------------------------------------------------------


def _labels_dir(images_dir: Path) -> Path:
    parts = list(images_dir.parts)
    if "images" in parts:
        i = len(parts) - 1 - parts[::-1].index("images")
        return Path(*parts[:i], "labels", *parts[i + 1 :])
    return images_dir


def read_yolo(images_dir: Path, num_classes: int, report: Report) -> list[Record]:
    """images/<split>/x.jpg with labels/<split>/x.txt: `class cx cy w h`, normalised."""
    if not images_dir.is_dir():
        raise UserError(
            f"YOLO images folder {images_dir} does not exist; fix the split path in data.yaml"
        )
    labels_dir = _labels_dir(images_dir)
    records = []
    for image in sorted(p for p in images_dir.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS):
        size = _image_size(image)
        if size is None:
            report.skip(str(image), "not a readable image")
            continue
        w, h = size
        rec = Record(image)
        label = labels_dir / image.relative_to(images_dir).with_suffix(".txt")
        if label.exists():  # no label file = an image without objects
            for n, line in enumerate(label.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                where = f"{label}:{n}"
                fields = line.split()
                try:
                    if len(fields) != 5:
                        raise ValueError
                    cls_f, cx, cy, bw, bh = (float(v) for v in fields)
                except ValueError:
                    report.skip(where, f"expected `class cx cy w h`, got {line.strip()!r}")
                    continue
                cls = int(cls_f) if cls_f == int(cls_f) else None
                box = ((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h)
                if check_box(box, w, h, cls, num_classes, where, report):
                    rec.boxes.append(box)
                    rec.classes.append(cls)
        records.append(rec)
    return records


# ---- COCO -------------------------------------------------------------------------------


def read_coco(ann_file: Path, images_dir: Path | None, names: list[str] | None, report: Report):
    """COCO instances JSON: bbox = [x, y, w, h] in pixels. Returns (records, names)."""
    if not ann_file.is_file():
        raise UserError(
            f"COCO annotations {ann_file} do not exist; fix the split path in data.yaml"
        )
    try:
        coco = json.loads(ann_file.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{ann_file} is not valid JSON ({e.msg} at line {e.lineno})") from None
    cats = sorted(coco.get("categories", []), key=lambda c: c["id"])
    if names is None:
        names = [c["name"] for c in cats]
    by_name = {n: i for i, n in enumerate(names)}
    cat_to_index = {c["id"]: by_name.get(c["name"]) for c in cats}
    # results written in COCO format name the file's own category ids
    id_of_name = {c["name"]: c["id"] for c in cats}
    category_ids = [id_of_name.get(n) for n in names]
    category_ids = category_ids if None not in category_ids else None
    images_dir = images_dir or ann_file.parent
    records, by_id = [], {}
    for img in coco.get("images", []):
        rec = Record(images_dir / img["file_name"], image_id=img["id"], category_ids=category_ids)
        rec.size = (img.get("width"), img.get("height"))
        by_id[img["id"]] = rec
        records.append(rec)
    for k, ann in enumerate(coco.get("annotations", [])):
        where = f"{ann_file}: annotations[{k}] (id {ann.get('id')})"
        rec = by_id.get(ann.get("image_id"))
        if rec is None:
            report.skip(where, f"image_id {ann.get('image_id')} is not in images")
            continue
        try:
            x, y, bw, bh = (float(v) for v in ann["bbox"])
        except (KeyError, TypeError, ValueError):
            report.skip(where, "bbox must be [x, y, width, height]")
            continue
        w, h = rec.size
        if w is None or h is None:
            w, h = _image_size(rec.image) or (0, 0)
            rec.size = (w, h)
        cls = cat_to_index.get(ann.get("category_id"))
        if check_box((x, y, x + bw, y + bh), w, h, cls, len(names), where, report):
            if ann.get("iscrowd", 0):  # a region of many objects: not trained on, ignored by mAP
                rec.crowd_boxes.append((x, y, x + bw, y + bh))
                rec.crowd_classes.append(cls)
            else:
                rec.boxes.append((x, y, x + bw, y + bh))
                rec.classes.append(cls)
    return records, names


# ---- Pascal VOC -------------------------------------------------------------------------


def read_voc(folder: Path, names: list[str] | None, report: Report):
    """A folder of VOC .xml files (<object><name>, <bndbox> xmin ymin xmax ymax, 1-based)."""
    if not folder.is_dir():
        raise UserError(
            f"VOC annotations folder {folder} does not exist; fix the split path in data.yaml"
        )
    files = sorted(folder.glob("*.xml"))
    parsed = []
    for f in files:
        text = f.read_text()
        try:
            root = ET.fromstring(text)
        except ET.ParseError as e:
            report.skip(f"{f}:{e.position[0]}", "XML does not parse")
            continue
        # line numbers of each <object>, for the report
        lines = [text.count("\n", 0, m.start()) + 1 for m in re.finditer(r"<object[\s>]", text)]
        parsed.append((f, root, lines))
    if names is None:
        names = sorted(
            {o.findtext("name", "").strip() for _, r, _ in parsed for o in r.iter("object")}
        )
    records = []
    for f, root, lines in parsed:
        fname = root.findtext("filename", "").strip()
        candidates = [
            f.parent / fname,
            f.parent.parent / "JPEGImages" / fname,
            f.with_suffix(".jpg"),
        ]
        image = next((c for c in candidates if fname and c.is_file()), candidates[0])
        w = int(float(root.findtext("size/width", "0") or 0))
        h = int(float(root.findtext("size/height", "0") or 0))
        if not (w and h):
            w, h = _image_size(image) or (0, 0)
        rec = Record(image)
        for k, obj in enumerate(root.iter("object")):
            where = f"{f}:{lines[k] if k < len(lines) else 0}"
            name = obj.findtext("name", "").strip()
            cls = names.index(name) if name in names else None
            try:
                bb = obj.find("bndbox")
                box = tuple(float(bb.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax"))
            except (AttributeError, TypeError, ValueError):
                report.skip(where, "object without a numeric <bndbox>")
                continue
            box = (box[0] - 1, box[1] - 1, box[2], box[3])  # VOC pixels are 1-based, inclusive
            if cls is None:
                report.skip(where, f"unknown class {name!r} (names: {', '.join(names)})")
            elif check_box(box, w, h, cls, len(names), where, report):
                hard = (obj.findtext("difficult", "0") or "0").strip() == "1"
                (rec.difficult_boxes if hard else rec.boxes).append(box)
                (rec.difficult_classes if hard else rec.classes).append(cls)
        records.append(rec)
    return records, names


# ---- data.yaml --------------------------------------------------------------------------


def _names(value):
    if value is None:
        return None
    if isinstance(value, dict):
        return [str(value[k]) for k in sorted(value, key=int)]
    if isinstance(value, list):
        return [str(v) for v in value]
    raise UserError("data.yaml `names` must be a list of class names or a mapping {0: name}")


def _guess_format(entry, root: Path) -> str:
    if isinstance(entry, dict) or str(entry).endswith(".json"):
        return "coco"
    folder = root / str(entry)
    if folder.is_dir() and any(folder.glob("*.xml")):
        return "voc"
    return "yolo"


def read_records(yaml_path: str | Path):
    """-> ({split: [Record]}, names, Report) without loading pixels."""
    yaml_path = Path(yaml_path)
    if yaml_path.is_dir():
        raise UserError(
            f"{yaml_path} is a folder; pass the path of the dataset's data.yaml (the file that "
            "names its train:/val:/test: splits), see docs/detection.md"
        )
    if not yaml_path.is_file():
        raise UserError(
            f"{str(yaml_path)!r} does not exist; pass the path of your dataset's "
            "data.yaml (or data.source=shapes for the built-in data)"
        )
    try:
        desc = yaml.safe_load(yaml_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{yaml_path} is not valid YAML: {str(e).splitlines()[0]}") from None
    except UnicodeDecodeError:  # an image or other binary file passed as the data.yaml
        raise UserError(f"{yaml_path} is not a text file; pass your dataset's data.yaml") from None
    if not isinstance(desc, dict) or "train" not in desc:
        raise UserError(
            f"{yaml_path} must be a mapping with at least `train:` (and `names:`, "
            "`val:`, `test:`); see docs/detection.md"
        )
    root = (yaml_path.parent / desc.get("path", ".")).resolve()
    names = _names(desc.get("names"))
    fmt = desc.get("format") or _guess_format(desc["train"], root)
    if fmt not in ("yolo", "coco", "voc"):
        raise UserError(f"{yaml_path}: format {fmt!r} is not one of yolo, coco, voc")
    if fmt == "yolo" and not names:
        raise UserError(f"{yaml_path}: YOLO datasets need `names:` (the class of each index)")
    report = Report()
    splits = {}
    for split in ("train", "val", "test"):
        entry = desc.get(split)
        if entry is None:
            continue
        if fmt == "yolo":
            splits[split] = read_yolo(root / str(entry), len(names), report)
        elif fmt == "coco":
            if isinstance(entry, dict):
                ann, images = root / entry["annotations"], root / entry.get("images", ".")
            else:
                ann, images = root / str(entry), None
            splits[split], names = read_coco(ann, images, names, report)
        else:
            splits[split], names = read_voc(root / str(entry), names, report)
    if report.problems:
        log.warning(
            "%d invalid boxes or files were skipped (first ones listed above)", len(report.problems)
        )
    return splits, names, report


def load_split(
    records: list[Record],
    image_size: int,
    max_boxes: int,
    report: Report,
    train_difficult: bool = False,
) -> Split:
    """Read and resize the images; scale the boxes to the resized image. VOC difficult
    objects are training targets only with `train_difficult`; evaluation ignores them."""
    images, box_list, cls_list, crowd, hard, sizes, scored = [], [], [], [], [], [], []
    image_ids, file_names = [], []
    bar = progress(len(records), "reading images", unit="img")
    for position, rec in enumerate(records, 1):
        bar.update(1)
        img = read_rgb_upright(rec.image)
        if img is None:
            report.skip(str(rec.image), "image missing or not readable")
            continue
        h, w = img.shape[:2]
        sizes.append((w, h))
        image_ids.append(rec.image_id if rec.image_id is not None else position)
        file_names.append(str(rec.image))
        img = cv2.resize(img, (image_size, image_size), interpolation=cv2.INTER_AREA)
        scale = np.float32([image_size / w, image_size / h] * 2)
        resize = lambda b: (
            np.clip(np.asarray(b, np.float32).reshape(-1, 4), 0, [w, h, w, h]) * scale
        )  # noqa: E731
        crowd.append((resize(rec.crowd_boxes), np.asarray(rec.crowd_classes, np.int64)))
        hard.append((resize(rec.difficult_boxes), np.asarray(rec.difficult_classes, np.int64)))
        images.append(img)
        targets = [resize(rec.boxes)] + ([hard[-1][0]] if train_difficult else [])
        box_list.append(np.concatenate(targets))
        cls_list.append(
            np.concatenate(
                [rec.classes] + ([rec.difficult_classes] if train_difficult else [])
            ).astype(np.int64)
        )
        scored.append(np.arange(len(box_list[-1])) < len(rec.boxes))
    bar.close()
    boxes, classes, cut = pad_targets(box_list, cls_list, max_boxes)
    if cut:
        log.warning(
            "%d boxes beyond data.max_boxes=%d were dropped; raise data.max_boxes", cut, max_boxes
        )
    images = np.stack(images) if images else np.zeros((0, image_size, image_size, 3), np.uint8)
    n_crowd, n_hard = sum(len(c) for _, c in crowd), sum(len(c) for _, c in hard)
    if n_crowd:
        log.info(
            "%d COCO crowd regions (iscrowd=1): not trained on, ignored in evaluation as pycocotools does",
            n_crowd,
        )
    if n_hard:
        log.info(
            "%d VOC difficult objects: ignored in evaluation (VOC protocol), %s",
            n_hard,
            "trained on (data.train_difficult=true)"
            if train_difficult
            else "not trained on (data.train_difficult=false)",
        )
    mask = np.zeros(classes.shape, bool)
    for i, flags in enumerate(scored):
        mask[i, : min(len(flags), max_boxes)] = flags[:max_boxes]
    return Split(
        images,
        boxes,
        classes,
        crowd if n_crowd else None,
        hard if n_hard else None,
        mask if n_hard and train_difficult else None,
        source_sizes=np.asarray(sizes, np.float64).reshape(-1, 2),  # (width, height)
        image_ids=np.asarray(image_ids, np.int64),
        file_names=file_names,
        category_ids=records[0].category_ids if records else None,
    )


def load_dataset(yaml_path, image_size: int, max_boxes: int, train_difficult: bool = False):
    """-> ({split: Split}, class names) for the app."""
    splits, names, report = read_records(yaml_path)
    out = {
        name: load_split(recs, image_size, max_boxes, report, train_difficult)
        for name, recs in splits.items()
    }
    if not len(out["train"]):
        raise UserError(f"{yaml_path}: the train split has no readable images")
    return out, names
