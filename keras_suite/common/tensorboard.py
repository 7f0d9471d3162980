"""TensorBoard beyond scalars: the app's pictures and text samples after each epoch, the
run's config as hparams, a profile of chosen steps, and small drawing helpers for apps.

Everything lands in RUN_DIR/logs/tensorboard (`tensorboard --logdir RUN_DIR/logs`):
    train/         epoch scalars, and the pictures (`App.tensorboard_images`) and text
                   (`App.tensorboard_text`) of each epoch, at step = epoch
    train_steps/   scalars every train.log_every_steps steps
    (itself)       the run's config as hparams, written once when a run starts
    plugins/profile/  the profile asked for with --set train.profile_steps=START,STOP
"""

from __future__ import annotations

import numpy as np

from keras_suite import common
from keras_suite.common.config import to_dict
from keras_suite.common.runlog import log

tf = common.quiet_import_tensorflow()


# ---- what the loop writes ---------------------------------------------------------------
def flat_hparams(cfg) -> dict:
    """The config as {"train.learning_rate": 0.001, ...}: numbers, strings and booleans as
    they are, lists as their text (the hparams plugin takes nothing else)."""
    flat: dict = {}

    def walk(node, prefix):
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(value, name + ".")
            elif isinstance(value, (bool, int, float, str)):
                flat[name] = value
            else:
                flat[name] = str(value)

    walk(to_dict(cfg), "")
    return flat


def write_hparams(writer, cfg, trial_id: str) -> None:
    """The run's config in the HParams dashboard; its metrics are the scalars of the runs
    below (train/, train_steps/)."""
    from tensorboard.plugins.hparams import api as hp

    with writer.as_default():
        hp.hparams(flat_hparams(cfg), trial_id=trial_id)
    writer.flush()


def _check_images(tag: str, images) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"tensorboard_images()[{tag!r}] must be uint8 [N, H, W, 3], got "
            f"{images.dtype} {list(images.shape)}"
        )
    return images


def write_epoch_summaries(app, *, state, data, cfg, writer, epoch: int) -> list[str]:
    """Ask the app for its pictures and text samples and write them at step `epoch`;
    returns the tags written."""
    images = app.tensorboard_images(state=state, data=data, cfg=cfg) or {}
    texts = app.tensorboard_text(state=state, data=data, cfg=cfg) or {}
    with writer.as_default(step=epoch):
        for tag, array in images.items():
            batch = _check_images(tag, array)
            tf.summary.image(tag, batch, max_outputs=len(batch))
        for tag, text in texts.items():
            tf.summary.text(tag, tf.constant(text if isinstance(text, str) else list(text)))
    writer.flush()
    return [*images, *texts]


class StepProfiler:
    """A TensorBoard profile of global steps START..STOP (--set train.profile_steps=START,STOP):
    it starts once START steps are done and stops once STOP are, so it covers the STOP-START
    steps in between. `update(steps_done)` is called before the first step and after each."""

    def __init__(self, steps, logdir, enabled: bool = True):
        steps = tuple(steps or ())
        self.start, self.stop = steps if (enabled and steps) else (None, None)
        self.logdir = str(logdir) if logdir is not None else None
        self.running = False
        self.done = False

    def update(self, steps_done: int) -> None:
        if self.start is None or self.done:
            return
        if not self.running and self.start <= steps_done < self.stop:
            tf.profiler.experimental.start(self.logdir)
            self.running = True
            log.info("profiling steps %d to %d into %s", steps_done, self.stop, self.logdir)
        elif self.running and steps_done >= self.stop:
            self.close()

    def close(self) -> None:
        if self.running:
            tf.profiler.experimental.stop()
            self.running = False
            self.done = True
            log.info("profile written: open the Profile tab of TensorBoard")


# ---- drawing helpers for the apps' tensorboard_images ----------------------------------
def to_rgb(images) -> np.ndarray:
    """Pixels in 0..255 (any float or int type, 1 or 3 channels) -> uint8 RGB."""
    images = np.clip(np.round(np.asarray(images, np.float32)), 0, 255).astype(np.uint8)
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    return images


def enlarge(image: np.ndarray, min_size: int = 128) -> np.ndarray:
    """Nearest-neighbour enlargement so the short side is at least `min_size` pixels:
    32-pixel images are otherwise hard to see in the dashboard."""
    factor = max(1, -(-min_size // min(image.shape[:2])))
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1) if factor > 1 else image


def captioned(image: np.ndarray, caption: str, colour=(255, 255, 255)) -> np.ndarray:
    """The image (enlarged) above a black strip with `caption` written in `colour`."""
    import cv2

    image = enlarge(to_rgb(image))
    strip = np.zeros((18, image.shape[1], 3), np.uint8)
    cv2.putText(strip, caption, (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)
    return np.concatenate([image, strip], 0)


def heatmap(matrix, cell: int = 12) -> np.ndarray:
    """A 2-D array of weights in 0..1 as a uint8 RGB picture (viridis), `cell` pixels a cell."""
    from matplotlib import colormaps

    matrix = np.clip(np.asarray(matrix, np.float32), 0.0, 1.0)
    rgb = (colormaps["viridis"](matrix)[..., :3] * 255).astype(np.uint8)
    return np.repeat(np.repeat(rgb, cell, axis=0), cell, axis=1)


def same_size(images: list) -> np.ndarray:
    """Pad pictures of different sizes with black to the largest: one [N, H, W, 3] batch."""
    h = max(i.shape[0] for i in images)
    w = max(i.shape[1] for i in images)
    out = np.zeros((len(images), h, w, 3), np.uint8)
    for n, image in enumerate(images):
        out[n, : image.shape[0], : image.shape[1]] = image
    return out
