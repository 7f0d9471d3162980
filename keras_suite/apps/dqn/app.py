"""The DQN app: what the shared pipeline (train, evaluate, export, TFLite) calls."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_suite import common  # noqa: F401
from keras_suite.apps.dqn import config as dqn_config
from keras_suite.common.app import App, Datasets, TFLiteTarget


def _collect_observations(env_cfg, count: int, seed: int) -> np.ndarray:
    """Real observations from random play (no learning) for warm-up requests and int8
    calibration: the input distribution the network sees."""
    from keras_suite.apps.dqn.data import make_env

    env = make_env(env_cfg, training=False, seed=seed)
    rng = np.random.default_rng(seed)
    try:
        obs, _ = env.reset(seed=seed)
        out = []
        while len(out) < count:
            for _ in range(int(rng.integers(1, 6))):  # spread samples over the episode
                obs, _, term, trunc, _ = env.step(int(rng.integers(env.action_space.n)))
                if term or trunc:
                    obs, _ = env.reset()
            out.append(obs)
        return np.stack(out)
    finally:
        env.close()


class DQNApp(App):
    name = "dqn"
    description = (
        "Deep Q-learning on Atari (Nature DQN + Double, Dueling, PER, n-step) and classic control"
    )
    presets = dqn_config.PRESETS

    # ---- data and model -------------------------------------------------------------
    def datasets(self, *, cfg, artifacts) -> Datasets:
        from keras_suite.apps.dqn.data import env_info

        info = env_info(cfg.env)
        # scored on new episodes from evaluation seeds (evaluate.py), not training episodes
        info["evaluation_split"] = {
            "split": "evaluation episodes",
            "size": int(cfg.eval.episodes),
            "near_duplicates_removed": 0,
            "duplicate_rule": "not applicable: fresh episodes, not stored examples",
        }
        return Datasets(train_epoch=None, steps_per_epoch=0, info=info)

    def build_state(self, *, cfg, info):
        import keras_suite.common.training as training
        from keras_suite.apps.dqn.model import build_q_network

        tf = common.quiet_import_tensorflow()
        args = (cfg.agent, info["obs_shape"], info["obs_dtype"], info["num_actions"])
        online = build_q_network(*args, name="q_network")
        target = build_q_network(*args, name="target_q_network")
        target.trainable = False
        optimizer = training.make_optimizer(
            cfg.train, cfg.agent.total_steps // cfg.agent.train_every
        )
        inner = getattr(optimizer, "inner_optimizer", optimizer)
        if hasattr(inner, "epsilon"):  # set before the optimizer builds its slots
            inner.epsilon = cfg.agent.adam_epsilon
        counters = {
            name: tf.Variable(0, dtype=tf.int64, trainable=False, name=name)
            for name in ("env_steps", "updates", "episodes")
        }
        return training.TrainState(
            models={"model": online, "target": target},
            optimizers={"model": optimizer},
            variables=counters,
        )

    def train(self, ctx) -> list[dict]:
        from keras_suite.apps.dqn.train import DQNTrainer

        return DQNTrainer(ctx).fit()

    # ---- evaluation -----------------------------------------------------------------
    def greedy_q_fn(self, model):
        tf = common.quiet_import_tensorflow()
        return tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    def evaluate(self, *, state, data, cfg, run_dir) -> dict:
        from keras_suite.apps.dqn.evaluate import plot_learning_curve, run_episodes, summarize
        from keras_suite.common.runlog import progress, read_jsonl

        bar = progress(cfg.eval.episodes, "evaluation", unit="episode")
        try:
            scores, lengths = run_episodes(
                self.greedy_q_fn(state.model),
                cfg.env,
                cfg.eval.episodes,
                cfg.eval.epsilon,
                cfg.eval.noop_max,
                seed=cfg.train.seed + 123_457,
                progress_bar=bar,
            )
        finally:
            bar.close()
        metrics = summarize(cfg.env.id, scores, lengths, cfg.eval.epsilon)
        metrics["noop_max"] = cfg.eval.noop_max
        metrics["sticky_actions"] = cfg.env.sticky_actions
        if run_dir is not None:
            records = read_jsonl(Path(run_dir) / "logs" / "metrics.jsonl")
            steps = [r for r in records if r.get("kind") == "step"]
            if steps:
                metrics["agent_steps_trained"] = steps[-1]["step"]
                metrics["frames_trained"] = steps[-1]["frames"]
            frame_skip = cfg.env.frame_skip if cfg.env.is_atari else 1
            plot = plot_learning_curve(
                records,
                Path(run_dir) / "plots" / "learning_curve.png",
                f"DQN on {cfg.env.id}: final {metrics['mean_return']:.1f} "
                f"± {metrics['std_return']:.1f} ({len(scores)} episodes)",
                frame_skip,
                metrics,
            )
            metrics["learning_curve"] = str(plot) if plot else None
        return metrics

    # ---- deployment -----------------------------------------------------------------
    def export_archive(self, *, state, info, cfg, artifacts):
        from keras_suite.apps.dqn import export

        return export.serving_archive(state.model, info)

    def sample_requests(self, *, data, info, cfg) -> dict:
        from keras_suite.apps.dqn import export

        obs = _collect_observations(cfg.env, 4, seed=cfg.train.seed + 1)
        name = export.input_spec(info, None).name
        return {"serving_default": [{name: obs[:1]}, {name: obs}]}

    predict_inputs = (
        "observation .npy files (one observation, or a batch, each; as np.save writes them)"
    )
    # the converted policy must pick the Keras policy's action on held-out observations
    parity_tolerance = {"metric": "greedy_action_agreement", "max_drop": 0.05, "relative": False}

    def predict_request(self, *, inputs, info, cfg):
        """Observations saved with np.save -> the policy's greedy actions and Q-values."""
        from keras_suite.apps.dqn import export
        from keras_suite.common.errors import UserError

        spec = export.input_spec(info, None)
        shape, dtype = tuple(info["obs_shape"]), np.dtype(info["obs_dtype"])
        batches = []
        for path in inputs:
            try:
                obs = np.load(path, allow_pickle=False)
            except (OSError, ValueError, EOFError) as exc:  # EOFError: an empty file
                raise UserError(
                    f"{path}: not a .npy observation file ({exc}); save one with np.save"
                ) from None
            if obs.shape == shape:
                obs = obs[None]
            if obs.shape[1:] != shape:
                raise UserError(
                    f"{path}: observation shape {list(obs.shape)}; this agent takes "
                    f"{list(shape)} (or a batch [N, {', '.join(map(str, shape))}])"
                )
            batches.append(obs.astype(dtype))
        return "serving_default", {spec.name: np.concatenate(batches)}

    def predict_examples(self, *, data, info, cfg, out_dir) -> list:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        obs = _collect_observations(cfg.env, 2, seed=cfg.train.seed + 4)
        paths = [out_dir / f"observation_{i}.npy" for i in range(len(obs))]
        for path, o in zip(paths, obs):
            np.save(path, o)
        return [str(p) for p in paths]

    def tflite_targets(self, *, state, data, cfg, workdir) -> list[TFLiteTarget]:
        from keras_suite.apps.dqn import export

        workdir = Path(workdir)
        saved = workdir / "dqn_policy_b1"
        export.tflite_archive(state.model, data.info).write_out(str(saved), verbose=False)
        name = export.input_spec(data.info, 1).name
        calibration = _collect_observations(cfg.env, 64, seed=cfg.train.seed + 2)
        # Keras greedy actions on held-out observations: tflite_evaluate measures agreement.
        reference = _collect_observations(cfg.env, 200, seed=cfg.train.seed + 3)
        q = np.asarray(state.model(reference, training=False))

        def representative():
            for obs in calibration:
                yield {name: obs[None]}

        return [
            TFLiteTarget(
                name="policy",
                saved_model_dir=str(saved),
                signature="serving_default",
                representative_data=representative,
                calibration_split="64 observations of random play (seed + 2)",
                evaluation_split="200 held-out observations (seed + 3) and evaluation episodes",
                extras={"reference_obs": reference, "reference_q": q},
            )
        ]

    def tflite_evaluate(self, *, run_signature, data, cfg, info, target) -> dict:
        """Greedy-action agreement with the Keras model on held-out observations, and the
        return of the converted policy over a few episodes of the standard protocol."""
        from keras_suite.apps.dqn import export
        from keras_suite.apps.dqn.evaluate import run_episodes, summarize

        name = export.input_spec(info, 1).name
        result: dict = {}
        if target is not None and "reference_obs" in target.extras:
            obs, q_ref = target.extras["reference_obs"], target.extras["reference_q"]
            q_lite = np.concatenate(
                [np.asarray(run_signature({name: o[None]})["q_values"]) for o in obs]
            )
            result["greedy_action_agreement"] = float(
                np.mean(q_lite.argmax(-1) == q_ref.argmax(-1))
            )
            result["q_max_abs_diff"] = float(np.max(np.abs(q_lite - q_ref)))

        def q_fn(batch):
            return np.concatenate(
                [np.asarray(run_signature({name: o[None]})["q_values"]) for o in batch]
            )

        episodes = min(cfg.eval.episodes, 5)
        scores, lengths = run_episodes(
            q_fn,
            cfg.env,
            episodes,
            cfg.eval.epsilon,
            cfg.eval.noop_max,
            seed=cfg.train.seed + 123_457,
            num_envs=1,
        )
        summary = summarize(cfg.env.id, scores, lengths, cfg.eval.epsilon)
        result.update(
            {
                f"tflite_{k}": v
                for k, v in summary.items()
                if k in ("mean_return", "std_return", "episodes", "human_normalized_percent")
            }
        )
        return result
