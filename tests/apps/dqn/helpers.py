"""A tiny fake Atari environment whose frames, rewards and lives are known in advance,
so the preprocessing wrappers can be checked against hand-computed values."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class FakeAtari(gym.Env):
    """Emulator frame t (t = frames since reset, starting at 0) is filled with the value t,
    except a 'sprite' pixel block drawn with value 200 on odd frames only (flicker).
    The reward of frame t is t. A life is lost at frames in `life_loss_at`; the game ends
    at frame `game_over_at`. Every action taken is recorded in `actions`."""

    metadata = {"render_modes": []}

    def __init__(self, shape=(12, 10), life_loss_at=(), game_over_at=1000, lives=3):
        self.shape = shape
        self.observation_space = gym.spaces.Box(0, 255, shape, np.uint8)
        self.action_space = gym.spaces.Discrete(4)
        self.life_loss_at = set(life_loss_at)
        self.game_over_at = game_over_at
        self.start_lives = lives
        self.actions: list[int] = []
        self.resets = 0

    def get_action_meanings(self):
        return ["NOOP", "FIRE", "RIGHT", "LEFT"]

    def frame(self, t: int) -> np.ndarray:
        f = np.full(self.shape, t % 256, np.uint8)
        if t % 2 == 1:
            f[:2, :2] = 200
        return f

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.lives = self.start_lives
        self.resets += 1
        return self.frame(0), {"lives": self.lives}

    def step(self, action):
        self.actions.append(int(action))
        self.t += 1
        if self.t in self.life_loss_at:
            self.lives -= 1
        terminated = self.t >= self.game_over_at
        return self.frame(self.t), float(self.t), terminated, False, {"lives": self.lives}
