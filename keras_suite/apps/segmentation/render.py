"""Pictures of masks: a colour palette, overlays, the evaluation figures."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def palette(num_classes: int) -> np.ndarray:
    """uint8 [256, 3]: black background, distinct hues per class, grey for ignore."""
    colours = np.full((256, 3), 128, np.uint8)
    colours[0] = 0
    for c in range(1, min(num_classes, 255)):
        hue = int((c - 1) * 180 / max(1, num_classes - 1)) % 180
        colours[c] = cv2.cvtColor(np.uint8([[[hue, 230, 255]]]), cv2.COLOR_HSV2RGB)[0, 0]
    return colours


def colourise(mask: np.ndarray, num_classes: int) -> np.ndarray:
    return palette(num_classes)[np.clip(mask, 0, 255).astype(np.uint8)]


def overlay(
    image: np.ndarray, mask: np.ndarray, num_classes: int, alpha: float = 0.75
) -> np.ndarray:
    """The image with non-background classes tinted in their colour."""
    colour = colourise(mask, num_classes).astype(np.float32)
    tint = (mask > 0)[..., None]
    out = np.where(
        tint, (1 - alpha) * image.astype(np.float32) + alpha * colour, image.astype(np.float32)
    )
    return out.astype(np.uint8)


def side_by_side(image, mask, num_classes: int, upscale: int = 1) -> np.ndarray:
    """[image | colour mask | overlay], enlarged with nearest neighbour for small inputs."""
    row = np.concatenate(
        [image.astype(np.uint8), colourise(mask, num_classes), overlay(image, mask, num_classes)], 1
    )
    return (
        cv2.resize(row, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_NEAREST)
        if upscale > 1
        else row
    )


def save_png(image: np.ndarray, path: str | Path) -> str:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image)
    tmp.replace(path)
    return str(path)


def plot_examples(images, truths, preds, class_names, path, title: str = "") -> Path:
    """Rows of image / ground truth / prediction overlays, with a colour legend."""
    from keras_suite.common.plots import _pyplot, save_figure

    plt = _pyplot()
    n, k = len(images), len(class_names)
    colours = palette(k)
    fig, axes = plt.subplots(n, 3, figsize=(7.5, 2.5 * n + 0.6), squeeze=False)
    for i in range(n):
        for j, (picture, heading) in enumerate(
            (
                (images[i], "image"),
                (overlay(images[i], truths[i], k), "ground truth"),
                (overlay(images[i], preds[i], k), "prediction"),
            )
        ):
            axes[i, j].imshow(picture, interpolation="nearest")
            axes[i, j].axis("off")
            if i == 0:
                axes[i, j].set_title(heading)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[c] / 255.0) for c in range(1, k)]
    if handles:  # a legend of the non-background classes
        fig.legend(handles, class_names[1:], loc="lower center", ncol=min(5, k - 1), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    return save_figure(fig, path)


def plot_per_class_iou(per_class: dict, path, title: str) -> Path:
    from keras_suite.common.plots import _pyplot, save_figure

    plt = _pyplot()
    names = list(per_class)
    values = [per_class[n]["iou"] if per_class[n]["iou"] is not None else 0.0 for n in names]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.6 * len(names) + 2), 3.6))
    colours = palette(len(names))[: len(names)] / 255.0
    colours[0] = (0.6, 0.6, 0.6)
    ax.bar(range(len(names)), values, color=colours)
    for i, v in enumerate(values):
        ax.text(i, v + 0.01, f"{v:.2f}", ha="center", fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("IoU")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)
