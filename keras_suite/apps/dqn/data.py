"""Making environments (Atari with the standard preprocessing, or classic control) and
stepping several of them together so the agent picks all their actions in one batched
forward pass."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from keras_suite import common  # noqa: F401
from keras_suite.apps.dqn.wrappers import FrameStack, RecordGameScore, atari_wrappers
from keras_suite.common.errors import UserError


def _register_ale() -> None:
    # gymnasium's registry is the state; registering twice would only warn.
    if not any(name.startswith("ALE/") for name in gym.registry):
        import ale_py

        gym.register_envs(ale_py)


def make_env(
    env_cfg,
    training: bool,
    seed: int | None = None,
    noop_max: int | None = None,
    render_mode: str | None = None,
):
    """One environment whose observations are what the Q-network takes (one sample)."""
    noop_max = env_cfg.noop_max if noop_max is None else noop_max
    try:
        if env_cfg.is_atari:
            _register_ale()
            kwargs = (
                {"max_num_frames_per_episode": env_cfg.max_episode_frames}
                if env_cfg.max_episode_frames
                else {}
            )
            env = gym.make(
                env_cfg.id,
                frameskip=1,
                repeat_action_probability=env_cfg.sticky_actions,
                obs_type="grayscale",
                full_action_space=False,
                render_mode=render_mode,
                **kwargs,
            )
        else:
            env = gym.make(env_cfg.id, render_mode=render_mode)
    except gym.error.Error as exc:
        raise UserError(
            f"cannot make environment env.id={env_cfg.id!r} ({exc}); use an ALE id "
            "such as ALE/Breakout-v5 or a classic-control id such as CartPole-v1"
        ) from None
    if env_cfg.is_atari:
        env = atari_wrappers(env, env_cfg, training, noop_max, seed)
    else:
        if not isinstance(env.action_space, gym.spaces.Discrete):
            raise UserError(
                f"{env_cfg.id} has a continuous action space; DQN needs discrete actions"
            )
        env = RecordGameScore(env)
    if env_cfg.frame_stack > 1:
        env = FrameStack(env, env_cfg.frame_stack)
    return env


def env_info(env_cfg) -> dict:
    """What the model and exports need to know about the environment."""
    env = make_env(env_cfg, training=False, seed=0, noop_max=0)
    try:
        space = env.observation_space
        unwrapped = env.unwrapped
        meanings = (
            unwrapped.get_action_meanings()
            if hasattr(unwrapped, "get_action_meanings")
            else [f"action_{i}" for i in range(env.action_space.n)]
        )
        return {
            "source": f"gymnasium:{env_cfg.id}",
            "split_sizes": {},  # an environment, not a dataset: nothing to split
            "env_id": env_cfg.id,
            "num_actions": int(env.action_space.n),
            "action_meanings": list(meanings),
            "obs_shape": list(space.shape),
            "obs_dtype": str(space.dtype),
            "frame_stack": env_cfg.frame_stack,
            "frame_skip": env_cfg.frame_skip if env_cfg.is_atari else 1,
            "is_atari": env_cfg.is_atari,
        }
    finally:
        env.close()


class VectorEnv:
    """N environments stepped in lockstep; an ended episode is reset at once.

    `step` returns the observation the agent acts on next (the reset one for an env whose
    episode just ended) and, for those envs, the final observation of the finished
    episode in `final_obs[i]` (the replay buffer needs it: truncated episodes bootstrap
    from it)."""

    def __init__(self, env_fns):
        self.envs = [fn() for fn in env_fns]
        self.num_envs = len(self.envs)

    def reset(self, seed: int | None = None):
        obs = []
        for i, env in enumerate(self.envs):
            o, _ = env.reset(seed=None if seed is None else seed + 1_000 * i)
            obs.append(o)
        return np.stack(obs)

    def step(self, actions):
        next_obs, rewards, terminated, truncated, final_obs, infos = [], [], [], [], [], []
        for env, action in zip(self.envs, actions):
            o, r, term, trunc, info = env.step(int(action))
            final = None
            if term or trunc:
                final = o
                o, _ = env.reset()
            next_obs.append(o)
            rewards.append(r)
            terminated.append(term)
            truncated.append(trunc)
            final_obs.append(final)
            infos.append(info)
        return (
            np.stack(next_obs),
            np.asarray(rewards, np.float32),
            np.asarray(terminated),
            np.asarray(truncated),
            final_obs,
            infos,
        )

    def close(self):
        for env in self.envs:
            env.close()
