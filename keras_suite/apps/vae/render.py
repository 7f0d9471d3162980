"""PNGs a person looks at: image grids, reconstructions beside inputs, latent traversals
and the 2-D manifold."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_suite.common.plots import image_grid, save_png  # noqa: F401  (save_png: used by the app too)


def tile(images: np.ndarray, cols: int, gap: int = 2) -> np.ndarray:
    return image_grid(images, cols, gap)


def _upscale(image_size: int) -> int:
    return max(1, 64 // image_size)  # small images are enlarged so a viewer can see them


def save_grid(images: np.ndarray, path, cols: int | None = None) -> Path:
    cols = cols or int(np.ceil(np.sqrt(len(images))))
    return save_png(tile(images, cols), path, _upscale(images.shape[1]))


def save_reconstructions(inputs: np.ndarray, recons: np.ndarray, path, cols: int = 8) -> Path:
    """Pairs of rows: inputs, then their reconstructions underneath."""
    n = (len(inputs) // cols) * cols or len(inputs)
    cols = min(cols, n)
    rows = []
    for start in range(0, n, cols):
        rows += [inputs[start : start + cols], recons[start : start + cols]]
    return save_png(tile(np.concatenate(rows), cols), path, _upscale(inputs.shape[1]))


def save_traversals(
    images: np.ndarray, dims: list[int], values: np.ndarray, path, title: str
) -> Path:
    """images [len(dims) * len(values), h, w, c]: one row per latent dim, z_d swept over values."""
    from keras_suite.common.plots import _pyplot, save_figure

    plt = _pyplot()
    mosaic = tile(images, len(values))
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(values), 0.6 + 0.8 * len(dims)))
    ax.imshow(mosaic, interpolation="nearest")
    h = images.shape[1] + 2
    ax.set_yticks([2 + h * i + h / 2 - 1 for i in range(len(dims))], [f"z{d}" for d in dims])
    w = images.shape[2] + 2
    ax.set_xticks(
        [2 + w * i + w / 2 - 1 for i in range(len(values))], [f"{v:+.1f}" for v in values]
    )
    ax.tick_params(length=0, labelsize=8)
    ax.set_title(title, fontsize=10)
    return save_figure(fig, path, dpi=110)
