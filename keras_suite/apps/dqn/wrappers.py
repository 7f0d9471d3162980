"""The standard Atari preprocessing as small gymnasium wrappers, one idea each.

Order (innermost first), as in the Nature DQN paper and the baselines that followed:

    ALE (frameskip=1, greyscale) -> RecordGameScore -> NoopReset -> MaxAndSkip
    -> EpisodicLife (training) -> FireReset -> ResizeFrame 84x84 -> ClipReward (training)

Frame stacking is done by `envs.VectorEnv` (and `FrameStack` below for a single env),
because the replay buffer stores single frames and stacks them when it samples.

The wrappers read lives from `info["lives"]` and action names from
`env.unwrapped.get_action_meanings()`, so a tiny fake env can test them frame by frame.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from keras_suite import common  # noqa: F401


class RecordGameScore(gym.Wrapper):
    """Adds the raw score and length (in frames) of the whole game to `info` when it ends.

    Sits right above the emulator, so it sees every frame's unclipped reward and only the
    real game over (not the lost lives EpisodicLife turns into episode ends)."""

    def reset(self, **kwargs):
        self._score, self._frames = 0.0, 0
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._score += float(reward)
        self._frames += 1
        if terminated or truncated:
            info = dict(info, game_score=self._score, game_frames=self._frames)
        return obs, reward, terminated, truncated, info


class NoopReset(gym.Wrapper):
    """After a reset take a random number (1..noop_max) of no-op actions, so that episodes
    start in different states even with a deterministic emulator."""

    def __init__(self, env, noop_max: int = 30, seed: int | None = None):
        super().__init__(env)
        self.noop_max = noop_max
        self.rng = np.random.default_rng(seed)
        meanings = env.unwrapped.get_action_meanings()
        if meanings[0] != "NOOP":
            raise ValueError(f"action 0 is {meanings[0]}, not NOOP")

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        noops = int(self.rng.integers(1, self.noop_max + 1)) if self.noop_max > 0 else 0
        for _ in range(noops):
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset()
        return obs, info


class MaxAndSkip(gym.Wrapper):
    """Repeat the action `skip` times, sum the rewards, and return the pixel-wise maximum
    of the last two frames (Atari sprites flicker: some are drawn every other frame)."""

    def __init__(self, env, skip: int = 4):
        super().__init__(env)
        self.skip = skip

    def step(self, action):
        total, last_two = 0.0, []
        terminated = truncated = False
        info = {}
        for _ in range(self.skip):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            last_two = (last_two + [obs])[-2:]
            if terminated or truncated:
                break
        frame = np.maximum(last_two[0], last_two[-1]) if len(last_two) == 2 else last_two[0]
        return frame, total, terminated, truncated, info


class FireReset(gym.Wrapper):
    """Press FIRE after a reset in games that wait for it (Breakout would otherwise sit
    still until the agent happens to fire)."""

    def __init__(self, env):
        super().__init__(env)
        meanings = env.unwrapped.get_action_meanings()
        self.fire = meanings.index("FIRE")

    def reset(self, **kwargs):
        self.env.reset(**kwargs)
        obs, _, terminated, truncated, info = self.env.step(self.fire)
        if terminated or truncated:
            obs, info = self.env.reset(**kwargs)
        return obs, info


class EpisodicLife(gym.Wrapper):
    """For training: a lost life ends the episode (no bootstrapping across it), but the
    game goes on; only a real game over resets the emulator."""

    def __init__(self, env):
        super().__init__(env)
        self.lives = 0
        self.game_over = True

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = terminated or truncated
        lives = int(info.get("lives", 0))
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs):
        if self.game_over:
            obs, info = self.env.reset(**kwargs)
        else:  # continue the same game after a lost life
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        self.game_over = False
        self.lives = int(info.get("lives", 0))
        return obs, info


class ResizeFrame(gym.ObservationWrapper):
    """Greyscale (if the frame is RGB) and area-resize to size×size uint8."""

    def __init__(self, env, size: int = 84):
        super().__init__(env)
        self.size = size
        self.observation_space = gym.spaces.Box(0, 255, (size, size), np.uint8)

    def observation(self, frame):
        import cv2

        if frame.ndim == 3:
            frame = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        return cv2.resize(frame, (self.size, self.size), interpolation=cv2.INTER_AREA)


class ClipReward(gym.RewardWrapper):
    """For training: the sign of the reward, so one learning rate suits every game."""

    def reward(self, reward):
        return float(np.sign(reward))


class FrameStack(gym.ObservationWrapper):
    """The last `k` frames on a new last axis (H, W, k); a reset fills it with the first
    frame. Used for evaluation/play of a single env; training stacks in VectorEnv."""

    def __init__(self, env, k: int = 4):
        super().__init__(env)
        self.k = k
        low = np.repeat(env.observation_space.low[..., None], k, axis=-1)
        high = np.repeat(env.observation_space.high[..., None], k, axis=-1)
        self.observation_space = gym.spaces.Box(low, high, dtype=env.observation_space.dtype)
        self._frames = None

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._frames = np.repeat(obs[..., None], self.k, axis=-1)
        return self._frames.copy(), info

    def observation(self, frame):
        self._frames = np.concatenate([self._frames[..., 1:], frame[..., None]], axis=-1)
        return self._frames.copy()

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self.observation(obs), reward, terminated, truncated, info


def atari_wrappers(env, cfg_env, training: bool, noop_max: int, seed: int | None):
    """Wrap a frameskip=1 ALE env with the standard preprocessing (single frames out)."""
    env = RecordGameScore(env)
    if noop_max > 0:
        env = NoopReset(env, noop_max, seed)
    env = MaxAndSkip(env, cfg_env.frame_skip)
    if training and cfg_env.episodic_life:
        env = EpisodicLife(env)
    # Outside EpisodicLife, so FIRE is also pressed to serve the ball after a lost life.
    if cfg_env.fire_reset and "FIRE" in env.unwrapped.get_action_meanings():
        env = FireReset(env)
    env = ResizeFrame(env, cfg_env.frame_size)
    if training and cfg_env.clip_rewards:
        env = ClipReward(env)
    return env
