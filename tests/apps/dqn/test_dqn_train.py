"""DQN end to end on tiny configs: a `smoke` run through the shared pipeline, resume
from a checkpoint, the serving export, TFLite conversion with the parity report,
`ksuite play`, and the learner under MirroredStrategy."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from keras_suite import common
from keras_suite.common.runlog import read_jsonl
from tests.helpers import ROOT, subprocess_env

tf = common.quiet_import_tensorflow()


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    from keras_suite.common.run import train_run

    run_dir = tmp_path_factory.mktemp("dqn") / "dqn-smoke"
    metrics = train_run("dqn", preset="smoke", run_dir=run_dir, strategy_name="default")
    return run_dir, metrics


@pytest.mark.slow
def test_smoke_run_trains_logs_and_evaluates(smoke_run):
    run_dir, metrics = smoke_run
    for name in (
        "model.weights.h5",
        "target.weights.h5",
        "config.yaml",
        "info.json",
        "metrics.json",
    ):
        assert (run_dir / name).exists(), name
    assert metrics["episodes"] == 2 and np.isfinite(metrics["mean_return"])
    assert metrics["random_score"] == -20.7 and metrics["human_score"] == 14.6
    assert metrics["human_normalized_percent"] == pytest.approx(
        100 * (metrics["mean_return"] + 20.7) / (14.6 + 20.7)
    )
    assert metrics["agent_steps_trained"] == 240 and metrics["frames_trained"] == 960
    records = read_jsonl(run_dir / "logs" / "metrics.jsonl")
    steps = [r for r in records if r["kind"] == "step"]
    assert steps[-1]["updates"] > 0 and np.isfinite(steps[-1]["loss"])
    assert {"epsilon", "q_mean", "frames_per_sec", "replay_size"} <= set(steps[-1])
    replay = next(r for r in records if r["kind"] == "replay")
    assert 84 * 84 < replay["bytes_per_transition"] < 84 * 84 + 64
    assert (run_dir / "plots" / "learning_curve.png").stat().st_size > 1000
    info = json.loads((run_dir / "info.json").read_text())
    assert info["obs_shape"] == [84, 84, 4] and info["action_meanings"][0] == "NOOP"
    sidecars = sorted((run_dir / "checkpoints").glob("ckpt-*.dqn.json"))
    assert [p.name for p in sidecars] == ["ckpt-120.dqn.json", "ckpt-240.dqn.json"]


@pytest.mark.slow
def test_resume_continues_counters_weights_and_rng(tmp_path):
    """Train 120 steps, then 'restart' with a 240-step budget: the second trainer starts
    from the checkpoint (counters, optimizer, RNG) and finishes the remaining steps."""
    from keras_suite.apps.dqn import APP
    from keras_suite.apps.dqn.train import DQNTrainer
    from keras_suite.common.runlog import RunLogger
    from keras_suite.common.training import TrainContext

    def context(total_steps):
        cfg = APP.presets["smoke"]()
        cfg.agent.total_steps = total_steps
        data = APP.datasets(cfg=cfg, artifacts=None)
        state = APP.build_state(cfg=cfg, info=data.info)
        state.build_optimizers()
        return TrainContext(
            app=APP,
            cfg=cfg,
            run_dir=tmp_path,
            strategy=tf.distribute.get_strategy(),
            data=data,
            state=state,
            logger=RunLogger(tmp_path),
        )

    first = context(120)
    DQNTrainer(first).fit()
    first.logger.close()
    saved = json.loads((tmp_path / "checkpoints" / "ckpt-120.dqn.json").read_text())
    updates_first = int(first.state.variables["updates"].numpy())
    assert updates_first > 0

    second = context(240)
    trainer = DQNTrainer(second)
    assert trainer.restore()
    assert int(trainer.env_steps.numpy()) == 120 and int(trainer.updates.numpy()) == updates_first
    assert trainer.rng.bit_generator.state == saved["rng"] and trainer.restarts == 1
    for a, b in zip(first.state.model.get_weights(), second.state.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert int(second.state.optimizers["model"].iterations.numpy()) == updates_first
    trainer.fit()
    second.logger.close()
    assert int(second.state.variables["env_steps"].numpy()) == 240
    # after resuming, the replay refills learning_starts transitions before learning again
    assert int(second.state.variables["updates"].numpy()) > updates_first
    steps = [
        r["step"] for r in read_jsonl(tmp_path / "logs" / "metrics.jsonl") if r["kind"] == "step"
    ]
    assert steps == sorted(steps) and steps[-1] == 240


@pytest.mark.slow
def test_serving_export_and_tflite_parity(smoke_run, tmp_path):
    from keras_suite.common.run import load_run
    from keras_suite.tflite.pipeline import convert_run

    run_dir, _ = smoke_run
    run = load_run(run_dir)
    archive = run.app.export_archive(
        state=run.state, info=run.info, cfg=run.cfg, artifacts=run.artifacts
    )
    archive.write_out(str(tmp_path / "saved"), verbose=False)
    requests = run.app.sample_requests(data=None, info=run.info, cfg=run.cfg)["serving_default"]
    frames = requests[1]["frames"]
    assert frames.dtype == np.uint8 and frames.shape == (4, 84, 84, 4)
    serve = tf.saved_model.load(str(tmp_path / "saved")).signatures["serving_default"]
    out = serve(frames=tf.constant(frames))
    q = run.state.model(frames).numpy()
    np.testing.assert_allclose(out["q_values"].numpy(), q, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out["action"].numpy(), q.argmax(-1))

    result = convert_run(run_dir, modes="float32,int8", out_dir=tmp_path / "tflite", latency_runs=3)
    report = result["report"]
    text = json.dumps(report)
    assert "greedy_action_agreement" in text and "tflite_mean_return" in text
    float_metrics = _find_metrics(report, "float32")
    assert float_metrics["greedy_action_agreement"] == 1.0
    assert float_metrics["q_max_abs_diff"] < 1e-4
    int8_metrics = _find_metrics(report, "int8")
    assert 0.0 <= int8_metrics["greedy_action_agreement"] <= 1.0


def _find_metrics(report, mode):
    """The app metrics of one mode inside the parity report, wherever the report nests them."""
    if isinstance(report, dict):
        if report.get("mode") == mode and isinstance(report.get("metrics"), dict):
            return report["metrics"]
        if mode in report and isinstance(report[mode], dict) and "metrics" in report[mode]:
            return report[mode]["metrics"]
        for value in report.values():
            found = _find_metrics(value, mode)
            if found is not None:
                return found
    elif isinstance(report, list):
        for value in report:
            found = _find_metrics(value, mode)
            if found is not None:
                return found
    return None


@pytest.mark.slow
def test_play_records_gif(smoke_run, tmp_path):
    from PIL import Image

    from keras_suite.apps.dqn.commands import play

    run_dir, _ = smoke_run
    result = play(run_dir, tmp_path / "episode.gif", max_steps=20)
    with Image.open(result["path"]) as gif:
        assert gif.n_frames == result["frames"] == 21 and gif.size == (160, 210)


def test_bad_config_is_a_user_error():
    from keras_suite.apps.dqn import APP
    from keras_suite.common.config import resolve
    from keras_suite.common.errors import UserError

    with pytest.raises(UserError, match="agent.network=mlp"):
        resolve(APP.presets, "default", overrides=["env.id=CartPole-v1"])
    cfg = resolve(APP.presets, "cartpole", overrides=["env.id=NoSuchEnv-v0"])
    with pytest.raises(UserError, match="cannot make environment"):
        APP.datasets(cfg=cfg, artifacts=None)


MIRRORED_SCRIPT = textwrap.dedent("""
    import json, numpy as np
    from keras_suite import common
    from keras_suite.common.strategy import make_strategy
    tf = common.quiet_import_tensorflow()
    import keras
    from keras_suite.apps.dqn.config import cartpole
    from keras_suite.apps.dqn.learner import Learner
    from keras_suite.apps.dqn.model import build_q_network

    cfg = cartpole(); cfg.agent.hidden_units = [16]; cfg.train.batch_size = 8
    mirrored = make_strategy("mirrored", cpu_devices=2)
    rng = np.random.default_rng(0)
    batch = {"obs": rng.normal(size=(8, 4)).astype(np.float32),
             "actions": rng.integers(0, 2, 8).astype(np.int32),
             "returns": rng.normal(size=8).astype(np.float32),
             "discounts": np.full(8, 0.9, np.float32),
             "next_obs": rng.normal(size=(8, 4)).astype(np.float32),
             "weights": rng.uniform(0.2, 1, 8).astype(np.float32)}
    keras.utils.set_random_seed(1)
    init = build_q_network(cfg.agent, [4], "float32", 2, "init").get_weights()
    out = {}
    for name, strategy in (("default", tf.distribute.get_strategy()), ("mirrored", mirrored)):
        with strategy.scope():
            online = build_q_network(cfg.agent, [4], "float32", 2, "online")
            target = build_q_network(cfg.agent, [4], "float32", 2, "target")
            online.set_weights(init); target.set_weights(init)
            opt = keras.optimizers.Adam(1e-2)
            opt.build(online.trainable_variables)
        learner = Learner(strategy, online, target, opt, cfg.agent, cfg.train)
        losses = [learner.train(batch)[0] for _ in range(3)]
        tds = learner.train(batch)[2]
        out[name] = {"replicas": strategy.num_replicas_in_sync, "losses": losses, "td": tds.tolist(),
                     "weights": [w.tolist() for w in online.get_weights()[:1]]}
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_learner_matches_under_mirrored_strategy():
    """2 logical CPU replicas must give the same losses, TD errors and weights as one."""
    proc = subprocess.Popen(
        [sys.executable, "-c", MIRRORED_SCRIPT],
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr[-2000:]
    out = json.loads(stdout.strip().splitlines()[-1])
    assert out["mirrored"]["replicas"] == 2
    np.testing.assert_allclose(out["mirrored"]["losses"], out["default"]["losses"], rtol=1e-4)
    np.testing.assert_allclose(out["mirrored"]["td"], out["default"]["td"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        out["mirrored"]["weights"], out["default"]["weights"], rtol=1e-4, atol=1e-6
    )
