"""The pieces of the app contract that apps build on: the token/pixel-weighted replica
mean under every strategy, several models and optimizers in one run, run artifacts, the
per-step context, and app verbs that two apps share."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from keras_suite import common
from keras_suite.common.app import App, Artifacts, Datasets, StepContext
from keras_suite.common.errors import UserError
from tests.helpers import ROOT, free_port, subprocess_env

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402

WORKER = str(ROOT / "tests" / "contract" / "weighted_mean_worker.py")


# ---- replica_weighted_mean ----------------------------------------------------------


def _expected():
    sys.path.insert(0, str(ROOT / "tests" / "contract"))
    from weighted_mean_worker import MASK, X, Y

    w = 0.7
    err = w * X - Y
    loss = float((err**2 * MASK).sum() / MASK.sum())
    grad = float((2 * err * X * MASK).sum() / MASK.sum())
    # what a per-replica token mean averaged over 2 replicas would give instead
    naive = float(
        np.mean([(err[r::2] ** 2 * MASK[r::2]).sum() / MASK[r::2].sum() for r in range(2)])
    )
    return loss, grad, naive


def _last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


@pytest.mark.slow
def test_weighted_mean_equals_single_device_under_mirrored():
    loss, grad, naive = _expected()
    assert abs(naive - loss) > 0.01  # the data makes the wrong denominator visible
    results = {}
    for mode in ("default", "mirrored"):
        out = subprocess.run(
            [sys.executable, WORKER, mode],
            capture_output=True,
            text=True,
            timeout=300,
            env=subprocess_env(),
            cwd=ROOT,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        results[mode] = _last_json(out.stdout)
    assert results["default"]["replicas"] == 1 and results["mirrored"]["replicas"] == 2
    for r in results.values():
        np.testing.assert_allclose([r["loss"], r["grad"]], [loss, grad], rtol=1e-5)


@pytest.mark.slow
def test_weighted_mean_equals_single_device_under_multiworker():
    loss, grad, _ = _expected()
    cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
    procs = []
    try:
        for index in range(2):
            tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
            procs.append(
                subprocess.Popen(
                    [sys.executable, WORKER, "multiworker"],
                    cwd=ROOT,
                    env=subprocess_env(TF_CONFIG=tf_config),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    start_new_session=True,
                )
            )
        outputs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    assert [p.returncode for p in procs] == [0, 0], "\n".join(err[-1500:] for _, err in outputs)
    for out, _ in outputs:
        r = _last_json(out)
        assert r["replicas"] == 2
        np.testing.assert_allclose([r["loss"], r["grad"]], [loss, grad], rtol=1e-5)


def test_weighted_mean_with_no_real_tokens_is_zero():
    from keras_suite.common.training import replica_weighted_mean

    assert float(replica_weighted_mean(tf.ones([3]), tf.zeros([3]))) == 0.0


# ---- several models and optimizers ----------------------------------------------------


class TwoNetworkApp(App):
    """Encoder + decoder with one optimizer each (different settings), a third model that
    is not saved, and a counter variable: what a GAN or a VAE needs from the contract."""

    name = "two_networks"

    def build_state(self, *, cfg, info):
        from keras_suite.common.training import TrainState, make_optimizer

        encoder = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)], name="encoder")
        decoder = keras.Sequential([keras.Input((2,)), keras.layers.Dense(4)], name="decoder")
        scratch = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)], name="scratch")
        return TrainState(
            models={"encoder": encoder, "decoder": decoder, "scratch": scratch},
            optimizers={
                "encoder": make_optimizer(cfg.encoder_optim, 0),
                "decoder": make_optimizer(cfg.decoder_optim, 0),
            },
            exported=("decoder", "encoder"),
            saved=("encoder", "decoder"),
        )

    def train_step(self, state, batch, step):
        from keras_suite.common.training import apply_gradients, replica_mean

        for name in ("encoder", "decoder"):
            with tf.GradientTape() as tape:
                recon = state.models["decoder"](state.models["encoder"](batch))
                loss = replica_mean(
                    tf.reduce_sum(tf.square(recon - batch), -1), step.global_batch_size
                )
            apply_gradients(tape, loss, state.trainable_variables(name), state.optimizers[name])
        noise = tf.random.stateless_normal([], step.seed(1))
        return {"loss": loss, "noise": noise / step.global_batch_size}


def _two_network_cfg():
    from dataclasses import dataclass, field

    from keras_suite.common.config import OptimizerConfig, TrainConfig

    @dataclass
    class Cfg:
        train: TrainConfig = field(
            default_factory=lambda: TrainConfig(epochs=2, batch_size=8, log_every_steps=0)
        )
        encoder_optim: OptimizerConfig = field(
            default_factory=lambda: OptimizerConfig(learning_rate=0.01, beta_1=0.5)
        )
        decoder_optim: OptimizerConfig = field(
            default_factory=lambda: OptimizerConfig(learning_rate=0.003, beta_2=0.99)
        )

    return Cfg()


def test_several_models_and_optimizers_train_save_and_log(tmp_path):
    from keras_suite.common.runlog import RunLogger, read_jsonl
    from keras_suite.common.training import TrainContext

    app, cfg = TwoNetworkApp(), _two_network_cfg()
    x = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
    data = Datasets(
        train_epoch=lambda epoch: tf.data.Dataset.from_tensor_slices(x).batch(
            8, drop_remainder=True
        ),
        steps_per_epoch=4,
    )
    state = app.build_state(cfg=cfg, info={})
    state.build_optimizers()
    enc_opt, dec_opt = state.optimizers["encoder"], state.optimizers["decoder"]
    assert (float(enc_opt.beta_1), float(dec_opt.beta_2)) == (0.5, 0.99)
    before = {n: [w.copy() for w in m.get_weights()] for n, m in state.models.items()}
    logger = RunLogger(tmp_path)
    ctx = TrainContext(
        app=app,
        cfg=cfg,
        run_dir=tmp_path,
        strategy=tf.distribute.get_strategy(),
        data=data,
        state=state,
        logger=logger,
    )
    history = app.train(ctx)
    logger.close()
    assert [r["epoch"] for r in history] == [1, 2]
    epochs = [r for r in read_jsonl(tmp_path / "logs" / "metrics.jsonl") if r["kind"] == "epoch"]
    assert epochs[-1]["learning_rate_encoder"] == pytest.approx(0.01)
    assert epochs[-1]["learning_rate_decoder"] == pytest.approx(0.003)
    # each optimizer moved its own network; the network no optimizer owns did not move
    for name in ("encoder", "decoder"):
        assert any(
            not np.allclose(a, b) for a, b in zip(before[name], state.models[name].get_weights())
        )
    assert all(
        np.allclose(a, b) for a, b in zip(before["scratch"], state.models["scratch"].get_weights())
    )
    assert int(enc_opt.iterations) == int(dec_opt.iterations) == 8
    # stateless per-step noise: a different draw every step
    assert len({round(r["noise"], 6) for r in epochs}) == 2
    # weights: only the saved models are written, and they load back into a fresh state
    state.save_weights(tmp_path)
    assert sorted(p.name for p in tmp_path.glob("*.weights.h5")) == [
        "decoder.weights.h5",
        "encoder.weights.h5",
    ]
    fresh = app.build_state(cfg=cfg, info={})
    fresh.load_weights(tmp_path)
    np.testing.assert_array_equal(
        fresh.model.get_weights()[0], state.models["decoder"].get_weights()[0]
    )
    assert state.model is state.models["decoder"]  # the first exported model


# ---- step context, artifacts ------------------------------------------------------------


def test_step_seed_depends_on_step_salt_and_config_seed():
    from keras_suite.common.config import TrainConfig

    class Cfg:
        train = TrainConfig(seed=3)

    def seed(step, salt=0, cfg=Cfg()):
        return tuple(
            StepContext(cfg=cfg, global_batch_size=8, step=tf.constant(step, tf.int64))
            .seed(salt)
            .numpy()
        )

    assert seed(5) == seed(5)
    assert len({seed(5), seed(6), seed(5, salt=1)}) == 3
    other = type("Other", (), {"train": TrainConfig(seed=9)})()
    assert seed(5, cfg=other) != seed(5)


def test_artifacts_are_written_atomically_and_read_back(tmp_path):
    artifacts = Artifacts(tmp_path / "artifacts")
    assert artifacts.names() == [] and not artifacts.exists("vocab.txt")
    artifacts.write_text("vocab.txt", "[PAD]\nhello\n")
    artifacts.write_bytes("stats.npy", b"\x00\x01")
    assert artifacts.names() == ["stats.npy", "vocab.txt"]
    assert artifacts.read_text("vocab.txt") == "[PAD]\nhello\n"
    assert not list((tmp_path / "artifacts").glob("*.tmp"))
    with pytest.raises(UserError, match="no artifact 'merges.txt'"):
        artifacts.read_text("merges.txt")
    with pytest.raises(ValueError):
        artifacts.path("../escape.txt")


def test_run_artifacts_reach_datasets_on_load(tmp_path):
    from keras_suite.common.run import build_datasets

    seen = []

    class VocabApp(App):
        def datasets(self, *, cfg, artifacts):
            if not artifacts.exists("vocab.txt"):
                artifacts.write_text("vocab.txt", "a\nb\n")
            seen.append(artifacts.read_text("vocab.txt"))
            info = {
                "source": "test",
                "split_sizes": {},
                "evaluation_split": {
                    "split": "test",
                    "size": 0,
                    "near_duplicates_removed": 0,
                    "duplicate_rule": "none",
                },
            }
            return Datasets(train_epoch=None, steps_per_epoch=0, info=info)

    first = build_datasets(VocabApp(), None, tmp_path)
    (tmp_path / "artifacts" / "vocab.txt").write_text(
        "a\nb\nc\n"
    )  # a later load reads the file, not a new one
    second = build_datasets(VocabApp(), None, tmp_path)
    assert seen == ["a\nb\n", "a\nb\nc\n"]
    assert first.artifacts.folder == second.artifacts.folder == tmp_path / "artifacts"


# ---- app verbs --------------------------------------------------------------------------


def test_two_apps_share_a_verb_and_dispatch_on_the_app(tmp_path, capsys):
    from keras_suite.common.commands import AppCommand, register

    calls = []

    def command(app):
        def add(p):
            p.add_argument("run_dir")
            p.add_argument("--n", type=int, default=4)

        def run(args):
            calls.append((app, args.app, args.run_dir, args.n))
            return 0

        return AppCommand("sample", f"{app} samples", add, run)

    parser = argparse.ArgumentParser(prog="ksuite")
    sub = parser.add_subparsers(dest="command")
    register(
        sub, {"classification": [command("classification")], "detection": [command("detection")]}
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps({"app": "detection"}))
    r1 = tmp_path / "R1"  # the verb's RUN_DIR must be a run of the app it names
    r1.mkdir()
    (r1 / "run.json").write_text(json.dumps({"app": "classification"}))

    for argv in (
        ["sample", "classification", str(r1), "--n", "9"],
        ["sample", str(run_dir)],
        ["sample", "detection", str(run_dir), "--n", "2"],
    ):
        args = parser.parse_args(argv)
        assert args.func(args) == 0
    assert calls == [
        ("classification", "classification", str(r1), 9),
        ("detection", "detection", str(run_dir), 4),
        ("detection", "detection", str(run_dir), 2),
    ]
    args = parser.parse_args(["sample", "dqn", "x"])
    with pytest.raises(UserError, match="the dqn app has no `sample` command"):
        args.func(args)
    args = parser.parse_args(["sample", str(tmp_path / "nothing")])
    with pytest.raises(UserError, match="neither an app"):
        args.func(args)


def test_ksuite_apps_and_help_list_app_commands(capsys):
    from keras_suite.cli import main

    assert main(["apps"]) == 0
    out = capsys.readouterr().out
    assert "ksuite play dqn RUN_DIR" in out and "predict takes: image files" in out
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "play" in capsys.readouterr().out


def test_accelerator_check_says_so_without_a_gpu():
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU: the check would run every app")
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "accelerator_check.py")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=subprocess_env(),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "no GPU visible" in out.stdout
