"""Tiny fake run directories and bad data files for the bad-input tests.

A fake run has what `read_run` reads (run.json, config.yaml of the app's smoke preset, an
info.json with the keys the apps' input checks use) and no weights: every wrong input must
be refused before a model is built, so no training is needed. A test that gets "has no
final weights" instead of its own error has found a check that comes too late.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from keras_suite.common import config as config_lib

# info.json of each fake run: only what predict_request and the verbs read before they
# load a model (class names, image size, observation shape).
FAKE_INFO = {
    "classification": {"class_names": ["circle", "square"], "image_size": 32},
    "detection": {"class_names": ["circle", "square"], "image_size": 64, "num_classes": 2},
    "dqn": {"obs_shape": [4], "obs_dtype": "float32", "is_atari": False, "num_actions": 2},
    "gan": {
        "class_names": ["a", "b"],
        "conditional": False,
        "image_size": 16,
        "latent_dim": 32,
        "num_classes": 2,
    },
    "segmentation": {"class_names": ["background", "shape"], "image_size": 32, "num_classes": 2},
    "textgen": {"vocab_size": 64},
    "translation": {"max_target_tokens": 20},
    "vae": {"image_size": 16, "channels": 1, "binarize": True},
}


def _png() -> bytes:
    """A small valid PNG (8x8 grey), as every image decoder reads it."""
    import io

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = _png()


def presets(app: str) -> dict:
    return importlib.import_module(f"keras_suite.apps.{app}.config").PRESETS


def make_fake_run(run_dir: Path, app: str) -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"app": app, "preset": "smoke"}))
    config_lib.save(presets(app)["smoke"](), run_dir / "config.yaml")
    (run_dir / "info.json").write_text(json.dumps(FAKE_INFO[app]))
    return run_dir


def make_bad_inputs(root: Path) -> dict[str, Path]:
    """Files and folders users pass by mistake: {name: path}."""
    root.mkdir(parents=True, exist_ok=True)
    made = {
        "missing": root / "no-such-thing" / "data.txt",
        "empty_dir": root / "empty-folder",
        "zero_png": root / "zero.png",
        "zero_txt": root / "zero.txt",
        "zero_tsv": root / "zero.tsv",
        "zero_yaml": root / "zero.yaml",
        "zero_npy": root / "zero.npy",
        "image": root / "picture.png",
        "image_as_txt": root / "picture-named.txt",
        "text": root / "notes.txt",
        "text_dir": root / "text-folder",
    }
    made["empty_dir"].mkdir()
    for key in ("zero_png", "zero_txt", "zero_tsv", "zero_yaml", "zero_npy"):
        made[key].write_bytes(b"")
    made["image"].write_bytes(PNG)
    made["image_as_txt"].write_bytes(PNG)
    made["text"].write_text("just some words, not an image\n")
    made["text_dir"].mkdir()
    (made["text_dir"] / "readme.txt").write_text("no images here\n")
    return made


def snapshot(*roots: Path) -> dict:
    """{path: (size, mtime_ns)} of every file, {path: None} of every folder under roots:
    equal before and after a refused command means it wrote nothing and left nothing
    behind (a folder it made and removed again changes only its parent's mtime)."""
    seen = {}
    for root in roots:
        if not root.exists():
            continue
        for path in [root, *root.rglob("*")]:
            if path.is_dir():
                seen[str(path)] = None
            else:
                stat = path.stat()
                seen[str(path)] = (stat.st_size, stat.st_mtime_ns)
    return seen
