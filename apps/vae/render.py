"""PNGs a person looks at: image grids, reconstructions beside inputs, latent traversals
and the 2-D manifold."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def tile(images: np.ndarray, cols: int, gap: int = 2) -> np.ndarray:
    """[n, h, w, c] 0..255 -> one uint8 [H, W, 3] mosaic with `cols` columns, white gaps."""
    images = np.clip(np.asarray(images, np.float32), 0, 255).astype(np.uint8)
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    n, h, w, _ = images.shape
    rows = max(1, -(-n // cols))
    out = np.full((rows * (h + gap) + gap, cols * (w + gap) + gap, 3), 255, np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        out[gap + r * (h + gap):gap + r * (h + gap) + h, gap + c * (w + gap):gap + c * (w + gap) + w] = img
    return out


def save_png(array: np.ndarray, path, scale: int = 1) -> Path:
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(array)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    tmp = path.with_name(path.name + ".tmp.png")
    img.save(tmp)
    tmp.replace(path)
    return path


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
        rows += [inputs[start:start + cols], recons[start:start + cols]]
    return save_png(tile(np.concatenate(rows), cols), path, _upscale(inputs.shape[1]))


def save_traversals(images: np.ndarray, dims: list[int], values: np.ndarray, path, title: str) -> Path:
    """images [len(dims) * len(values), h, w, c]: one row per latent dim, z_d swept over values."""
    from common.plots import _pyplot, save_figure

    plt = _pyplot()
    mosaic = tile(images, len(values))
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(values), 0.6 + 0.8 * len(dims)))
    ax.imshow(mosaic, interpolation="nearest")
    h = images.shape[1] + 2
    ax.set_yticks([2 + h * i + h / 2 - 1 for i in range(len(dims))], [f"z{d}" for d in dims])
    w = images.shape[2] + 2
    ax.set_xticks([2 + w * i + w / 2 - 1 for i in range(len(values))], [f"{v:+.1f}" for v in values])
    ax.tick_params(length=0, labelsize=8)
    ax.set_title(title, fontsize=10)
    return save_figure(fig, path, dpi=110)
