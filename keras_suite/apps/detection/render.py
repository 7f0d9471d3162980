"""Drawing detections: boxes, class names and scores on images (PNG for people)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from keras_suite.common.images import read_rgb_upright


def _colour(c: int) -> tuple[int, int, int]:
    hue = (int(c) * 47) % 180
    hsv = np.uint8([[[hue, 220, 255]]])
    return tuple(int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def draw_detections(
    image: np.ndarray, boxes, scores, classes, class_names, ground_truth=None, thickness: int = 1
) -> np.ndarray:
    """RGB uint8 image with predicted boxes (coloured, labelled) and optional ground truth
    (thin white). Boxes are x1y1x2y2 pixels of this image."""
    img = np.ascontiguousarray(image.astype(np.uint8)).copy()
    scale = max(img.shape[:2]) / 256.0
    font = max(0.3, 0.35 * scale)
    if ground_truth is not None:
        for b in ground_truth:
            cv2.rectangle(img, (int(b[0]), int(b[1])), (int(b[2]), int(b[3])), (255, 255, 255), 1)
    for b, s, c in zip(boxes, scores, classes):
        if c < 0:
            continue
        colour = _colour(c)
        p1, p2 = (int(round(b[0])), int(round(b[1]))), (int(round(b[2])), int(round(b[3])))
        cv2.rectangle(img, p1, p2, colour, max(1, int(thickness * scale)))
        name = class_names[c] if c < len(class_names) else str(c)
        label = f"{name} {s:.2f}"
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font, 1)
        y = max(p1[1], th + 2)
        cv2.rectangle(img, (p1[0], y - th - 2), (p1[0] + tw, y), colour, -1)
        cv2.putText(
            img, label, (p1[0], y - 1), cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 0), 1, cv2.LINE_AA
        )
    return img


def save_png(image: np.ndarray, path: str | Path) -> str:
    """Write RGB uint8 through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    tmp.replace(path)
    return str(path)


def read_rgb(path: str | Path) -> np.ndarray | None:
    """The picture as displayed (EXIF orientation applied): what `predict` sends."""
    return read_rgb_upright(path)


def contact_sheet(images: list[np.ndarray], cols: int = 4, upscale: int = 2) -> np.ndarray:
    """Tile equally sized images into one (enlarged so small images stay legible)."""
    h, w = images[0].shape[:2]
    rows = (len(images) + cols - 1) // cols
    sheet = np.full((rows * h, cols * w, 3), 255, np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        sheet[r * h : (r + 1) * h, c * w : (c + 1) * w] = img
    return (
        cv2.resize(sheet, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_NEAREST)
        if upscale > 1
        else sheet
    )
