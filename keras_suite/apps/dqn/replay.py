"""Experience replay that stores every frame once, with n-step returns and optional
prioritized sampling (Schaul et al. 2016) through a sum-tree.

Storage. Each environment writes its own ring of slots. A slot holds the NEWEST frame of
the observation the agent acted on, the action, the reward and whether the episode
terminated after it; stacked observations (4 frames) are rebuilt at sampling time by
walking back through the ring, repeating an episode's first frame where the stack would
reach into the previous episode. When an episode ends, one extra slot holds its final
frame (`last`), so time-limit truncations can still bootstrap from the real next state.
Memory is therefore one 84x84 uint8 frame (7 KB) per transition instead of 2 x 4 frames
(56 KB) for a naive (s, a, r, s') store: 1M transitions take ~7 GB instead of ~56 GB.

Validity. Slot i can be sampled once slots i..i+n exist (or its episode ended earlier)
and while the frames its stack looks back on have not been overwritten. Invalid slots
have priority 0 in the sum-tree, so one sampler serves uniform (all priorities 1) and
prioritized replay.
"""

from __future__ import annotations

import numpy as np

from keras_suite import common  # noqa: F401


class SumTree:
    """A binary tree whose leaves are priorities and whose inner nodes are sums, so that
    sampling ∝ priority and updating one priority both cost O(log N). Vectorised over a
    batch of indices with NumPy (one array operation per tree level)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.leaves = 1
        while self.leaves < capacity:
            self.leaves *= 2
        self.tree = np.zeros(2 * self.leaves, np.float64)

    @property
    def total(self) -> float:
        return float(self.tree[1])

    def get(self, indices) -> np.ndarray:
        return self.tree[np.asarray(indices) + self.leaves]

    def update(self, indices, priorities) -> None:
        nodes = np.asarray(indices, np.int64) + self.leaves
        self.tree[nodes] = priorities
        nodes = np.unique(nodes // 2)
        while nodes[0] >= 1:
            self.tree[nodes] = self.tree[2 * nodes] + self.tree[2 * nodes + 1]
            if nodes[0] == 1:
                break
            nodes = np.unique(nodes // 2)

    def find(self, values) -> np.ndarray:
        """Leaf index whose prefix-sum interval [sum before it, sum through it) holds each value."""
        values = np.array(values, np.float64)
        nodes = np.ones(len(values), np.int64)
        while nodes[0] < self.leaves:
            left = 2 * nodes
            go_right = values >= self.tree[left]
            values = np.where(go_right, values - self.tree[left], values)
            nodes = left + go_right
        return nodes - self.leaves

    def sample(
        self, batch_size: int, rng: np.random.Generator, stratified: bool = True
    ) -> np.ndarray:
        """Indices drawn ∝ priority; stratified = one draw in each of batch_size equal
        segments of the total (lower variance, as in the PER paper)."""
        total = self.total
        if stratified:
            values = (np.arange(batch_size) + rng.random(batch_size)) * (total / batch_size)
        else:
            values = rng.random(batch_size) * total
        indices = self.find(np.minimum(values, np.nextafter(total, 0)))
        # Rounding can land on an empty leaf at a boundary; redraw those.
        for _ in range(8):
            empty = self.get(indices) <= 0
            if not empty.any():
                break
            indices[empty] = self.find(rng.random(int(empty.sum())) * total)
        return indices


class ReplayBuffer:
    """Per-environment rings of single frames; see the module docstring."""

    def __init__(
        self,
        capacity: int,
        num_envs: int,
        frame_shape,
        frame_dtype,
        stack: int,
        n_step: int,
        gamma: float,
        prioritized: bool = False,
        alpha: float = 0.5,
        priority_epsilon: float = 1e-6,
    ):
        self.ring = capacity // num_envs  # slots per environment
        if self.ring <= n_step + stack + 1:
            raise ValueError(
                f"replay capacity {capacity} is too small for {num_envs} envs, "
                f"n_step {n_step} and a stack of {stack}"
            )
        self.num_envs, self.stack, self.n_step, self.gamma = num_envs, stack, n_step, gamma
        self.prioritized, self.alpha, self.priority_epsilon = prioritized, alpha, priority_epsilon
        shape = (num_envs, self.ring)
        self.frames = np.zeros(shape + tuple(frame_shape), frame_dtype)
        self.actions = np.zeros(shape, np.int32)
        self.rewards = np.zeros(shape, np.float32)
        self.terminal = np.zeros(shape, bool)  # the episode terminated after this slot's action
        self.first = np.zeros(shape, bool)  # first observation of an episode
        self.last = np.zeros(shape, bool)  # final observation of an episode (no action)
        self.valid = np.zeros(shape, bool)
        self.written = np.zeros(num_envs, np.int64)  # slots ever written per env
        self.tree = SumTree(num_envs * self.ring)
        self.max_priority = 1.0
        self.num_valid = 0

    # ---- sizes ------------------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        arrays = (
            self.frames,
            self.actions,
            self.rewards,
            self.terminal,
            self.first,
            self.last,
            self.valid,
            self.tree.tree,
        )
        return int(sum(a.nbytes for a in arrays))

    def __len__(self) -> int:
        return self.num_valid

    # ---- writing ----------------------------------------------------------------------
    def _write(self, env: int, frame, action, reward, terminal, first, last) -> int:
        t = int(self.written[env])
        pos = t % self.ring
        # Slots whose stacks look back on the overwritten slot stop being sampleable.
        if t >= self.ring:
            for old in range(t - self.ring, t - self.ring + self.stack):
                self._set_valid(env, old % self.ring, False)
        self.frames[env, pos] = frame
        self.actions[env, pos] = action
        self.rewards[env, pos] = reward
        self.terminal[env, pos] = terminal
        self.first[env, pos] = first
        self.last[env, pos] = last
        self.written[env] = t + 1
        return t

    def _set_valid(self, env: int, pos: int, valid: bool) -> None:
        if self.valid[env, pos] == valid:
            return
        self.valid[env, pos] = valid
        self.num_valid += 1 if valid else -1
        self.tree.update([env * self.ring + pos], [self.max_priority if valid else 0.0])

    def _validate(self, env: int, t: int) -> None:
        """Make absolute slot t of this env sampleable if it holds an action and its stack
        still lies in the ring."""
        newest = int(self.written[env]) - 1
        if t < 0 or t <= newest - self.ring + self.stack - 1:
            return
        pos = t % self.ring
        if not self.last[env, pos]:
            self._set_valid(env, pos, True)

    def add(self, env: int, frame, action: int, reward: float, terminal: bool, first: bool) -> None:
        """One step of one environment: the frame acted on, what was done, what followed."""
        t = self._write(env, frame, action, reward, terminal, first, False)
        self._validate(env, t - self.n_step)

    def add_last(self, env: int, frame) -> None:
        """The final frame of an episode; completes the n-step windows still open in it."""
        t = self._write(env, frame, 0, 0.0, False, False, True)
        for back in range(1, self.n_step + 1):
            if t - back < 0 or self.last[env, (t - back) % self.ring]:
                break
            self._validate(env, t - back)

    # ---- sampling -----------------------------------------------------------------------
    def _stacked(self, env, pos) -> np.ndarray:
        """Observations ending at the given slots: (B, *frame_shape, stack), or the frame
        itself when stack == 1."""
        if self.stack == 1:
            return self.frames[env, pos]
        parts = [self.frames[env, pos]]
        cur = pos
        for _ in range(self.stack - 1):
            cur = np.where(self.first[env, cur], cur, (cur - 1) % self.ring)
            parts.append(self.frames[env, cur])
        return np.stack(parts[::-1], axis=-1)

    def n_step_targets(self, env, pos):
        """For start slots: (discounted n-step reward sum, slot of the bootstrap state,
        discount to apply to its value: gamma^k, or 0 if the episode terminated)."""
        returns = np.zeros(len(pos), np.float32)
        discount = np.zeros(len(pos), np.float32)
        next_pos = (pos + self.n_step) % self.ring
        alive = np.ones(len(pos), bool)
        for k in range(self.n_step):
            slot = (pos + k) % self.ring
            returns += alive * (self.gamma**k) * self.rewards[env, slot]
            ended = alive & self.terminal[env, slot]
            alive &= ~ended  # terminated: discount stays 0
            following = (slot + 1) % self.ring
            truncated = alive & self.last[env, following]
            next_pos = np.where(truncated, following, next_pos)
            discount = np.where(truncated, self.gamma ** (k + 1), discount)
            alive &= ~truncated
        discount = np.where(alive, self.gamma**self.n_step, discount)
        return returns, next_pos, discount

    def sample(self, batch_size: int, rng: np.random.Generator, beta: float = 1.0) -> dict:
        if self.num_valid == 0:
            raise ValueError("the replay buffer has no sampleable transitions yet")
        index = (
            self.tree.sample(batch_size, rng)
            if self.prioritized
            else self._uniform(batch_size, rng)
        )
        env, pos = index // self.ring, index % self.ring
        returns, next_pos, discount = self.n_step_targets(env, pos)
        if self.prioritized:
            probs = self.tree.get(index) / self.tree.total
            weights = (self.num_valid * probs) ** (-beta)
            weights = (weights / weights.max()).astype(np.float32)
        else:
            weights = np.ones(batch_size, np.float32)
        return {
            "obs": self._stacked(env, pos),
            "actions": self.actions[env, pos],
            "returns": returns,
            "discounts": discount,
            "next_obs": self._stacked(env, next_pos),
            "weights": weights,
            "index": index,
        }

    def _uniform(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        # Every valid leaf has priority 1 in uniform mode, so the sum-tree draws uniformly.
        return self.tree.sample(batch_size, rng, stratified=False)

    def update_priorities(self, index, td_errors) -> None:
        if not self.prioritized:
            return
        priorities = (np.abs(td_errors) + self.priority_epsilon) ** self.alpha
        env, pos = index // self.ring, index % self.ring
        keep = self.valid[env, pos]  # a slot overwritten since it was sampled stays at 0
        self.tree.update(index[keep], priorities[keep])
        self.max_priority = max(self.max_priority, float(priorities.max()))
