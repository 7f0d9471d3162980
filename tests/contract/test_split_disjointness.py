"""Suite-wide evaluation protocol (docs/design.md): for every app, on its smoke/built-in
data at tiny sizes, the train, validation and test splits share no example, and the int8
calibration set shares none with the test split the parity report scores.

Examples are compared by a content hash of what the model is given: pixels for the image
apps, (source, target) sentence pairs for translation, documents and long lines for
textgen, environment seeds for DQN. Each app's splits come from its own `datasets()`
(`train_epoch`, `val`/`test`, `extras`) and the calibration set from its own
`tflite_targets(...)` representative data: nothing here re-implements a loader.

Calibration is drawn from validation or training data by design, so it is checked
against the test split only (and, for DQN, the evaluation seeds).
"""

from __future__ import annotations

import numpy as np
import pytest

from keras_suite import common
from keras_suite.common import config
from keras_suite.common.app import Artifacts
from keras_suite.common.duplicates import content_hash
from keras_suite.common.registry import get_app

tf = common.quiet_import_tensorflow()

# Tiny versions of each app's smoke preset. Batch size 1 where the training split is read
# through `train_epoch` (drop_remainder=True would hide the last examples).
TINY = {
    "classification": [
        "data.num_train=48",
        "data.num_val=16",
        "data.num_test=16",
        "data.augment=false",
        "train.batch_size=1",
    ],
    "vae": ["data.num_train=96", "data.num_val=32", "data.num_test=32", "train.batch_size=1"],
    "detection": ["data.train_images=16", "data.val_images=8", "data.test_images=8"],
    "gan": [
        "data.num_train=64",
        "data.num_test=32",
        "metrics.classifier_images=64",
        "train.batch_size=16",
    ],
    "segmentation": [
        "data.num_train=32",
        "data.num_val=8",
        "data.num_test=8",
        "train.batch_size=8",
    ],
    "translation": [],
    "textgen": [],
}


def _data(name, tmp_path):
    app = get_app(name)
    cfg = config.resolve(app.presets, "smoke", overrides=TINY[name])
    artifacts = Artifacts(tmp_path / "artifacts")
    data = app.datasets(cfg=cfg, artifacts=artifacts)
    data.artifacts = artifacts
    return app, cfg, data


def _calibration(app, cfg, data, tmp_path) -> list[dict]:
    """Every feed of every TFLite target's representative data (an untrained model)."""
    state = app.build_state(cfg=cfg, info=data.info)
    feeds = []
    for target in app.tflite_targets(state=state, data=data, cfg=cfg, workdir=str(tmp_path)):
        if target.representative_data is not None:
            feeds += [(target.name, feed) for feed in target.representative_data()]
    assert feeds, "no int8 calibration data"
    return feeds


def _hashes(examples) -> set:
    return {content_hash(np.asarray(x, np.float32)) for x in examples}


def _unbatched(dataset) -> list:
    """Image arrays of an (image, label) or image dataset, one per example."""
    out = []
    for batch in dataset:
        images = batch[0] if isinstance(batch, tuple) else batch
        out += list(images.numpy())
    return out


# ---- what each app's examples are --------------------------------------------------------
def _images_from_pipelines(data, cfg, feeds):
    """classification and vae: train_epoch(0) at batch 1 (every example once, unshuffled
    content), the val/test pipelines, and the calibration images."""
    splits = {"train": _unbatched(data.train_epoch(0)), "test": _unbatched(data.test)}
    if data.val is not None:
        splits["val"] = _unbatched(data.val)
    assert len(splits["train"]) == data.info["split_sizes"]["train"]
    calibration = [feed["images"][0] for _, feed in feeds if "images" in feed]
    return {s: _hashes(x) for s, x in splits.items()}, _hashes(calibration)


def _detection(data, cfg, feeds):
    splits = {name: _hashes(split.images) for name, split in data.extras["splits"].items()}
    return splits, _hashes(feed["images"][0] for _, feed in feeds)


def _segmentation(data, cfg, feeds):
    splits = {name: _hashes(split.images) for name, split in data.extras["splits"].items()}
    return splits, _hashes(feed["images"][0] for _, feed in feeds if "images" in feed)


def _gan(data, cfg, feeds):
    """Real images per split; calibration latents against the latents of the seeds the
    parity report and the evaluation draw (0..N-1)."""
    from keras_suite.apps.gan.sampling import latents_from_seeds

    splits = {
        "train": _hashes(data.extras["train_images"]),
        "test": _hashes(data.extras["test_images"]),
    }
    n = max(cfg.metrics.num_samples, len(data.extras["test_images"]))
    scored = latents_from_seeds(tf.constant(np.arange(n)), data.info["latent_dim"]).numpy()
    calibration = _hashes(feed["z"][0] for _, feed in feeds)
    # the latents are the "examples" the generator is scored on: stand in for test here
    return {**splits, "test latents": _hashes(scored)}, calibration


def _translation(data, cfg, feeds):
    """Sentence pairs per split; calibration source-id rows against the test's."""
    splits = {
        s: {content_hash("\t".join(pair)) for pair in data.extras[s]}
        for s in ("train", "val", "test")
    }
    test_ids = data.extras["arrays"]["test"][0]
    splits["test sources (ids)"] = {content_hash(np.asarray(row, np.int64)) for row in test_ids}
    calibration = set()
    for _, feed in feeds:
        for value in feed.values():
            if np.asarray(value).dtype.kind in "iu" and np.asarray(value).ndim == 2:
                calibration |= {content_hash(np.asarray(row, np.int64)) for row in value}
    return splits, calibration


def _textgen(data, cfg, feeds):
    """Documents and every line of 30+ characters (whitespace normalised) per split; the
    calibration tokens must be a stretch of the training stream, not of the test stream."""

    def lines(texts):
        return {
            content_hash(" ".join(line.split()))
            for text in texts
            for line in text.splitlines()
            if len(" ".join(line.split())) >= 30
        }

    splits = {}
    for s in ("train", "val", "test"):
        texts = data.extras[f"{s}_texts"]
        splits[s] = {content_hash(t) for t in texts}
        splits[f"{s} lines"] = lines(texts)
    tokens = np.asarray([int(np.asarray(feed["token"]).reshape(-1)[0]) for _, feed in feeds])
    train, test = (np.asarray(data.extras[f"{s}_stream"]) for s in ("train", "test"))
    assert _contains(train, tokens), "calibration tokens are not a stretch of the training stream"
    # the calibration "example" is its token sequence; the test stream holds it or not
    calibration = {content_hash(tokens)}
    test_stream = calibration if _contains(test, tokens) else set()
    return {**splits, "test stream": test_stream}, calibration


def _contains(stream: np.ndarray, part: np.ndarray) -> bool:
    if len(part) > len(stream):
        return False
    windows = np.lib.stride_tricks.sliding_window_view(stream, len(part))
    return bool((windows == part).all(1).any())


EXAMPLES = {
    "classification": _images_from_pipelines,
    "vae": _images_from_pipelines,
    "detection": _detection,
    "gan": _gan,
    "segmentation": _segmentation,
    "translation": _translation,
    "textgen": _textgen,
}

# which split groups must be pairwise disjoint, and which the calibration set must avoid
GROUPS = {
    "gan": (("train", "test"), ("test latents",)),
    "translation": (("train", "val", "test"), ("test sources (ids)",)),
    "textgen": (
        ("train", "val", "test"),
        ("test stream",),
        ("train lines", "val lines", "test lines"),
    ),
}


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_splits_and_calibration_are_disjoint(name, tmp_path):
    app, cfg, data = _data(name, tmp_path)
    splits, calibration = EXAMPLES[name](data, cfg, _calibration(app, cfg, data, tmp_path))
    assert calibration, f"{name}: no calibration examples recognised"
    groups = GROUPS.get(name, (("train", "val", "test"), ("test",)))
    for group in [g for g in groups if len(g) > 1]:
        present = [s for s in group if s in splits]
        for i, a in enumerate(present):
            for b in present[i + 1 :]:
                shared = splits[a] & splits[b]
                assert not shared, f"{name}: {len(shared)} examples in both {a} and {b}"
    scored = groups[1] if len(groups) > 1 else ("test",)
    for split in scored:
        assert not calibration & splits[split], f"{name}: int8 calibration uses {split} examples"
    # metrics.json says which split it scores and that the rule was applied
    evaluation = data.info["evaluation_split"]
    assert evaluation["split"] == "test" and "not checked" not in evaluation["duplicate_rule"]


# ---- DQN: environments, not stored examples ------------------------------------------------
def test_dqn_evaluation_seeds_are_not_training_or_calibration_seeds(tmp_path, monkeypatch):
    """Every environment reset with a seed is recorded (gymnasium.make is wrapped) while a
    tiny run trains, while it is evaluated and while its int8 calibration observations are
    collected: the evaluation episodes' seeds are none of the others."""
    import gymnasium

    from keras_suite.common.run import evaluate_run, load_run, train_run

    phase = {"now": "train"}
    seeds: dict[str, set] = {"train": set(), "evaluate": set(), "calibration": set()}
    make = gymnasium.make

    class Recorder(gymnasium.Wrapper):
        def reset(self, *, seed=None, options=None):
            if seed is not None:
                seeds[phase["now"]].add(int(seed))
            return self.env.reset(seed=seed, options=options)

    monkeypatch.setattr(gymnasium, "make", lambda *a, **k: Recorder(make(*a, **k)))
    run_dir = tmp_path / "dqn"
    train_run("dqn", "smoke", run_dir=run_dir, strategy_name="default", evaluate=False)
    phase["now"] = "evaluate"
    evaluate_run(run_dir)
    phase["now"] = "calibration"
    run = load_run(run_dir)
    data = run.datasets()
    for target in run.app.tflite_targets(
        state=run.state, data=data, cfg=run.cfg, workdir=str(tmp_path)
    ):
        list(target.representative_data())
    assert seeds["train"] and seeds["evaluate"] and seeds["calibration"], seeds
    assert not seeds["evaluate"] & seeds["train"], seeds
    assert not seeds["evaluate"] & seeds["calibration"], seeds
    assert data.info["evaluation_split"]["split"] == "evaluation episodes"
