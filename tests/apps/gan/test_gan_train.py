"""GAN training, resume, sampling, serving and data: one smoke run shared by the tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest

from keras_suite import common
from keras_suite.apps.gan import sampling
from keras_suite.apps.gan.app import GanApp
from keras_suite.apps.gan.config import PRESETS
from keras_suite.common.app import StepContext
from keras_suite.common.config import merge, parse_override, validate
from tests.helpers import ksuite_cmd, subprocess_env

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    from keras_suite.common.run import train_run

    run_dir = tmp_path_factory.mktemp("gan") / "smoke"
    metrics = train_run("gan", "smoke", run_dir=run_dir, strategy_name="default")
    return run_dir, metrics


def test_smoke_run_writes_named_metrics_grids_and_gif(smoke_run):
    run_dir, metrics = smoke_run
    tag = "shapes_classifier"
    for key in (
        f"fid_{tag}",
        f"kid_{tag}",
        "precision",
        "recall",
        "coverage",
        f"fid_{tag}_real_heldout",
        f"fid_{tag}_untrained",
    ):
        assert np.isfinite(metrics[key]), key
    assert metrics["feature_network"]["report_name"] == "FID (shapes-classifier features)"
    assert metrics["generator"] == "generator_ema"
    assert sorted(p.name for p in (run_dir / "samples").glob("epoch_*.png")) == [
        "epoch_001.png",
        "epoch_002.png",
    ]
    for name in (
        "samples.png",
        "interpolation.png",
        "training_progress.gif",
        "truncation_1.0_0.7_0.4_0.0.png",
    ):
        assert (run_dir / "plots" / name).stat().st_size > 0, name
    steps = [
        json.loads(line) for line in (run_dir / "logs" / "metrics.jsonl").read_text().splitlines()
    ]
    logged = set().union(*[r.keys() for r in steps if r.get("kind") == "step"])
    assert {"d_loss", "g_loss", "d_grad_norm", "g_grad_norm"} <= logged


def _state_values(state):
    values = {}
    for name, model in state.models.items():
        values.update(
            {
                f"{name}/{i}/{v.path.split('/', 1)[-1]}": keras.ops.convert_to_numpy(v)
                for i, v in enumerate(model.weights)
            }
        )
    for (
        name,
        opt,
    ) in state.optimizers.items():  # by position: optimizer names are numbered per process
        values.update(
            {f"opt_{name}/{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(opt.variables)}
        )
    return values


def test_checkpoint_restores_both_networks_both_optimizers_and_the_ema(tmp_path):
    from keras_suite.common.run import build_datasets
    from keras_suite.common.training import TrainContext, Trainer

    app = GanApp()
    cfg = merge(PRESETS["smoke"](), {"train": {"epochs": 1, "steps_per_epoch": 3}})
    data = build_datasets(app, cfg, tmp_path)
    trained = app.build_state(cfg=cfg, info=data.info)
    trained.build_optimizers()
    ctx = TrainContext(
        app=app,
        cfg=cfg,
        run_dir=tmp_path,
        strategy=tf.distribute.get_strategy(),
        data=data,
        state=trained,
    )
    app.train(ctx)
    after = _state_values(trained)
    kernel = {
        m: next(v for k, v in after.items() if k.startswith(m + "/") and k.endswith("/kernel"))
        for m in ("generator", "generator_ema")
    }
    assert not np.allclose(kernel["generator"], kernel["generator_ema"])  # the EMA is its own state
    keras.utils.set_random_seed(123)  # a fresh state with other initial weights
    fresh = app.build_state(cfg=cfg, info=data.info)
    fresh.build_optimizers()
    before = _state_values(fresh)
    ctx2 = TrainContext(
        app=app,
        cfg=cfg,
        run_dir=tmp_path,
        strategy=tf.distribute.get_strategy(),
        data=data,
        state=fresh,
    )
    assert Trainer(app, ctx2).restore()
    restored = _state_values(fresh)
    assert len(restored) == len(after) and any(k.startswith("opt_discriminator") for k in restored)
    changed = [k for k in after if not np.array_equal(before[k], after[k])]
    assert len(changed) > len(after) // 2
    for key, value in after.items():
        np.testing.assert_array_equal(restored[key], value, err_msg=key)


@pytest.mark.parametrize(
    "preset,overrides",
    [
        ("stylegan-smoke", []),
        (
            "smoke",
            [
                "model.loss=wgan-gp",
                "model.d_norm=layer",
                "stability.critic_steps=2",
                "model.conditional=true",
            ],
        ),
        ("smoke", ["model.loss=hinge", "stability.augment=color,translation,cutout"]),
        ("smoke", ["model.minibatch_stddev=4", "stability.instance_noise=0.1"]),
        (
            "stylegan-smoke",
            [
                "model.conditional=true",
                "stability.r1_every=1",
                "stability.augment=translation,cutout",
            ],
        ),
    ],
)
def test_train_step_variants(preset, overrides):
    """Each architecture/loss/conditioning trains a few steps with finite, logged values."""
    app = GanApp()
    cfg = PRESETS[preset]()
    for o in overrides:
        cfg = merge(cfg, parse_override(o))
    info = {
        "image_size": cfg.data.image_size,
        "num_classes": 8,
        "conditional": cfg.model.conditional,
        "num_train": 512,
    }
    state = app.build_state(cfg=cfg, info=info)
    state.build_optimizers()
    b, s = cfg.train.batch_size, cfg.data.image_size
    batch = (tf.random.uniform([b, s, s, 3], 0, 255, seed=1), tf.range(b, dtype=tf.int64) % 8)
    step_fn = tf.function(lambda step: app.train_step(state, batch, StepContext(cfg, b, step)))
    g = state.models["generator"]
    w_avg0 = np.array(g.w_avg) if hasattr(g, "w_avg") else None
    for i in range(3):
        out = {k: float(v) for k, v in step_fn(tf.constant(i, tf.int64)).items()}
        assert all(np.isfinite(v) for v in out.values()), out
    assert {"d_loss", "g_loss", "d_grad_norm", "g_grad_norm"} <= set(out)
    if cfg.model.loss == "wgan-gp":
        assert out["gradient_penalty"] > 0
        assert int(state.optimizers["discriminator"].iterations) == 6  # 2 critic steps per G step
        assert int(state.optimizers["generator"].iterations) == 3
    if cfg.stability.r1_gamma > 0:
        assert "r1" in out
    if w_avg0 is not None:
        assert not np.allclose(np.array(g.w_avg), w_avg0)  # truncation centre tracked
        assert np.allclose(np.array(state.models["generator_ema"].w_avg), np.array(g.w_avg))


def test_minibatch_stddev_sees_a_collapsed_group_and_keeps_replica_slices_whole():
    from keras_suite.apps.gan.model import MinibatchStddev

    x = np.random.RandomState(0).randn(8, 4, 4, 3).astype("float32")
    x[:4] = x[0]  # the first group of 4 is one image repeated: a collapsed generator
    y = MinibatchStddev(4)(x).numpy()
    assert y.shape == (8, 4, 4, 4)
    np.testing.assert_array_equal(y[..., :3], x)
    np.testing.assert_allclose(y[:4, ..., 3], 1e-4, rtol=1e-3)  # sqrt(0 + 1e-8)
    np.testing.assert_allclose(y[4:, ..., 3], np.sqrt(x[4:].var(0) + 1e-8).mean(), rtol=1e-5)
    # contiguous groups: a replica's half of the batch gets the features the whole batch gives it
    np.testing.assert_allclose(MinibatchStddev(4)(x[4:]).numpy(), y[4:], rtol=1e-6)
    # a batch the group size does not divide is one group
    np.testing.assert_allclose(
        MinibatchStddev(4)(x[:6]).numpy()[..., 3], np.sqrt(x[:6].var(0) + 1e-8).mean(), rtol=1e-5
    )


def test_diff_augment_is_per_example_seeded_and_keeps_the_range_of_shifted_pixels():
    """DiffAugment must not mix examples (R1/WGAN-GP stay per-example exact), must repeat
    with the seed (resume) and must really move/mask pixels."""
    from keras_suite.apps.gan.augment import diff_augment

    x = tf.random.stateless_uniform([6, 16, 16, 3], [1, 2], -1.0, 1.0)
    seed = tf.constant([300, 5], tf.int64)
    policy = "color,translation,cutout"
    y = diff_augment(x, policy, seed).numpy()
    np.testing.assert_array_equal(diff_augment(x, policy, seed).numpy(), y)
    assert not np.allclose(diff_augment(x, policy, seed + 1).numpy(), y)
    changed = diff_augment(tf.concat([x[:1] * 0.5, x[1:]], 0), policy, seed).numpy()
    np.testing.assert_array_equal(changed[1:], y[1:])  # example 0 alone changed
    assert not np.allclose(changed[0], y[0])
    moved = diff_augment(x, "translation,cutout", seed).numpy()
    assert (moved == 0).mean() > 0.15  # cutout (1/4 of the area) plus shifted-in borders
    kept = moved[moved != 0]
    assert np.isin(kept, x.numpy()).all()  # translation/cutout only move or blank pixels
    with pytest.raises(Exception, match="unknown"):
        validate(merge(PRESETS["smoke"](), parse_override("stability.augment=colour")))


def test_serving_signature_matches_sample_and_returns_png(smoke_run, tmp_path):
    from keras_suite.common.run import load_run

    run = load_run(smoke_run[0])
    archive = run.app.export_archive(
        state=run.state, info=run.info, cfg=run.cfg, artifacts=run.artifacts
    )
    archive.write_out(str(tmp_path / "sm"), verbose=False)
    fn = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"]
    out = fn(seeds=tf.constant([5, 6, 5], tf.int64), truncation=tf.constant([1.0, 1.0, 1.0]))
    images = out["images"].numpy()
    assert images.dtype == np.uint8 and images.shape == (3, 16, 16, 3)
    np.testing.assert_array_equal(images[0], images[2])  # a seed is one image
    assert not np.array_equal(images[0], images[1])
    want = sampling.generate(run.state.models["generator_ema"], [5, 6], 1.0)
    assert np.abs(images[:2].astype(int) - want.astype(int)).max() <= 1
    decoded = tf.io.decode_png(out["png"].numpy()[1]).numpy()
    np.testing.assert_array_equal(decoded, images[1])
    truncated = fn(seeds=tf.constant([5], tf.int64), truncation=tf.constant([0.0]))[
        "images"
    ].numpy()
    zero = fn(seeds=tf.constant([9], tf.int64), truncation=tf.constant([0.0]))["images"].numpy()
    np.testing.assert_array_equal(truncated, zero)  # psi 0: every seed gives the mean image


def test_int8_tflite_generator_keeps_the_pixels_of_float(smoke_run, tmp_path):
    """Full-int8 conversion of the generator target against float32 on the same latents.
    The old post-processing clip((x+1)*127.5, 0, 255) left x+1 with the clip's 0..255
    scale: three pixel levels, mean error ~30/255 on trained runs. Quantisation noise of a
    tanh output (1/128 steps) plus int8 convs is a few pixel values."""
    from keras_suite.common.run import load_run
    from keras_suite.tflite.convert import convert
    from keras_suite.tflite.runtime import LiteRTSignature

    run = load_run(smoke_run[0])
    data = run.datasets()
    target = run.app.tflite_targets(state=run.state, data=data, cfg=run.cfg, workdir=str(tmp_path))[
        0
    ]
    runners = {
        mode: LiteRTSignature(
            convert(
                target.saved_model_dir,
                target.signature,
                mode,
                "float32",
                target.representative_data,
            ).model,
            target.signature,
            1,
        )
        for mode in ("float32", "int8")
    }
    zs = sampling.latents_from_seeds(tf.constant(np.arange(32)), run.info["latent_dim"]).numpy()
    out = {
        mode: np.stack(
            [r({"z": z[None], "truncation": np.ones([1], np.float32)})["images"][0] for z in zs]
        )
        for mode, r in runners.items()
    }
    keras_pixels = sampling.generate(run.state.models["generator_ema"], np.arange(32)).astype(
        np.float32
    )
    assert np.abs(out["float32"] - keras_pixels).max() <= 1.0
    diff = np.abs(out["int8"] - out["float32"])
    assert diff.mean() < 4.0, diff.mean()
    # the int8 output must resolve fine steps, not a handful of levels
    assert len(np.unique(np.round(out["int8"]))) > 50


def test_parity_fid_is_named_by_its_sample_count(smoke_run, tmp_path):
    """The TFLite parity FID uses at most 500 samples; metrics.json's FID uses
    metrics.num_samples. Different sample counts give differently biased FIDs, so the
    parity key names its count and never collides with the metrics.json key."""
    from keras_suite.common.run import load_run

    run = load_run(smoke_run[0])
    data = run.datasets()
    target = run.app.tflite_targets(state=run.state, data=data, cfg=run.cfg, workdir=str(tmp_path))[
        0
    ]
    reference = tf.saved_model.load(target.saved_model_dir).signatures[target.signature]

    def keras_signature(feeds):
        return {
            k: v.numpy()
            for k, v in reference(**{n: tf.constant(a) for n, a in feeds.items()}).items()
        }

    out = run.app.tflite_evaluate(
        run_signature=keras_signature, data=data, cfg=run.cfg, info=run.info, target=target
    )
    n = min(run.cfg.metrics.num_samples, run.info["num_test"], 500)
    tag = "shapes_classifier"
    assert set(out) == {f"fid_{n}_{tag}", f"fid_{n}_vs_keras_{tag}", "max_pixel_diff_vs_keras"}
    metrics = json.loads((smoke_run[0] / "metrics.json").read_text())
    assert not set(out) & set(metrics)
    assert out[f"fid_{n}_vs_keras_{tag}"] < 1e-3  # the SavedModel draws the Keras samples
    assert "seeds 1000000-1000199" in target.calibration_split
    assert f"seeds 0-{n - 1}" in target.evaluation_split


def test_sample_command_writes_a_grid(smoke_run):
    from keras_suite.cli import main

    run_dir = smoke_run[0]
    out = run_dir / "grid.png"
    assert (
        main(
            [
                "sample",
                str(run_dir),
                "--n",
                "8",
                "--seed",
                "3",
                "--truncation",
                "0.7",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    from PIL import Image

    with Image.open(out) as img:
        assert img.size[0] > 16 * 2 and img.size[1] > 16 * 2


def test_folder_data_with_and_without_classes_skips_unreadable(tmp_path):
    from keras_suite.apps.gan.data import decode_crop, scan_images
    from keras_suite.apps.gan.sampling import png_bytes

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "classes" / cls).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "classes" / cls / f"{i}.png").write_bytes(
                png_bytes(rng.integers(0, 255, (20, 30, 3), np.uint8))
            )
    (tmp_path / "classes" / "a" / "broken.png").write_bytes(b"not an image")
    paths, labels, names = scan_images(tmp_path / "classes")
    assert names == ["a", "b"] and len(paths) == 6 and sorted(labels.tolist()) == [0, 0, 0, 1, 1, 1]
    (tmp_path / "flat").mkdir()
    for i in range(4):
        (tmp_path / "flat" / f"{i}.png").write_bytes(
            png_bytes(rng.integers(0, 255, (40, 20, 3), np.uint8))
        )
    (tmp_path / "flat" / "bad.jpg").write_bytes(b"\xff\xd8 truncated")
    paths, labels, names = scan_images(tmp_path / "flat")
    assert len(paths) == 4 and names == []
    # short side resized to the size, centre crop: a 40x20 image keeps its aspect
    image = np.zeros((40, 20, 3), np.uint8)
    image[:6] = 255  # a band at the top is cropped away (a squashing resize would keep it)
    out = decode_crop(tf.constant(png_bytes(image)), 16).numpy()
    assert out.shape == (16, 16, 3) and out[0].mean() < 10 and out[8].mean() < 10


def test_resume_after_sigkill_finishes_like_an_uninterrupted_run(smoke_run, tmp_path):
    """SIGKILL a smoke run after its first mid-epoch checkpoint; the same command resumes
    and ends with exactly the weights of the uninterrupted smoke run (both networks, the
    EMA generator: CPU training here is deterministic, so any state the checkpoint missed
    would show)."""
    import shutil

    import h5py

    whole = smoke_run[0]
    args = ["train", "gan", "--preset", "smoke", "--strategy", "default"]
    env = subprocess_env()
    killed = tmp_path / "killed"
    shutil.copytree(
        whole / "artifacts", killed / "artifacts"
    )  # the same FID network, not retrained
    proc = subprocess.Popen(
        ksuite_cmd(*args, "--run-dir", str(killed)),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 240
    while time.time() < deadline and not list((killed / "checkpoints").glob("ckpt-*.index")):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list((killed / "checkpoints").glob("ckpt-*.index")), "no checkpoint before the kill"
    assert not (killed / "generator_ema.weights.h5").exists(), "the run finished before the kill"
    resumed = subprocess.run(
        ksuite_cmd(*args, "--run-dir", str(killed)),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stderr

    def arrays(path):
        out = {}
        with h5py.File(path) as f:
            f.visititems(lambda k, v: out.__setitem__(k, v[()]) if hasattr(v, "shape") else None)
        return out

    for name in ("generator", "generator_ema", "discriminator"):
        wa, wb = arrays(whole / f"{name}.weights.h5"), arrays(killed / f"{name}.weights.h5")
        assert wa.keys() == wb.keys() and wa
        for k in wa:
            np.testing.assert_allclose(wb[k], wa[k], rtol=1e-5, atol=1e-6, err_msg=f"{name}/{k}")


MIRRORED_CHECK = r"""
import json, sys
import numpy as np
from keras_suite import common
from keras_suite.common.strategy import split_cpu
split_cpu(2)
tf = common.quiet_import_tensorflow()
import keras
from keras_suite.apps.gan import losses
from keras_suite.apps.gan.app import GanApp
from keras_suite.apps.gan.config import PRESETS
from keras_suite.common.app import StepContext
from keras_suite.common.config import merge, parse_override
from keras_suite.common.training import replica_mean

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
report = {}

# 1. per-example penalties averaged with replica_mean under 2 replicas == one device
keras.utils.set_random_seed(0)
cfg = merge(PRESETS["smoke"](), {"model": {"loss": "wgan-gp", "d_norm": "layer"}})
from keras_suite.apps.gan.model import build_discriminator
with strategy.scope():
    d = build_discriminator(cfg, 16, 8)
real = tf.random.stateless_normal([8, 16, 16, 3], seed=[1, 1])
fake = tf.random.stateless_normal([8, 16, 16, 3], seed=[2, 2])
seeds = [tf.constant([5, r], tf.int64) for r in range(2)]

def penalties(x, f, seed):
    return replica_mean(losses.gradient_penalty(d, x, f, None, seed), 8) + replica_mean(
        losses.r1_penalty(d, x, None), 8)

def replica_fn(ctx_dummy):
    r = tf.distribute.get_replica_context().replica_id_in_sync_group
    x = tf.gather(tf.reshape(real, [2, 4, 16, 16, 3]), r)
    f = tf.gather(tf.reshape(fake, [2, 4, 16, 16, 3]), r)
    seed = tf.stack([tf.constant(5, tf.int64), tf.cast(r, tf.int64)])
    with tf.GradientTape() as tape:
        loss = penalties(x, f, seed)
    grads = [tf.zeros(v.shape) if g is None else g for g, v in zip(tape.gradient(loss, d.trainable_variables),
                                                                   d.trainable_variables)]
    grads = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, grads)
    return loss, grads

loss, grads = strategy.run(tf.function(replica_fn), args=(0,))
mirrored_loss = float(strategy.reduce("SUM", loss, axis=None))
mirrored_grads = [strategy.experimental_local_results(g)[0].numpy() for g in grads]
with tf.GradientTape() as tape:
    single = (tf.reduce_sum(losses.gradient_penalty(d, real[:4], fake[:4], None, seeds[0]))
              + tf.reduce_sum(losses.gradient_penalty(d, real[4:], fake[4:], None, seeds[1]))
              + tf.reduce_sum(losses.r1_penalty(d, real, None))) / 8
single_grads = [np.zeros(v.shape) if g is None else g.numpy()
                for g, v in zip(tape.gradient(single, d.trainable_variables), d.trainable_variables)]
report["penalty"] = [mirrored_loss, float(single)]
report["grad_max_diff"] = max(float(np.abs(a - b).max()) for a, b in zip(mirrored_grads, single_grads))
report["grad_max"] = max(float(np.abs(b).max()) for b in single_grads)

# 2. whole train steps under 2 replicas: finite, replicas stay identical, EMA and w_avg move
for preset, overrides in (("stylegan-smoke", ["model.conditional=true", "stability.r1_every=1",
                                               "model.minibatch_stddev=4"]),
                          ("smoke", ["model.loss=wgan-gp", "model.d_norm=layer", "stability.critic_steps=2"])):
    cfg = PRESETS[preset]()
    for o in overrides:
        cfg = merge(cfg, parse_override(o))
    app = GanApp()
    info = {"image_size": 16, "num_classes": 8, "conditional": cfg.model.conditional, "num_train": 512}
    with strategy.scope():
        state = app.build_state(cfg=cfg, info=info)
        state.build_optimizers()
    b = cfg.train.batch_size
    ds = tf.data.Dataset.from_tensors((tf.random.uniform([b, 16, 16, 3], 0, 255, seed=3),
                                       tf.range(b, dtype=tf.int64) % 8)).repeat()
    it = iter(strategy.experimental_distribute_dataset(ds))

    @tf.function
    def step(step_id):
        out = strategy.run(app.train_step, args=(state, next(it), StepContext(cfg, b, step_id)))
        return {k: strategy.reduce("SUM", v, axis=None) for k, v in out.items()}

    outs = [{k: float(v) for k, v in step(tf.constant(i, tf.int64)).items()} for i in range(2)]
    spread = 0.0
    for name in ("generator", "generator_ema", "discriminator"):
        for v in state.models[name].weights:
            parts = [p.numpy() for p in v.value.values]
            spread = max(spread, float(np.abs(parts[0] - parts[1]).max()))
    g, ema = state.models["generator"], state.models["generator_ema"]
    report[preset] = {"finite": all(np.isfinite(v) for o in outs for v in o.values()), "replica_spread": spread,
                      "ema_moved": bool(any(not np.allclose(a, b) for a, b in zip(g.get_weights(), ema.get_weights()))),
                      "w_avg_norm": float(np.linalg.norm(g.w_avg.numpy())) if hasattr(g, "w_avg") else None}
print(json.dumps(report))
"""


def test_two_replicas_penalties_and_train_steps(tmp_path):
    """Under MirroredStrategy (2 logical CPUs): WGAN-GP + R1 penalties averaged per example
    over the GLOBAL batch give the single-device value and gradient; whole StyleGAN (lazy R1,
    style mixing, w_avg) and WGAN-GP (2 critic steps) train steps keep both replicas'
    networks, optimizers and EMA identical."""
    out = subprocess.run(
        [os.environ.get("PYTHON", __import__("sys").executable), "-c", MIRRORED_CHECK],
        capture_output=True,
        text=True,
        timeout=400,
        env=subprocess_env(),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["penalty"][0] == pytest.approx(report["penalty"][1], rel=1e-5)
    assert report["grad_max_diff"] <= 1e-5 * max(1.0, report["grad_max"])
    for preset in ("stylegan-smoke", "smoke"):
        r = report[preset]
        assert r["finite"] and r["ema_moved"], r
        assert r["replica_spread"] == 0.0, r
    assert report["stylegan-smoke"]["w_avg_norm"] > 0


def test_conditional_export_takes_class_ids_and_predict_parses_seeds(tmp_path):
    from keras_suite.common.errors import UserError

    app = GanApp()
    cfg = merge(PRESETS["stylegan-smoke"](), {"model": {"conditional": True}})
    info = {
        "image_size": 16,
        "num_classes": 8,
        "conditional": True,
        "num_train": 512,
        "latent_dim": 32,
        "class_names": [
            "circle",
            "square",
            "triangle",
            "diamond",
            "star",
            "cross",
            "hexagon",
            "ring",
        ],
    }
    state = app.build_state(cfg=cfg, info=info)
    app.export_archive(state=state, info=info, cfg=cfg, artifacts=None).write_out(
        str(tmp_path / "sm"), verbose=False
    )
    fn = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"]
    signature, request = app.predict_request(
        inputs=["3", "3", "truncation=0.5", "class=star"], info=info, cfg=cfg
    )
    assert signature == "serving_default" and request["class_ids"].tolist() == [4, 4]
    out = fn(**{k: tf.constant(v) for k, v in request.items()})
    assert out["images"].shape == (2, 16, 16, 3) and out["png"].shape == (2,)
    other = fn(
        seeds=tf.constant([3], tf.int64),
        truncation=tf.constant([0.5]),
        class_ids=tf.constant([0], tf.int64),
    )
    assert not np.array_equal(
        other["images"].numpy()[0], out["images"].numpy()[0]
    )  # the class matters
    with pytest.raises(UserError, match="integer seed"):
        app.predict_request(inputs=["zebra"], info=info, cfg=cfg)
    with pytest.raises(UserError, match="not one of"):
        app.predict_request(inputs=["1", "class=zebra"], info=info, cfg=cfg)
