"""A seeded, procedural dataset of geometric shapes on varied backgrounds.

One generator serves three apps: classification (one shape per image, label = shape
kind), detection (several shapes per image with boxes, overlaps and small objects) and
segmentation (a per-pixel class mask). Everything is a pure function of the seed, so a
run's data can be rebuilt exactly for evaluation, export and conversion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

SHAPES = ("circle", "square", "triangle", "diamond", "star", "cross", "hexagon", "ring")


def _polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """Vertices of a shape of radius r around (cx, cy), rotated by `angle` radians."""

    def regular(n, radius, offset=0.0):
        t = offset + angle + np.arange(n) * 2 * math.pi / n
        return np.stack([cx + radius * np.cos(t), cy + radius * np.sin(t)], 1)

    if kind == "square":
        return regular(4, r, math.pi / 4)
    if kind == "diamond":  # a rhombus, taller than wide, so rotation does not make a square
        t = angle + np.array([0, math.pi / 2, math.pi, 3 * math.pi / 2])
        rad = np.array([r, 0.55 * r, r, 0.55 * r])
        return np.stack([cx + rad * np.cos(t), cy + rad * np.sin(t)], 1)
    if kind == "triangle":
        return regular(3, r, -math.pi / 2)
    if kind == "hexagon":
        return regular(6, r)
    if kind == "star":
        outer, inner = regular(5, r, -math.pi / 2), regular(5, 0.42 * r, -math.pi / 2 + math.pi / 5)
        return np.stack([outer, inner], 1).reshape(-1, 2)
    if kind == "cross":
        w = 0.33 * r
        pts = np.array(
            [
                (-w, -r),
                (w, -r),
                (w, -w),
                (r, -w),
                (r, w),
                (w, w),
                (w, r),
                (-w, r),
                (-w, w),
                (-r, w),
                (-r, -w),
                (-w, -w),
            ],
            dtype=np.float64,
        )
        c, s = math.cos(angle), math.sin(angle)
        return pts @ np.array([[c, s], [-s, c]]) + (cx, cy)
    raise ValueError(kind)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    kind = rng.integers(0, 5)
    base = rng.integers(0, 256, 3).astype(np.float32)
    if kind == 0:  # flat colour
        img = np.broadcast_to(base, (size, size, 3)).copy()
    elif kind == 1:  # linear gradient between two colours
        other = rng.integers(0, 256, 3).astype(np.float32)
        t = np.linspace(0, 1, size, dtype=np.float32)
        ramp = t[None, :, None] if rng.random() < 0.5 else t[:, None, None]
        img = np.broadcast_to(base * (1 - ramp) + other * ramp, (size, size, 3)).copy()
    elif kind == 2:  # smooth blotchy texture
        coarse = rng.normal(0, 40, (max(2, size // 8), max(2, size // 8), 3)).astype(np.float32)
        img = base + cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    elif kind == 3:  # low-contrast stripes
        period = rng.integers(4, 12)
        stripes = ((np.arange(size) // period) % 2).astype(np.float32)[None, :, None] * rng.uniform(
            15, 45
        )
        img = np.broadcast_to(base + stripes, (size, size, 3)).copy()
        if rng.random() < 0.5:
            img = img.transpose(1, 0, 2).copy()
    else:  # checkerboard
        period = rng.integers(4, 16)
        yy, xx = np.mgrid[0:size, 0:size]
        board = (((yy // period) + (xx // period)) % 2).astype(np.float32)[..., None] * rng.uniform(
            15, 45
        )
        img = base + board
    return np.clip(img, 0, 255).astype(np.float32)


def _contrasting_colour(rng: np.random.Generator, background_mean: np.ndarray) -> np.ndarray:
    for _ in range(20):
        colour = rng.integers(0, 256, 3).astype(np.float32)
        if np.abs(colour - background_mean).sum() > 160:
            return colour
    return 255.0 - background_mean


def draw_shape(
    img: np.ndarray,
    mask: np.ndarray | None,
    kind: str,
    cx: float,
    cy: float,
    r: float,
    angle: float,
    colour,
    mask_value: int = 1,
) -> tuple[float, float, float, float]:
    """Draw one filled shape; returns its tight box (x1, y1, x2, y2) in pixels."""
    shift = 4  # sub-pixel precision for cv2's fixed-point coordinates
    scale = 1 << shift
    colour = tuple(float(c) for c in colour)
    if kind in ("circle", "ring"):
        centre = (int(round(cx * scale)), int(round(cy * scale)))
        before = img.copy() if kind == "ring" else None
        cv2.circle(img, centre, int(round(r * scale)), colour, -1, cv2.LINE_AA, shift)
        if mask is not None:
            cv2.circle(mask, centre, int(round(r * scale)), int(mask_value), -1, cv2.LINE_8, shift)
        if kind == "ring":  # punch the hole: whatever was below shows through
            hole = np.zeros(img.shape[:2], np.uint8)
            cv2.circle(hole, centre, int(round(0.55 * r * scale)), 1, -1, cv2.LINE_8, shift)
            img[hole == 1] = before[hole == 1]
            if mask is not None:
                mask[hole == 1] = 0
        box = (cx - r, cy - r, cx + r, cy + r)
    else:
        pts = _polygon(kind, cx, cy, r, angle)
        ipts = np.round(pts * scale).astype(np.int32)[None]
        cv2.fillPoly(img, ipts, colour, cv2.LINE_AA, shift)
        if mask is not None:
            cv2.fillPoly(mask, ipts, int(mask_value), cv2.LINE_8, shift)
        box = (pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max())
    h, w = img.shape[:2]
    return (max(0.0, box[0]), max(0.0, box[1]), min(float(w), box[2]), min(float(h), box[3]))


def _finish(img: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    if noise > 0:
        img = img + rng.normal(0, noise * rng.uniform(0.3, 1.0), img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def classification_images(
    n: int, size: int = 64, seed: int = 0, classes=SHAPES, noise: float = 8.0
) -> tuple[np.ndarray, np.ndarray]:
    """n images (uint8 [n, size, size, 3]) with one shape each, and its class index."""
    rng = np.random.default_rng(seed)
    images = np.empty((n, size, size, 3), np.uint8)
    labels = rng.integers(0, len(classes), n).astype(np.int64)
    for i in range(n):
        img = _background(rng, size)
        r = rng.uniform(0.18, 0.38) * size
        cx, cy = rng.uniform(r, size - r, 2) if r < size / 2 else (size / 2, size / 2)
        colour = _contrasting_colour(rng, img.mean((0, 1)))
        draw_shape(img, None, classes[labels[i]], cx, cy, r, rng.uniform(0, 2 * math.pi), colour)
        images[i] = _finish(img, rng, noise)
    return images, labels


@dataclass
class Scene:
    image: np.ndarray  # uint8 [H, W, 3]
    boxes: np.ndarray  # float32 [k, 4] x1, y1, x2, y2 in pixels
    classes: np.ndarray  # int64 [k]
    mask: np.ndarray  # uint8 [H, W]: 0 background, c + 1 for class c (top-most shape wins)


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def scene(
    rng: np.random.Generator,
    size: int = 128,
    max_objects: int = 6,
    classes=SHAPES,
    min_radius: float = 0.04,
    max_radius: float = 0.2,
    max_overlap: float = 0.3,
    noise: float = 6.0,
) -> Scene:
    """Several shapes: sizes from small to large, overlaps up to IoU `max_overlap`."""
    img = _background(rng, size)
    mask = np.zeros((size, size), np.uint8)
    boxes, labels = [], []
    want = rng.integers(1, max_objects + 1)
    for _ in range(want * 10):
        if len(boxes) == want:
            break
        r = rng.uniform(min_radius, max_radius) * size
        cx, cy = rng.uniform(r, size - r, 2)
        cand = (cx - r, cy - r, cx + r, cy + r)
        if any(_iou(cand, b) > max_overlap for b in boxes):
            continue
        cls = int(rng.integers(0, len(classes)))
        colour = _contrasting_colour(rng, img[int(cy), int(cx)])
        box = draw_shape(
            img, mask, classes[cls], cx, cy, r, rng.uniform(0, 2 * math.pi), colour, cls + 1
        )
        boxes.append(box)
        labels.append(cls)
    return Scene(
        _finish(img, rng, noise),
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(labels, np.int64),
        mask,
    )


def scenes(n: int, size: int = 128, seed: int = 0, **kwargs) -> list[Scene]:
    rng = np.random.default_rng(seed)
    return [scene(rng, size, **kwargs) for _ in range(n)]
