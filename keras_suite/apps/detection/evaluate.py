"""Evaluation on a split: predictions in graph, COCO mAP, PR curves and sample pictures."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from keras_suite import common
from keras_suite.apps.detection.metrics import coco_summary, evaluate_detections
from keras_suite.apps.detection.postprocess import decode, postprocess
from keras_suite.apps.detection.render import contact_sheet, draw_detections, save_png
from keras_suite.common.runlog import progress

tf = common.quiet_import_tensorflow()


def make_predict_fn(model, cfg, info, score_threshold):
    @tf.function(reduce_retracing=True)
    def predict(images):
        raw = model(images, training=False)
        return postprocess(
            raw,
            info["image_size"],
            cfg.model.reg_max,
            info["num_classes"],
            cfg.post,
            score_threshold,
        )

    return predict


def predict_split(model, split, cfg, info, score_threshold, batch_size=32):
    """-> list of (boxes, scores, classes) per image, in the split's pixel coordinates."""
    predict = make_predict_fn(model, cfg, info, score_threshold)
    out = []
    bar = progress(len(split), "predicting", unit="img")
    for start in range(0, len(split), batch_size):
        images = split.images[start : start + batch_size].astype(np.float32)
        r = {k: v.numpy() for k, v in predict(tf.constant(images)).items()}
        for i in range(len(images)):
            n = int(r["num_detections"][i])
            out.append((r["boxes"][i, :n], r["scores"][i, :n], r["classes"][i, :n]))
        bar.update(len(images))
    bar.close()
    return out


def predict_split_coco(model, split, cfg, info, batch_size=32, per_class: int = 100):
    """COCO-protocol candidates: every (anchor, class) score above eval_score_threshold is a
    candidate (multi-label), NMS per class, up to `per_class` detections per image per class.
    Unlike the exported signature (best class per anchor, post.pre_nms_topk candidates,
    post.max_detections per image), nothing is capped below what COCO counts."""
    num_classes, size = info["num_classes"], info["image_size"]

    @tf.function(reduce_retracing=True)
    def predict(images):
        boxes, scores = decode(model(images, training=False), size, cfg.model.reg_max)
        return tf.image.combined_non_max_suppression(
            boxes[:, :, None, :],
            scores,
            max_output_size_per_class=per_class,
            max_total_size=per_class * num_classes,
            iou_threshold=cfg.post.iou_threshold,
            score_threshold=cfg.post.eval_score_threshold,
            pad_per_class=False,
            clip_boxes=False,
        )

    out = []
    for start in range(0, len(split), batch_size):
        r = predict(tf.constant(split.images[start : start + batch_size].astype(np.float32)))
        for i in range(len(r.valid_detections)):
            n = int(r.valid_detections[i])
            out.append(
                (
                    r.nmsed_boxes[i, :n].numpy(),
                    r.nmsed_scores[i, :n].numpy(),
                    r.nmsed_classes[i, :n].numpy().astype(np.int64),
                )
            )
    return out


PROTOCOLS = {
    "map_50_95, map_50, map_75": "the exported serving signature's own detections (best class per anchor, "
    "post.pre_nms_topk candidates, post.max_detections per image): what a "
    "deployed model scores; the TFLite parity report uses the same; "
    "predictions_serving_coco.json holds them",
    "coco": "the COCO protocol, comparable with published numbers: multi-label candidates, up to 100 "
    "detections per image per class, pycocotools' summarize() table (areas are box areas in "
    "each image's original pixels); predictions_coco.json holds them",
}

# Next to metrics.json: detections in the COCO results format and the ground truth they
# were scored against, so that pycocotools re-scores them to the numbers above.
COCO_FILES = {
    "coco": "predictions_coco.json",
    "map_50_95, map_50, map_75": "predictions_serving_coco.json",
    "ground_truth": "ground_truth_coco.json",
}


def _original_scale(split) -> np.ndarray:
    """[N, 4] factors taking x1, y1, x2, y2 in the model input's pixels to the image's own."""
    height, width = split.images.shape[1:3]
    sizes = split.original_sizes()
    return np.concatenate([sizes / [width, height]] * 2, axis=1)


def _in_original_pixels(per_image, scale):
    """(boxes, ...) per image with the boxes scaled to the original image."""
    return [
        (np.asarray(boxes, np.float64).reshape(-1, 4) * s, *rest)
        for (boxes, *rest), s in zip(per_image, scale)
    ]


def summary_in_original_pixels(predictions, split, num_classes: int) -> dict:
    """pycocotools' twelve numbers for per-image detections in model-input pixels, with the
    boxes taken to each image's own pixels first: COCO's small/medium/large area ranges are
    in those (IoU, and so every other number, does not change when an axis is scaled)."""
    scale = _original_scale(split)
    gts = [split.ground_truth(i) for i in range(len(split))]
    ignored = {k: v and _in_original_pixels(v, scale) for k, v in split.ignored().items()}
    return coco_summary(
        _in_original_pixels(predictions, scale),
        _in_original_pixels(gts, scale),
        num_classes,
        **ignored,
    )


def _xywh(box) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def coco_results(predictions, split, num_classes: int) -> list[dict]:
    """Detections per image (model-input pixels) -> COCO results: image_id, category_id,
    bbox [x, y, w, h] in the original image's pixels, score. Each image's detections keep
    their order, so pycocotools breaks score ties as the metrics here do."""
    ids, categories = split.coco_image_ids(), _category_ids(split, num_classes)
    out = []
    for image_id, (boxes, scores, classes) in zip(
        ids, _in_original_pixels(predictions, _original_scale(split))
    ):
        for box, score, cls in zip(boxes, scores, classes):
            out.append(
                {
                    "image_id": int(image_id),
                    "category_id": categories[int(cls)],
                    "bbox": _xywh(box),
                    "score": float(score),
                }
            )
    return out


def _category_ids(split, num_classes: int) -> list[int]:
    """The dataset's category id of each class index: a COCO file's own, else index + 1."""
    return list(split.category_ids) if split.category_ids else list(range(1, num_classes + 1))


def coco_ground_truth(split, class_names) -> dict:
    """The split's scored boxes as a COCO instances file (original pixels, area = box area,
    as the metrics here use). COCO crowd regions are iscrowd 1. VOC difficult objects are
    iscrowd 1 too, the only ignore flag pycocotools reads; it then matches them by
    intersection over detection area where the metrics here use IoU (as VOC does)."""
    ids, categories = split.coco_image_ids(), _category_ids(split, len(class_names))
    scale = _original_scale(split)
    sizes = split.original_sizes()
    none = [(np.zeros((0, 4)), np.zeros(0, np.int64))] * len(split)
    objects = _in_original_pixels([split.ground_truth(i) for i in range(len(split))], scale)
    crowd = _in_original_pixels(split.crowd or none, scale)
    difficult = _in_original_pixels(split.difficult or none, scale)
    names = split.file_names or [f"image_{int(i)}" for i in ids]
    images, annotations = [], []
    for i, image_id in enumerate(ids):
        images.append(
            {
                "id": int(image_id),
                "file_name": str(names[i]),
                "width": int(round(sizes[i][0])),
                "height": int(round(sizes[i][1])),
            }
        )
        for (boxes, classes), iscrowd in ((objects[i], 0), (crowd[i], 1), (difficult[i], 1)):
            for box, cls in zip(boxes, classes):
                x, y, w, h = _xywh(box)
                annotations.append(
                    {
                        "id": len(annotations) + 1,  # pycocotools reads id 0 as "unmatched"
                        "image_id": int(image_id),
                        "category_id": categories[int(cls)],
                        "bbox": [x, y, w, h],
                        "area": float((box[2] - box[0]) * (box[3] - box[1])),
                        "iscrowd": iscrowd,
                    }
                )
    return {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": categories[c], "name": name} for c, name in enumerate(class_names)],
    }


def write_coco_files(run_dir, split, class_names, predictions: dict) -> dict:
    """Write COCO_FILES next to metrics.json; predictions: {protocol: per-image detections}.
    Compact JSON (one line), written to a temporary name first: never half a file."""
    run_dir = Path(run_dir)
    contents = {
        COCO_FILES[protocol]: coco_results(per_image, split, len(class_names))
        for protocol, per_image in predictions.items()
    }
    contents[COCO_FILES["ground_truth"]] = coco_ground_truth(split, class_names)
    for name, content in contents.items():
        tmp = run_dir / (name + ".tmp")
        tmp.write_text(json.dumps(content, separators=(",", ":")) + "\n")
        os.replace(tmp, run_dir / name)
    return {
        **{protocol: COCO_FILES[protocol] for protocol in predictions},
        "ground_truth": COCO_FILES["ground_truth"],
    }


def plot_pr_curves(curves: dict, ap50: dict, path) -> str:
    from keras_suite.common.plots import _pyplot

    plt = _pyplot()
    from keras_suite.apps.detection.metrics import pr_curve

    fig, ax = plt.subplots(figsize=(6, 5))
    for name, (tp, num_gt) in curves.items():
        recall, precision = pr_curve(tp, num_gt)
        ax.plot(
            np.r_[0, recall],
            np.r_[1, precision] if len(precision) else [1],
            label=f"{name} (AP50 {ap50.get(name, 0):.3f})",
        )
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.01)
    ax.set_title("Precision-recall at IoU 0.5 (test split)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


def plot_ap_per_class(ap: dict, ap50: dict, path) -> str:
    from keras_suite.common.plots import _pyplot

    plt = _pyplot()
    names = list(ap)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(5, 0.7 * len(names) + 2), 3.6))
    ax.bar(x - 0.2, [ap50[n] for n in names], 0.4, label="AP@.5")
    ax.bar(x + 0.2, [ap[n] for n in names], 0.4, label="AP@[.5:.95]")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title("AP per class (test split)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


def evaluate_model(model, split, cfg, info, run_dir=None, prefix="") -> dict:
    """COCO metrics on `split`; with run_dir also writes plots/pr_curves.png,
    plots/ap_per_class.png and plots/sample_predictions.png."""
    names = info["class_names"]
    preds = predict_split(model, split, cfg, info, cfg.post.eval_score_threshold)
    gts = [split.ground_truth(i) for i in range(len(split))]
    m = evaluate_detections(
        preds,
        gts,
        info["num_classes"],
        cfg.post.max_detections,
        names,
        keep_curves=run_dir is not None,
        **split.ignored(),
    )
    curves = m.pop("_curves", None)
    if run_dir is not None and len(split):
        plots = Path(run_dir) / "plots"
        plot_pr_curves(curves, m["ap50_per_class"], plots / f"{prefix}pr_curves.png")
        if m["ap_per_class"]:
            plot_ap_per_class(
                m["ap_per_class"], m["ap50_per_class"], plots / f"{prefix}ap_per_class.png"
            )
        tiles = []
        for i in range(min(12, len(split))):
            b, s, c = preds[i]
            keep = s >= cfg.post.score_threshold
            tiles.append(
                draw_detections(
                    split.images[i], b[keep], s[keep], c[keep], names, ground_truth=gts[i][0]
                )
            )
        save_png(
            contact_sheet(tiles, cols=4, upscale=max(1, 384 // info["image_size"])),
            plots / f"{prefix}sample_predictions.png",
        )
    coco_preds = predict_split_coco(model, split, cfg, info)
    m["coco"] = summary_in_original_pixels(coco_preds, split, info["num_classes"])
    m["protocols"] = PROTOCOLS
    if run_dir is not None and not prefix:
        m["coco_files"] = write_coco_files(
            run_dir, split, names, {"coco": coco_preds, "map_50_95, map_50, map_75": preds}
        )
    m["num_images"] = len(split)
    m["num_objects"] = int(sum(len(g[1]) for g in gts))
    return m
