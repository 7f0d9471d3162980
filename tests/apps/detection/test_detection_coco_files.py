"""predictions_coco.json and ground_truth_coco.json: detections and the ground truth they
were scored against, in COCO format and original image pixels, re-scored by pycocotools
to the numbers the app computes (1e-6). A COCO dataset's own image and category ids are
kept, so the predictions also re-score against the user's annotation file."""

import contextlib
import io
import json

import cv2
import numpy as np
import pytest
import yaml

from keras_suite.apps.detection import formats
from keras_suite.apps.detection.evaluate import (
    COCO_FILES,
    summary_in_original_pixels,
    write_coco_files,
)
from keras_suite.common.shapes import SHAPES, scenes

pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

NAMES = list(SHAPES)
STAT_NAMES = (
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR1",
    "AR10",
    "AR100",
    "ARs",
    "ARm",
    "ARl",
)


def pycocotools_stats(ground_truth: dict, results: list) -> dict:
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = ground_truth
        coco.createIndex()
        evaluation = COCOeval(coco, coco.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return dict(zip(STAT_NAMES, map(float, evaluation.stats)))


def _coco_dataset(root, n=6):
    """Non-square images (boxes scale differently per axis; objects of every COCO area
    range), category ids that are not index + 1, image ids from 100, one crowd region."""
    (root / "imgs").mkdir(parents=True)
    images, annotations = [], []
    category_id = {k: 7 + 3 * k for k in range(len(NAMES))}
    for i, scene in enumerate(scenes(n, 64, seed=3, max_objects=4, min_radius=0.06)):
        width, height = (320, 200) if i % 2 else (90, 150)
        path = root / "imgs" / f"photo{i}.png"
        cv2.imwrite(str(path), cv2.resize(scene.image, (width, height))[..., ::-1])
        images.append({"id": 100 + i, "file_name": path.name, "width": width, "height": height})
        scale = np.float64([width / 64, height / 64] * 2)
        for box, cls in zip(scene.boxes * scale, scene.classes):
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": 100 + i,
                    "category_id": category_id[int(cls)],
                    "bbox": [float(box[0]), float(box[1]), float(w), float(h)],
                    "area": float(w * h),
                    "iscrowd": 0,
                }
            )
    annotations.append(
        {
            "id": len(annotations) + 1,
            "image_id": 101,
            "category_id": category_id[1],
            "bbox": [10.0, 20.0, 60.0, 50.0],
            "area": 3000.0,
            "iscrowd": 1,
        }
    )
    coco = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": category_id[k], "name": n} for k, n in enumerate(NAMES)],
    }
    (root / "imgs" / "instances.json").write_text(json.dumps(coco))
    (root / "data.yaml").write_text(yaml.safe_dump({"train": "imgs/instances.json"}))
    return coco


def _detections(split, seed=0):
    """Per image: each object found with a jittered box (some badly), plus false positives,
    in the split's (model input) pixels, best score first."""
    rng = np.random.default_rng(seed)
    size = split.images.shape[1]
    out = []
    for i in range(len(split)):
        boxes, classes = split.ground_truth(i)
        jitter = rng.normal(0, 1.5, boxes.shape) * rng.choice([0.3, 1, 4], (len(boxes), 1))
        found = np.clip(boxes + jitter, 0, size)
        noise_xy = rng.uniform(0, size - 8, (3, 2))
        noise = np.concatenate([noise_xy, noise_xy + rng.uniform(4, 30, (3, 2))], 1)
        boxes = np.concatenate([found, np.clip(noise, 0, size)]).astype(np.float32)
        classes = np.concatenate([classes, rng.integers(0, len(NAMES), 3)])
        scores = rng.uniform(0.05, 1.0, len(boxes)).astype(np.float32)
        order = np.argsort(-scores, kind="mergesort")
        out.append((boxes[order], scores[order], classes[order]))
    return out


def test_written_files_rescore_to_the_summary_and_against_the_users_own_file(tmp_path):
    original = _coco_dataset(tmp_path)
    split = formats.load_dataset(tmp_path / "data.yaml", 96, 16)[0]["train"]
    predictions = _detections(split)
    ours = summary_in_original_pixels(predictions, split, len(NAMES))

    written = write_coco_files(tmp_path, split, NAMES, {"coco": predictions})
    assert written == {"coco": COCO_FILES["coco"], "ground_truth": COCO_FILES["ground_truth"]}
    results = json.loads((tmp_path / COCO_FILES["coco"]).read_text())
    ground_truth = json.loads((tmp_path / COCO_FILES["ground_truth"]).read_text())
    assert set(results[0]) == {"image_id", "category_id", "bbox", "score"}
    assert len(results) == sum(len(p[1]) for p in predictions)
    # the dataset's own ids: the results fit the user's annotation file as they are
    assert {r["image_id"] for r in results} <= {im["id"] for im in original["images"]}
    assert {r["category_id"] for r in results} <= {c["id"] for c in original["categories"]}

    rescored = pycocotools_stats(ground_truth, results)
    assert rescored == pytest.approx(ours, abs=1e-6)
    # the user's file has the same boxes (nothing was skipped), so the same numbers
    assert pycocotools_stats(original, results) == pytest.approx(ours, abs=1e-6)
    # every area range is populated, so the original-pixel areas were really exercised
    assert all(ours[k] >= 0 for k in ("APs", "APm", "APl")), ours


def test_boxes_are_in_original_pixels(tmp_path):
    original = _coco_dataset(tmp_path, n=2)
    split = formats.load_dataset(tmp_path / "data.yaml", 96, 16)[0]["train"]
    # detections equal to the ground truth come back as the user's own boxes
    exact = [(*split.ground_truth(i), None) for i in range(len(split))]
    exact = [(b, np.linspace(1, 0.5, len(b)), c) for b, c, _ in exact]
    write_coco_files(tmp_path, split, NAMES, {"coco": exact})
    results = json.loads((tmp_path / COCO_FILES["coco"]).read_text())
    want = sorted(
        (a["image_id"], a["category_id"], *a["bbox"])
        for a in original["annotations"]
        if not a["iscrowd"]
    )
    got = sorted((r["image_id"], r["category_id"], *r["bbox"]) for r in results)
    np.testing.assert_allclose(np.array(got), np.array(want), atol=1e-3)


def test_yolo_data_gets_ids_in_file_order_and_categories_from_one(tmp_path):
    from tests.apps.detection.test_detection_formats import _write_yolo_train

    _write_yolo_train(tmp_path, n=3)
    (tmp_path / "data.yaml").write_text(
        yaml.safe_dump({"train": "images/train", "names": dict(enumerate(NAMES))})
    )
    split = formats.load_dataset(tmp_path / "data.yaml", 64, 8)[0]["train"]
    write_coco_files(tmp_path, split, NAMES, {})
    truth = json.loads((tmp_path / COCO_FILES["ground_truth"]).read_text())
    assert [im["id"] for im in truth["images"]] == [1, 2, 3]
    assert [im["file_name"].rsplit("/", 1)[-1] for im in truth["images"]] == [
        "img0.png",
        "img1.png",
        "img2.png",
    ]
    assert (truth["images"][0]["width"], truth["images"][0]["height"]) == (120, 80)
    assert [c["id"] for c in truth["categories"]] == list(range(1, len(NAMES) + 1))
