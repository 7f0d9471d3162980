"""PNG plots a practitioner looks at: training curves and confusion matrices."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = 100) -> Path:
    """Lay out, write the PNG (creating its folder) and free the figure."""
    plt = _pyplot()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


CURVE_COLUMNS = 4


def plot_training_curves(records: list[dict], path: str | Path) -> Path | None:
    """One panel per metric logged at epoch end (train and val in the same panel), in rows
    of at most CURVE_COLUMNS panels."""
    epochs = [r for r in records if r.get("kind") == "epoch"]
    if not epochs:
        return None
    skip = {"kind", "epoch", "step", "time", "epoch_seconds", "examples_per_sec", "learning_rate"}
    names = sorted(
        {
            k.removeprefix("val_")
            for r in epochs
            for k, v in r.items()
            if k not in skip and isinstance(v, (int, float))
        }
    )
    if not names:
        return None
    plt = _pyplot()
    # a grid at most CURVE_COLUMNS wide: a GAN's eight losses in one row made a 3360 px strip
    cols = min(len(names), CURVE_COLUMNS)
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, names):
        for key, label in ((name, "train"), (f"val_{name}", "val")):
            pts = [(r["epoch"], r[key]) for r in epochs if isinstance(r.get(key), (int, float))]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=label)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    return save_figure(fig, path)


def plot_confusion_matrix(
    matrix: np.ndarray, class_names: list[str], path: str | Path, title: str = "Confusion matrix"
) -> Path:
    """Rows are true classes, columns predictions; cells show counts, colour is row-normalised."""
    plt = _pyplot()
    n = len(class_names)
    size = max(4.5, 0.55 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    rows = matrix.sum(1, keepdims=True)
    norm = np.divide(matrix, rows, out=np.zeros_like(matrix, dtype=float), where=rows > 0)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if matrix[i, j]:
                    ax.text(
                        j,
                        i,
                        str(int(matrix[i, j])),
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if norm[i, j] > 0.5 else "black",
                    )
        ax.set_xticks(range(n), class_names, rotation=45, ha="right")
        ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return save_figure(fig, path)


def image_grid(images, cols: int | None = None, gap: int = 2) -> np.ndarray:
    """[n, h, w, c] pixels in 0..255 (c = 1 or 3) -> one uint8 [H, W, 3] mosaic with `cols`
    columns (default: square) separated by white gaps."""
    images = np.clip(np.asarray(images, np.float32), 0, 255).astype(np.uint8)
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    n, h, w, _ = images.shape
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = max(1, -(-n // cols))
    out = np.full((rows * (h + gap) + gap, cols * (w + gap) + gap, 3), 255, np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        out[
            gap + r * (h + gap) : gap + r * (h + gap) + h,
            gap + c * (w + gap) : gap + c * (w + gap) + w,
        ] = img
    return out


def save_png(array: np.ndarray, path, scale: int = 1) -> Path:
    """Write an RGB uint8 array as PNG (enlarged `scale` times, nearest neighbour) through a
    temporary file and a rename."""
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
