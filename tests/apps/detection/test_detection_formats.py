"""User detection formats: YOLO txt, COCO JSON, Pascal VOC XML via data.yaml; invalid boxes
are reported with file and line, skipped, and the valid ones survive resizing intact."""

import json
import logging

import cv2
import numpy as np
import pytest
import yaml

from keras_suite.apps.detection import formats
from keras_suite.common.errors import UserError
from keras_suite.common.shapes import SHAPES, scenes

NAMES = list(SHAPES)


def _write_images(folder, n=3, size=80, seed=7):
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, s in enumerate(scenes(n, size, seed=seed, max_objects=3, min_radius=0.1)):
        img = cv2.resize(s.image, (size + 40, size))  # not square: boxes must scale per axis
        path = folder / f"img{i}.png"
        cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        boxes = s.boxes * np.float32([(size + 40) / size, 1, (size + 40) / size, 1])
        out.append((path, boxes, s.classes, (size + 40, size)))
    return out


def _check_loaded(split, truth, image_size):
    assert len(split) == len(truth)
    for i, (_, boxes, classes, (w, h)) in enumerate(truth):
        got_boxes, got_classes = split.ground_truth(i)
        want = boxes * np.float32([image_size / w, image_size / h] * 2)
        np.testing.assert_allclose(got_boxes, want, atol=0.02)
        np.testing.assert_array_equal(got_classes, classes)


def test_yolo_with_invalid_lines(tmp_path, caplog, capsys):
    truth = _write_images(tmp_path / "images" / "train")
    labels = tmp_path / "labels" / "train"
    labels.mkdir(parents=True)
    for path, boxes, classes, (w, h) in truth:
        lines = [
            f"{c} {(b[0] + b[2]) / 2 / w:.6f} {(b[1] + b[3]) / 2 / h:.6f} "
            f"{(b[2] - b[0]) / w:.6f} {(b[3] - b[1]) / h:.6f}"
            for b, c in zip(boxes, classes)
        ]
        (labels / f"{path.stem}.txt").write_text("\n".join(lines) + "\n")
    bad = labels / "img0.txt"
    good_lines = bad.read_text().splitlines()
    bad.write_text(
        "\n".join(
            good_lines
            + [
                "3 1.4 0.5 0.2 0.2",  # outside the image
                "2 0.5 0.5 0.0 0.3",  # zero width
                "9 0.5 0.5 0.2 0.2",  # unknown class
                "1 0.5 0.5",
            ]
        )
        + "\n"
    )  # malformed
    (tmp_path / "data.yaml").write_text(
        yaml.safe_dump(
            {"path": ".", "train": "images/train", "val": "images/train", "names": NAMES}
        )
    )
    with caplog.at_level(logging.WARNING, logger="ksuite"):
        records, names, report = formats.read_records(tmp_path / "data.yaml")
    n = len(good_lines)
    assert [p.split(": ")[0] for p in report.problems[:4]] == [
        f"{bad}:{n + k}" for k in (1, 2, 3, 4)
    ]
    assert "outside" in report.problems[0] and "zero" in report.problems[1]
    assert "unknown class 9" in report.problems[2] and "expected" in report.problems[3]
    assert "8 invalid boxes" in caplog.text  # 4 bad lines in train + the same 4 in val
    splits, names = formats.load_dataset(tmp_path / "data.yaml", 64, 8)
    assert names == NAMES
    _check_loaded(splits["train"], truth, 64)
    # `ksuite detection-check` lists the same problems and fails with --strict
    import argparse

    from keras_suite.apps.detection.commands import _check

    args = argparse.Namespace(data_yaml=str(tmp_path / "data.yaml"), max_lines=50, strict=True)
    assert _check(args) == 1
    printed = capsys.readouterr().out
    assert f"{bad}:{n + 3}: unknown class 9" in printed and "8 invalid boxes" in printed


def test_coco_json(tmp_path):
    truth = _write_images(tmp_path / "imgs")
    images, anns = [], []
    for i, (path, boxes, classes, (w, h)) in enumerate(truth):
        images.append({"id": 10 + i, "file_name": path.name, "width": w, "height": h})
        for b, c in zip(boxes, classes):
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": 10 + i,
                    "category_id": int(c) + 1,
                    "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])],
                    "iscrowd": 0,
                }
            )
    anns.append(
        {"id": 900, "image_id": 10, "category_id": 1, "bbox": [-30, 5, 10, 10], "iscrowd": 0}
    )
    anns.append(
        {"id": 901, "image_id": 10, "category_id": 77, "bbox": [5, 5, 10, 10], "iscrowd": 0}
    )
    cats = [{"id": k + 1, "name": n} for k, n in enumerate(NAMES)]
    ann_file = tmp_path / "imgs" / "instances.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    (tmp_path / "data.yaml").write_text(yaml.safe_dump({"train": "imgs/instances.json"}))
    _, names, report = formats.read_records(tmp_path / "data.yaml")
    assert names == NAMES
    k = len(anns) - 2
    assert report.problems[0].startswith(f"{ann_file}: annotations[{k}] (id 900)")
    assert "outside" in report.problems[0]
    assert "unknown class" in report.problems[1] and "(id 901)" in report.problems[1]
    splits, _ = formats.load_dataset(tmp_path / "data.yaml", 96, 8)
    _check_loaded(splits["train"], truth, 96)


def test_voc_xml(tmp_path):
    truth = _write_images(tmp_path / "voc" / "JPEGImages")
    ann_dir = tmp_path / "voc" / "Annotations"
    ann_dir.mkdir()
    for path, boxes, classes, (w, h) in truth:
        objs = "".join(
            f"<object>\n<name>{NAMES[c]}</name>\n<bndbox><xmin>{b[0] + 1:.3f}</xmin><ymin>{b[1] + 1:.3f}</ymin>"
            f"<xmax>{b[2]:.3f}</xmax><ymax>{b[3]:.3f}</ymax></bndbox>\n</object>\n"
            for b, c in zip(boxes, classes)
        )
        if path.stem == "img1":
            objs += "<object>\n<name>dragon</name>\n<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox>\n</object>\n"
        (ann_dir / f"{path.stem}.xml").write_text(
            f"<annotation>\n<filename>{path.name}</filename>\n<size><width>{w}</width>"
            f"<height>{h}</height><depth>3</depth></size>\n{objs}</annotation>\n"
        )
    (tmp_path / "data.yaml").write_text(
        yaml.safe_dump({"train": "voc/Annotations", "names": NAMES})
    )
    _, _, report = formats.read_records(tmp_path / "data.yaml")
    assert len(report.problems) == 1
    n_objects = len(truth[1][1])
    assert report.problems[0].startswith(
        f"{ann_dir / 'img1.xml'}:{4 + 4 * n_objects}: unknown class 'dragon'"
    )
    splits, _ = formats.load_dataset(tmp_path / "data.yaml", 64, 8)
    _check_loaded(splits["train"], truth, 64)


def test_bad_data_yaml_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="data.yaml"):
        formats.read_records(tmp_path / "missing.yaml")
    (tmp_path / "data.yaml").write_text("train: images/train\n")
    with pytest.raises(UserError, match="names"):
        formats.read_records(tmp_path / "data.yaml")


def _write_yolo_train(root, n, split="train", seed=7):
    """images/<split> + labels/<split> of `n` generated images with their YOLO label files."""
    truth = _write_images(root / "images" / split, n=n, seed=seed)
    (root / "labels" / split).mkdir(parents=True)
    for path, boxes, classes, (w, h) in truth:
        (root / "labels" / split / f"{path.stem}.txt").write_text(
            "".join(
                f"{c} {(b[0] + b[2]) / 2 / w} {(b[1] + b[3]) / 2 / h} {(b[2] - b[0]) / w} {(b[3] - b[1]) / h}\n"
                for b, c in zip(boxes, classes)
            )
        )
    return truth


def test_app_datasets_from_a_user_yaml(tmp_path):
    import dataclasses

    from keras_suite.apps.detection import APP
    from keras_suite.apps.detection.config import smoke

    _write_yolo_train(tmp_path, n=4)
    _write_yolo_train(tmp_path, n=2, split="test", seed=8)
    description = {
        "train": "images/train",
        "test": "images/test",
        "names": {i: n for i, n in enumerate(NAMES)},
    }
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(description))
    cfg = smoke()
    cfg = dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, source=str(tmp_path / "data.yaml")),
        train=dataclasses.replace(cfg.train, batch_size=2),
    )
    data = APP.datasets(cfg=cfg, artifacts=None)
    assert data.info["class_names"] == NAMES and data.steps_per_epoch == 2
    batch = next(iter(data.train_epoch(0)))
    assert batch["images"].shape == (2, 64, 64, 3) and batch["boxes"].shape == (2, 8, 4)
    assert data.info["split_sizes"] == {"train": 4, "test": 2}
    # a test split that is the training folder scores nothing new: refused, never scored
    leaky = tmp_path / "leaky.yaml"
    leaky.write_text(yaml.safe_dump({**description, "test": "images/train"}))
    leaky_cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, source=str(leaky)))
    with pytest.raises(UserError, match="no test images \\(4 were copies of training"):
        APP.datasets(cfg=leaky_cfg, artifacts=None)


def test_missing_val_and_test_are_carved_from_train(tmp_path, caplog):
    import dataclasses

    from keras_suite.apps.detection import APP
    from keras_suite.apps.detection.config import smoke

    _write_yolo_train(tmp_path, n=10)
    (tmp_path / "data.yaml").write_text(
        yaml.safe_dump({"train": "images/train", "names": {i: n for i, n in enumerate(NAMES)}})
    )
    cfg = smoke()
    cfg = dataclasses.replace(
        cfg,
        data=dataclasses.replace(
            cfg.data, source=str(tmp_path / "data.yaml"), val_fraction=0.2, test_fraction=0.2
        ),
        train=dataclasses.replace(cfg.train, batch_size=2),
    )
    with caplog.at_level("INFO", logger="ksuite"):
        data = APP.datasets(cfg=cfg, artifacts=None)
    assert data.info["split_sizes"] == {"train": 6, "val": 2, "test": 2}
    assert "val 2 images (carved from train (data.val_fraction=0.2))" in caplog.text
    assert "horizontal flip on, no vertical flip" in caplog.text
    splits = data.extras["splits"]
    seen = [img.tobytes() for name in ("train", "val", "test") for img in splits[name].images]
    assert len(seen) == len(set(seen)) == 10  # each image in exactly one split


def test_copies_across_splits_are_removed_by_pixels_and_counted(tmp_path):
    """A training image copied into val/ and test/ (byte for byte, and re-saved with other
    PNG settings: other bytes, the same pixels) is scored nowhere; the counts are in info."""
    import dataclasses

    from keras_suite.apps.detection import APP
    from keras_suite.apps.detection.config import smoke

    train = _write_yolo_train(tmp_path, n=6)
    _write_yolo_train(tmp_path, n=3, split="val", seed=8)
    _write_yolo_train(tmp_path, n=4, split="test", seed=9)
    copies = [("val", 0, None), ("test", 1, None), ("test", 2, [cv2.IMWRITE_PNG_COMPRESSION, 0])]
    for split, i, options in copies:
        source = train[i][0]
        target = tmp_path / "images" / split / f"copy{i}.png"
        if options is None:
            target.write_bytes(source.read_bytes())
        else:
            cv2.imwrite(str(target), cv2.imread(str(source)), options)
            assert target.read_bytes() != source.read_bytes()
        label = tmp_path / "labels" / "train" / f"{source.stem}.txt"
        (tmp_path / "labels" / split / f"copy{i}.txt").write_text(label.read_text())
    (tmp_path / "data.yaml").write_text(
        yaml.safe_dump(
            {
                "train": "images/train",
                "val": "images/val",
                "test": "images/test",
                "names": dict(enumerate(NAMES)),
            }
        )
    )
    cfg = smoke()
    cfg = dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, source=str(tmp_path / "data.yaml")),
        train=dataclasses.replace(cfg.train, batch_size=2),
    )
    data = APP.datasets(cfg=cfg, artifacts=None)
    assert data.info["split_sizes"] == {"train": 6, "val": 3, "test": 4}
    split = data.info["evaluation_split"]
    assert split["near_duplicates_removed"] == 2 and split["removed_by_split"] == {
        "val": 1,
        "test": 2,
    }
    splits = data.extras["splits"]
    seen = [img.tobytes() for name in ("train", "val", "test") for img in splits[name].images]
    assert len(seen) == len(set(seen))
    # the kept test images are the four new ones, with their own ids (file order) and sizes
    assert sorted(n.rsplit("/", 1)[-1] for n in splits["test"].file_names) == [
        f"img{i}.png" for i in range(4)
    ]


def test_coco_crowd_regions_are_kept_for_evaluation_not_training(tmp_path):
    truth = _write_images(tmp_path / "imgs", n=2)
    images, anns = [], []
    for i, (path, boxes, classes, (w, h)) in enumerate(truth):
        images.append({"id": i + 1, "file_name": path.name, "width": w, "height": h})
        for b, c in zip(boxes, classes):
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": int(c) + 1,
                    "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])],
                    "iscrowd": 0,
                }
            )
    anns.append(
        {"id": 500, "image_id": 1, "category_id": 2, "bbox": [2.0, 4.0, 20.0, 10.0], "iscrowd": 1}
    )
    cats = [{"id": k + 1, "name": n} for k, n in enumerate(NAMES)]
    (tmp_path / "imgs" / "instances.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats})
    )
    (tmp_path / "data.yaml").write_text(yaml.safe_dump({"train": "imgs/instances.json"}))
    splits, _ = formats.load_dataset(tmp_path / "data.yaml", 96, 8)
    train = splits["train"]
    _check_loaded(train, truth, 96)  # the crowd region is not among the training boxes
    (w, h) = truth[0][3]
    regions, classes = train.crowd[0]
    np.testing.assert_allclose(
        regions, [[2 * 96 / w, 4 * 96 / h, 22 * 96 / w, 14 * 96 / h]], rtol=1e-5
    )
    assert classes.tolist() == [1] and len(train.crowd[1][0]) == 0
    assert train.take([1]).crowd == [train.crowd[1]]


def test_voc_difficult_objects_are_evaluation_only_unless_asked(tmp_path):
    truth = _write_images(tmp_path / "JPEGImages", n=1)
    path, boxes, classes, (w, h) = truth[0]
    objects = "".join(
        f"<object><name>{NAMES[c]}</name><difficult>{int(k == 0)}</difficult><bndbox><xmin>{b[0] + 1}</xmin>"
        f"<ymin>{b[1] + 1}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for k, (b, c) in enumerate(zip(boxes, classes))
    )
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / f"{path.stem}.xml").write_text(
        f"<annotation><filename>{path.name}</filename><size><width>{w}</width><height>{h}</height></size>"
        f"{objects}</annotation>"
    )
    (tmp_path / "data.yaml").write_text(yaml.safe_dump({"train": "Annotations", "names": NAMES}))
    for train_difficult in (False, True):
        splits, _ = formats.load_dataset(tmp_path / "data.yaml", 96, 8, train_difficult)
        split = splits["train"]
        trained = int((split.classes[0] >= 0).sum())
        assert trained == len(boxes) - (0 if train_difficult else 1)
        scored_boxes, scored_classes = split.ground_truth(0)
        assert len(scored_boxes) == len(boxes) - 1  # never scored
        assert split.difficult[0][1].tolist() == [classes[0]]


def _rotated_tag_jpeg(path):
    """A picture displayed as 100 x 40 with a bright box at x 60-90, y 10-30, stored as
    40 x 100 pixels with EXIF orientation 6 (what a phone held upright writes)."""
    from PIL import Image

    shown = np.full((40, 100, 3), 30, np.uint8)
    shown[10:30, 60:90] = 230
    stored = Image.fromarray(shown).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    path.parent.mkdir(parents=True, exist_ok=True)
    stored.save(path, format="JPEG", quality=95, exif=exif.tobytes())
    return (60, 10, 90, 30)


@pytest.mark.parametrize("fmt", ["yolo", "coco", "voc"])
def test_exif_rotated_jpeg_gets_the_right_boxes(tmp_path, fmt):
    from PIL import Image

    image = tmp_path / "images" / "train" / "phone.jpg"
    box = _rotated_tag_jpeg(image)
    with Image.open(image) as stored:
        assert stored.size == (40, 100)  # the file itself is portrait
    if fmt == "yolo":
        (tmp_path / "labels" / "train").mkdir(parents=True)
        (tmp_path / "labels" / "train" / "phone.txt").write_text(
            f"1 {(box[0] + box[2]) / 200} {(box[1] + box[3]) / 80} {(box[2] - box[0]) / 100} {(box[3] - box[1]) / 40}\n"
        )
        desc = {"train": "images/train", "names": NAMES}
    elif fmt == "coco":
        ann = {
            "images": [{"id": 1, "file_name": "phone.jpg", "width": 100, "height": 40}],
            "annotations": [
                {
                    "id": 1,
                    "image_id": 1,
                    "category_id": 2,
                    "iscrowd": 0,
                    "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                }
            ],
            "categories": [{"id": k + 1, "name": n} for k, n in enumerate(NAMES)],
        }
        (tmp_path / "images" / "train" / "instances.json").write_text(json.dumps(ann))
        desc = {"train": "images/train/instances.json"}
    else:
        (tmp_path / "Annotations").mkdir()
        (tmp_path / "Annotations" / "phone.xml").write_text(
            f"<annotation><filename>../images/train/phone.jpg</filename><object><name>{NAMES[1]}</name><bndbox>"
            f"<xmin>{box[0] + 1}</xmin><ymin>{box[1] + 1}</ymin><xmax>{box[2]}</xmax><ymax>{box[3]}</ymax>"
            "</bndbox></object></annotation>"
        )
        desc = {"train": "Annotations", "names": NAMES}
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(desc))
    splits, _, report = formats.read_records(tmp_path / "data.yaml")
    assert report.problems == []  # the box is inside the 100 x 40 picture
    loaded = formats.load_dataset(tmp_path / "data.yaml", 64, 4)[0]["train"]
    got = loaded.boxes[0][0]
    np.testing.assert_allclose(
        got, [box[0] * 0.64, box[1] * 1.6, box[2] * 0.64, box[3] * 1.6], atol=0.5
    )
    # and the pixels agree with the box: bright inside, dark outside
    x1, y1, x2, y2 = np.round(got).astype(int)
    image_pixels = loaded.images[0].astype(float)
    assert image_pixels[y1 + 3 : y2 - 3, x1 + 3 : x2 - 3].mean() > 200
    assert image_pixels[:, : x1 - 3].mean() < 60


def test_predict_sends_exif_rotated_photos_upright(tmp_path):
    import io

    from PIL import Image

    from keras_suite.common.images import read_image_files

    _rotated_tag_jpeg(tmp_path / "phone.jpg")
    (blob,) = read_image_files([tmp_path / "phone.jpg"])
    with Image.open(io.BytesIO(blob)) as sent:
        assert sent.size == (100, 40)  # what the serving graph decodes is the upright picture
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 4)).save(plain)
    assert read_image_files([plain])[0] == plain.read_bytes()  # no tag: bytes untouched
