"""DQN configuration: environment, agent, replay, evaluation, and the presets.

Numbers in the Atari presets follow the Nature DQN paper (Mnih et al. 2015) scaled to
what 2 CPU cores can afford; `full` is the paper-scale recipe (50M agent steps = 200M
frames) for a machine that has the time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from keras_suite import common  # noqa: F401  (environment set-up before anything imports keras)
from keras_suite.common.config import TrainConfig
from keras_suite.common.errors import UserError


@dataclass
class EnvConfig:
    id: str = "ALE/Breakout-v5"  # any ALE id, or a classic-control id such as CartPole-v1
    num_envs: int = (
        4  # environments stepped together; their actions come from one batched forward pass
    )
    frame_skip: int = 4  # Atari only: repeat each action, max-pool the last two frames
    frame_size: int = 84
    frame_stack: int = 4  # 1 for vector observations
    noop_max: int = 30  # up to this many no-op actions after a reset
    sticky_actions: float = 0.0  # ALE repeat_action_probability (Machado et al. recommend 0.25)
    episodic_life: bool = True  # training only: a lost life ends the episode for bootstrapping
    fire_reset: bool = True  # press FIRE after reset when the game has it (Breakout, ...)
    clip_rewards: bool = True  # training only: sign of the reward
    max_episode_frames: int = 108_000  # 30 minutes of play at 60 Hz, the usual cap

    @property
    def is_atari(self) -> bool:
        return self.id.startswith("ALE/")

    def validate(self) -> None:
        if self.num_envs < 1 or self.frame_stack < 1 or self.frame_skip < 1:
            raise UserError("env.num_envs, env.frame_stack and env.frame_skip must all be >= 1")
        if not 0.0 <= self.sticky_actions <= 1.0:
            raise UserError(
                f"env.sticky_actions={self.sticky_actions} must be a probability in [0, 1]"
            )


@dataclass
class AgentConfig:
    network: str = "nature_cnn"  # nature_cnn | mlp
    hidden_units: list[int] = field(default_factory=lambda: [512])
    dueling: bool = False
    double: bool = False
    n_step: int = 1
    gamma: float = 0.99
    total_steps: int = 250_000  # agent steps summed over all environments (frames = × frame_skip)
    learning_starts: int = 20_000  # replay transitions gathered before the first update
    train_every: int = 4  # one gradient update per this many agent steps
    target_update: str = "hard"  # hard | soft
    target_update_period: int = 2_000  # hard: copy the online net every this many updates
    tau: float = 0.005  # soft: target <- tau * online + (1 - tau) * target after every update
    epsilon_start: float = 1.0
    epsilon_end: float = 0.01
    epsilon_decay_steps: int = 100_000  # linear decay over this many agent steps
    huber_delta: float = 1.0
    adam_epsilon: float = (
        1.5e-4  # the Rainbow value; Adam's default 1e-7 is unstable with Huber TD targets
    )

    def validate(self) -> None:
        if self.network not in ("nature_cnn", "mlp"):
            raise UserError(f"agent.network={self.network!r}: use nature_cnn or mlp")
        if self.target_update not in ("hard", "soft"):
            raise UserError(f"agent.target_update={self.target_update!r}: use hard or soft")
        if self.n_step < 1 or not 0.0 <= self.gamma <= 1.0:
            raise UserError("agent.n_step must be >= 1 and agent.gamma in [0, 1]")
        if self.train_every < 1 or self.total_steps < 0:
            raise UserError("agent.train_every must be >= 1 and agent.total_steps >= 0")


@dataclass
class ReplayConfig:
    capacity: int = 100_000  # transitions; each frame is stored once (see replay.py)
    prioritized: bool = False
    alpha: float = 0.5  # sampling probability ∝ priority^alpha
    beta_start: float = 0.4  # importance weights (N·P)^-beta, beta annealed to 1
    beta_end: float = 1.0
    priority_epsilon: float = 1e-6  # keeps every transition sampleable

    def validate(self) -> None:
        if self.capacity < 2:
            raise UserError("replay.capacity must be >= 2")


@dataclass
class EvalConfig:
    episodes: int = 30
    epsilon: float = 0.05  # the standard Atari protocol
    noop_max: int = 30
    every_steps: int = 0  # 0 = only at the end; else evaluate during training (learning curve)
    episodes_during_training: int = 5
    keep_best: bool = False  # keep the weights with the best during-training evaluation


@dataclass
class DQNConfig:
    env: EnvConfig = field(default_factory=EnvConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=1,
            batch_size=32,
            learning_rate=6.25e-5,
            lr_schedule="constant",
            clip_norm=10.0,
            checkpoint_every_steps=50_000,
            log_every_steps=1_000,
            # float32, not "auto": greedy actions hinge on small gaps between Q-values, which
            # bfloat16's 8-bit mantissa blurs (all our Atari measurements are float32).
            precision="float32",
        )
    )

    def validate(self) -> None:
        if not self.env.is_atari and self.agent.network == "nature_cnn":
            raise UserError(
                f"env.id={self.env.id!r} has vector observations; "
                "use --set agent.network=mlp (or the cartpole preset)"
            )
        if self.env.is_atari and self.agent.network == "mlp":
            raise UserError("Atari frames need agent.network=nature_cnn")
        if self.train.batch_size > self.replay.capacity:
            raise UserError("train.batch_size is larger than replay.capacity")


# ---- presets ----------------------------------------------------------------------


def default() -> DQNConfig:
    """Breakout, 250k agent steps (1M frames): a clearly-above-random curve on 2 CPU cores."""
    return DQNConfig()


def smoke() -> DQNConfig:
    """Seconds: a tiny Atari-shaped run for tests (few steps, small replay)."""
    cfg = DQNConfig()
    cfg.env.id = "ALE/Pong-v5"
    cfg.env.num_envs = 2
    cfg.agent.total_steps = 240
    cfg.agent.learning_starts = 64
    cfg.agent.train_every = 4
    cfg.agent.target_update_period = 10
    cfg.agent.epsilon_decay_steps = 200
    cfg.agent.hidden_units = [32]
    cfg.replay.capacity = 400
    cfg.eval.episodes = 2
    cfg.env.max_episode_frames = 400
    cfg.train.batch_size = 8
    cfg.train.checkpoint_every_steps = 120
    cfg.train.log_every_steps = 40
    return cfg


def full() -> DQNConfig:
    """The paper-scale recipe: 200M frames, 1M replay, Rainbow-style improvements."""
    cfg = rainbow_lite()
    cfg.train.learning_rate = 6.25e-5  # the Rainbow paper's
    cfg.train.checkpoint_every_steps = 250_000
    cfg.eval.every_steps = 1_000_000
    cfg.agent.total_steps = 50_000_000
    cfg.agent.learning_starts = 80_000
    cfg.agent.epsilon_decay_steps = 1_000_000
    cfg.agent.target_update_period = 8_000
    cfg.replay.capacity = 1_000_000
    cfg.eval.episodes = 100
    return cfg


def rainbow_lite() -> DQNConfig:
    """Double + dueling + prioritized replay + 3-step returns (Rainbow without noisy
    nets and the distributional head), sized for about half an hour on 2 CPU cores:
    150k agent steps (600k frames) took Breakout from random (1.7) to 18.0 ± 7.1
    (docs/results/dqn.md has the run)."""
    cfg = DQNConfig()
    cfg.agent.double = True
    cfg.agent.dueling = True
    cfg.agent.n_step = 3
    cfg.agent.total_steps = 150_000
    cfg.agent.learning_starts = 10_000
    cfg.agent.epsilon_decay_steps = 50_000
    cfg.agent.target_update_period = 1_000
    cfg.replay.prioritized = True
    cfg.train.learning_rate = 1e-4
    cfg.train.checkpoint_every_steps = 25_000
    cfg.eval.every_steps = 25_000
    return cfg


def cartpole() -> DQNConfig:
    """CartPole-v1 with an MLP: the quick quality check (target: mean return >= 475)."""
    cfg = DQNConfig()
    cfg.env = EnvConfig(
        id="CartPole-v1",
        num_envs=4,
        frame_stack=1,
        noop_max=0,
        episodic_life=False,
        fire_reset=False,
        clip_rewards=False,
        max_episode_frames=0,
    )
    cfg.agent = AgentConfig(
        network="mlp",
        hidden_units=[256, 256],
        double=True,
        dueling=True,
        n_step=3,
        gamma=0.99,
        total_steps=60_000,
        learning_starts=1_000,
        train_every=1,
        target_update="soft",
        tau=0.01,
        epsilon_start=1.0,
        epsilon_end=0.01,
        epsilon_decay_steps=10_000,
        adam_epsilon=1e-7,
    )
    cfg.replay = ReplayConfig(capacity=50_000, prioritized=False)
    cfg.eval = EvalConfig(
        episodes=100,
        epsilon=0.0,
        noop_max=0,
        every_steps=5_000,
        episodes_during_training=10,
        keep_best=True,
    )
    cfg.train = TrainConfig(
        epochs=1,
        batch_size=64,
        learning_rate=5e-4,
        lr_schedule="constant",
        clip_norm=10.0,
        checkpoint_every_steps=10_000,
        log_every_steps=1_000,
        precision="float32",
    )
    return cfg


PRESETS = {
    "smoke": smoke,
    "default": default,
    "full": full,
    "rainbow-lite": rainbow_lite,
    "cartpole": cartpole,
}
