"""The DQN training loop: act in N environments with ε-greedy actions from one batched
forward pass, store transitions, learn from replay every `train_every` agent steps, update
the target network, evaluate, checkpoint and resume.

Resume restores the networks, the optimizer, the step counters (ε follows from them),
the best-evaluation bookkeeping and the NumPy RNG (a JSON sidecar next to each
checkpoint). It does not restore the replay buffer or the emulators: a resumed run
resets its environments and refills `agent.learning_starts` transitions before it
learns again (documented in docs/dqn.md).
"""

from __future__ import annotations

import json
import time
from collections import deque
from pathlib import Path

import numpy as np

from keras_suite import common
from keras_suite.apps.dqn.data import VectorEnv, make_env
from keras_suite.apps.dqn.evaluate import epsilon_greedy, run_episodes
from keras_suite.apps.dqn.learner import Learner
from keras_suite.apps.dqn.replay import ReplayBuffer
from keras_suite.common.errors import UserError
from keras_suite.common.runlog import log, progress, write_json_atomic

tf = common.quiet_import_tensorflow()


def epsilon_at(step: int, agent_cfg) -> float:
    """Linear decay from epsilon_start to epsilon_end over epsilon_decay_steps agent steps."""
    frac = min(1.0, step / max(1, agent_cfg.epsilon_decay_steps))
    return agent_cfg.epsilon_start + frac * (agent_cfg.epsilon_end - agent_cfg.epsilon_start)


def beta_at(step: int, cfg) -> float:
    """Importance-sampling exponent annealed linearly to beta_end over the run."""
    frac = min(1.0, step / max(1, cfg.agent.total_steps))
    return cfg.replay.beta_start + frac * (cfg.replay.beta_end - cfg.replay.beta_start)


def newest_frame(obs, stack: int):
    return obs[..., -1] if stack > 1 else obs


def _sidecar(checkpoint_path: str) -> Path:
    return Path(checkpoint_path + ".dqn.json")


class DQNTrainer:
    def __init__(self, ctx):
        self.ctx, self.cfg, self.state = ctx, ctx.cfg, ctx.state
        kind = type(ctx.strategy).__name__
        if "MultiWorker" in kind or "TPU" in kind:
            raise UserError(
                f"dqn trains under the default or mirrored strategy, not {kind}: "
                "acting and replay live in one process; use --strategy mirrored"
            )
        if self.cfg.train.batch_size % ctx.strategy.num_replicas_in_sync:
            raise UserError(
                f"train.batch_size={self.cfg.train.batch_size} must be divisible by the "
                f"{ctx.strategy.num_replicas_in_sync} replicas"
            )
        self.online, self.target = self.state.models["model"], self.state.models["target"]
        self.optimizer = self.state.optimizers["model"]
        v = self.state.variables
        self.env_steps, self.updates, self.episodes = v["env_steps"], v["updates"], v["episodes"]
        self.checkpoint = self.state.checkpoint()
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, str(ctx.checkpoint_dir), max_to_keep=self.cfg.train.keep_checkpoints
        )
        self.rng = np.random.default_rng(self.cfg.train.seed)
        self.restarts = 0
        self.best_eval = -float("inf")
        self.best_path = Path(ctx.run_dir) / "best.weights.h5"

    # ---- checkpoints --------------------------------------------------------------------
    def restore(self) -> bool:
        latest = self.manager.latest_checkpoint
        if not latest:
            self.target.set_weights(self.online.get_weights())
            self.ctx.logger.drop_after(0)  # records of an attempt killed before any checkpoint
            return False
        self.checkpoint.restore(latest).assert_existing_objects_matched()
        # records logged after this checkpoint describe agent steps about to be redone
        self.ctx.logger.drop_after(int(self.env_steps.numpy()))
        side = json.loads(_sidecar(latest).read_text())
        self.rng.bit_generator.state = side["rng"]
        self.restarts = side["restarts"] + 1
        self.best_eval = side["best_eval"]
        log.info(
            "resumed from %s: %d agent steps, %d updates, %d episodes; the replay buffer "
            "refills %d transitions before learning resumes",
            Path(latest).name,
            int(self.env_steps.numpy()),
            int(self.updates.numpy()),
            int(self.episodes.numpy()),
            self.cfg.agent.learning_starts,
        )
        return True

    def save(self) -> None:
        number = int(self.env_steps.numpy())
        prefix = str(Path(self.ctx.checkpoint_dir) / f"ckpt-{number}")
        # The sidecar goes first: a checkpoint that exists always has its sidecar.
        write_json_atomic(
            _sidecar(prefix),
            {
                "rng": self.rng.bit_generator.state,
                "restarts": self.restarts,
                "best_eval": self.best_eval,
            },
        )
        self.manager.save(checkpoint_number=number)
        kept = {Path(p).name for p in self.manager.checkpoints}
        for side in Path(self.ctx.checkpoint_dir).glob("ckpt-*.dqn.json"):
            if side.name[: -len(".dqn.json")] not in kept:
                side.unlink(missing_ok=True)

    # ---- the loop -----------------------------------------------------------------------
    def fit(self) -> list[dict]:
        cfg, agent = self.cfg, self.cfg.agent
        ctx = self.ctx
        Path(ctx.checkpoint_dir).mkdir(parents=True, exist_ok=True)
        self.restore()
        E, stack = cfg.env.num_envs, cfg.env.frame_stack
        seed = cfg.train.seed + 7919 * self.restarts  # a resumed run does not replay the same games
        venv = VectorEnv(
            [lambda i=i: make_env(cfg.env, training=True, seed=seed + i) for i in range(E)]
        )
        obs = venv.reset(seed=seed)
        replay = ReplayBuffer(
            cfg.replay.capacity,
            E,
            obs.shape[1:-1] if stack > 1 else obs.shape[1:],
            obs.dtype,
            stack,
            agent.n_step,
            agent.gamma,
            cfg.replay.prioritized,
            cfg.replay.alpha,
            cfg.replay.priority_epsilon,
        )
        log.info(
            "replay buffer: %d transitions in %.1f MB (frames stored once; %.1f MB for 1M)",
            cfg.replay.capacity,
            replay.nbytes / 1e6,
            replay.nbytes / cfg.replay.capacity * 1e6 / 1e6,
        )
        ctx.logger.write(
            {
                "kind": "replay",
                "capacity": cfg.replay.capacity,
                "bytes": replay.nbytes,
                "bytes_per_transition": replay.nbytes / cfg.replay.capacity,
            }
        )
        learner = Learner(ctx.strategy, self.online, self.target, self.optimizer, agent, cfg.train)
        q_fn = tf.function(lambda x: self.online(x, training=False), reduce_retracing=True)
        frame_skip = cfg.env.frame_skip if cfg.env.is_atari else 1

        first = np.ones(E, bool)
        recent = deque(maxlen=100)
        history, losses, qs = [], [], []
        credit = 0.0
        # Python copies of the counters (reading a tf.Variable every step costs more than
        # the bookkeeping itself); written back before each checkpoint.
        step, updates, episodes = (
            int(v.numpy()) for v in (self.env_steps, self.updates, self.episodes)
        )
        marks = {"log": step, "ckpt": step, "eval": step}
        t0, steps_at_t0 = time.perf_counter(), step
        bar = progress(
            agent.total_steps, f"dqn {cfg.env.id}", ctx.is_chief, unit="step", initial=step
        )
        try:
            while step < agent.total_steps:
                eps = epsilon_at(step, agent)
                if eps >= 1.0:
                    actions = self.rng.integers(0, int(self.online.output_shape[-1]), E)
                else:
                    actions = epsilon_greedy(q_fn(obs).numpy(), eps, self.rng)
                next_obs, rewards, term, trunc, final_obs, infos = venv.step(actions)
                for e in range(E):
                    replay.add(
                        e, newest_frame(obs[e], stack), actions[e], rewards[e], term[e], first[e]
                    )
                    ended = term[e] or trunc[e]
                    if ended:
                        replay.add_last(e, newest_frame(final_obs[e], stack))
                    first[e] = ended
                    if "game_score" in infos[e]:
                        episodes += 1
                        recent.append(infos[e]["game_score"])
                        ctx.logger.write(
                            {
                                "kind": "episode",
                                "step": step + E,
                                "return": infos[e]["game_score"],
                                "length_frames": infos[e]["game_frames"],
                                "epsilon": eps,
                            }
                        )
                obs = next_obs
                step += E
                bar.update(E)

                # Learning: one update per train_every agent steps once the replay is warm.
                if len(replay) >= agent.learning_starts:
                    credit += E / agent.train_every
                while credit >= 1.0:
                    credit -= 1.0
                    sample = replay.sample(cfg.train.batch_size, self.rng, beta_at(step, cfg))
                    loss, q, td = learner.train(sample)
                    if not np.isfinite(loss):
                        raise UserError(
                            f"training diverged at agent step {step} (loss {loss}); lower "
                            "train.learning_rate or set train.clip_norm"
                        )
                    replay.update_priorities(sample["index"], td)
                    losses.append(loss)
                    qs.append(q)
                    updates += 1
                    if agent.target_update == "hard" and updates % agent.target_update_period == 0:
                        learner.copy_to_target()

                if step - marks["log"] >= cfg.train.log_every_steps or step >= agent.total_steps:
                    marks["log"] = step
                    elapsed = time.perf_counter() - t0
                    rate = (step - steps_at_t0) / max(elapsed, 1e-9)
                    record = {
                        "kind": "step",
                        "step": step,
                        "frames": step * frame_skip,
                        "updates": updates,
                        "episodes": episodes,
                        "epsilon": eps,
                        "loss": float(np.mean(losses)) if losses else None,
                        "q_mean": float(np.mean(qs)) if qs else None,
                        "return_mean_100": float(np.mean(recent)) if recent else None,
                        "agent_steps_per_sec": rate,
                        "frames_per_sec": rate * frame_skip,
                        "replay_size": len(replay),
                    }
                    ctx.logger.write(record, "train_steps", step)
                    history.append(record)
                    losses, qs = [], []
                    bar.set_postfix(
                        {
                            "ret100": f"{record['return_mean_100'] or 0:.1f}",
                            "eps": f"{eps:.2f}",
                            "fps": f"{rate * frame_skip:.0f}",
                        }
                    )
                if cfg.eval.every_steps and step - marks["eval"] >= cfg.eval.every_steps:
                    marks["eval"] = step
                    self._evaluate_during_training(q_fn, step)
                if (
                    cfg.train.checkpoint_every_steps
                    and step - marks["ckpt"] >= cfg.train.checkpoint_every_steps
                ):
                    marks["ckpt"] = step
                    self._sync_counters(step, updates, episodes)
                    self.save()
        finally:
            bar.close()
            venv.close()
        self._sync_counters(step, updates, episodes)
        self.save()
        if cfg.eval.keep_best and self.best_path.exists():
            self.online.load_weights(self.best_path)
            self.target.set_weights(self.online.get_weights())
            log.info(
                "kept the weights of the best evaluation during training (mean return %.1f)",
                self.best_eval,
            )
        return history

    def _sync_counters(self, step: int, updates: int, episodes: int) -> None:
        self.env_steps.assign(step)
        self.updates.assign(updates)
        self.episodes.assign(episodes)

    def _evaluate_during_training(self, q_fn, step: int) -> None:
        cfg = self.cfg
        scores, lengths = run_episodes(
            q_fn,
            cfg.env,
            cfg.eval.episodes_during_training,
            cfg.eval.epsilon,
            cfg.eval.noop_max,
            seed=cfg.train.seed + 10_000 + step,
        )
        mean, std = float(np.mean(scores)), float(np.std(scores))
        self.ctx.logger.write(
            {
                "kind": "eval",
                "step": step,
                "mean_return": mean,
                "std_return": std,
                "episodes": len(scores),
            },
            "eval",
            step,
        )
        log.info(
            "evaluation at %d agent steps: %.1f ± %.1f over %d episodes",
            step,
            mean,
            std,
            len(scores),
        )
        if cfg.eval.keep_best and mean >= self.best_eval:
            self.best_eval = mean
            tmp = self.best_path.with_name("best.tmp.weights.h5")
            self.online.save_weights(tmp)
            tmp.replace(self.best_path)
