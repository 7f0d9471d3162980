"""Seeds -> latents -> images: one definition for training grids, evaluation, `ksuite
sample`, the serving signature and the TFLite parity check, so a seed means the same
image everywhere."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from keras_suite import common
from keras_suite.common import cache
from keras_suite.common.plots import image_grid, save_png  # noqa: F401  (save_png: the app writes its grids with it)

tf = common.quiet_import_tensorflow()


def latents_from_seeds(seeds, dim: int):
    """int64 seeds [N] -> z [N, dim]: each row a stateless normal draw from its own seed
    (in graph: it is part of the serving signature)."""
    seeds = tf.cast(seeds, tf.int64)
    return tf.map_fn(
        lambda s: tf.random.stateless_normal([dim], seed=tf.stack([s, tf.constant(0, tf.int64)])),
        seeds,
        fn_output_signature=tf.TensorSpec([dim], tf.float32),
    )


def to_uint8(images):
    """Generator output in [-1, 1] -> uint8 0..255."""
    return tf.cast(tf.round(tf.clip_by_value((images + 1.0) * 127.5, 0.0, 255.0)), tf.uint8)


def to_pixels(images):
    """Generator output in [-1, 1] -> float32 0..255 (the TFLite target's output).

    Clip first, in the generator's own range, then shift and scale: the same values as
    clip((x + 1) * 127.5, 0, 255), but that order breaks full-int8 conversion. The
    quantizer gives the input of the x127.5 MUL the scale of the clip that follows
    (0..255, one level per pixel), so x + 1 in [0, 2] keeps three levels: pixels 0, 127
    and 255 (measured: mean error 34/255, FID 25 -> 85). Here clip(-1, 1) fuses into the
    op before it and every tensor keeps its own range (docs/design.md §8)."""
    return (tf.clip_by_value(images, -1.0, 1.0) + 1.0) * 127.5


def generate(generator, seeds, truncation=1.0, class_ids=None, batch_size=256) -> np.ndarray:
    """uint8 images [N, S, S, 3] for integer seeds, with the fixed noise buffers."""
    seeds = np.asarray(seeds, np.int64)
    fn = _generate_fn(generator)
    out = []
    for i in range(0, len(seeds), batch_size):
        s = seeds[i : i + batch_size]
        psi = np.full(len(s), truncation, np.float32)
        c = None if class_ids is None else np.asarray(class_ids, np.int64)[i : i + batch_size]
        out.append(
            fn(tf.constant(s), tf.constant(psi), None if c is None else tf.constant(c)).numpy()
        )
    return np.concatenate(out) if out else np.zeros((0,), np.uint8)


def _generate_fn(generator):
    """One traced sampler per generator, kept while that generator is the one in use
    (common/cache.py), so repeated sampling does not retrace."""
    return cache.last_value("gan.generate", generator, lambda: _trace_generate(generator))


def _trace_generate(generator):
    dim = generator.latent_dim

    @tf.function(reduce_retracing=True)
    def fn(seeds, psi, class_ids):
        return to_uint8(generator(latents_from_seeds(seeds, dim), class_ids, psi, training=False))

    return fn


def slerp(a, b, t):
    a_n, b_n = a / np.linalg.norm(a), b / np.linalg.norm(b)
    omega = np.arccos(np.clip((a_n * b_n).sum(), -1.0, 1.0))
    if omega < 1e-6:
        return (1 - t) * a + t * b
    return (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)


def interpolate(generator, seed_a: int, seed_b: int, steps: int = 8, class_id=None) -> np.ndarray:
    """Images along the great circle between two seeds' latents (slerp: z ~ N(0, I) has
    almost all its mass near a sphere, a straight line would pass through unlikely z)."""
    dim = generator.latent_dim
    z = latents_from_seeds(tf.constant([seed_a, seed_b], tf.int64), dim).numpy()
    zs = np.stack([slerp(z[0], z[1], t) for t in np.linspace(0, 1, steps)]).astype(np.float32)
    c = None if class_id is None else tf.constant(np.full(steps, class_id, np.int64))
    return to_uint8(generator(tf.constant(zs), c, tf.ones([steps]), training=False)).numpy()


def grid(images: np.ndarray, cols: int | None = None, pad: int = 2) -> np.ndarray:
    return image_grid(images, cols, pad)


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def save_gif(frames: list, path, duration_ms: int = 400) -> Path | None:
    """Training-progress GIF from per-epoch grid PNGs."""
    from PIL import Image

    if not frames:
        return None
    images = [Image.open(f).convert("RGB") for f in frames]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
    return path
