"""The standard evaluation protocol and the learning-curve plot.

Protocol (Mnih et al. 2015): the full game (no episodic life), raw unclipped score,
up to 30 no-op actions at the start of each episode, ε = 0.05 greedy, N episodes,
reported as mean ± std and as a human-normalised score
100 · (agent − random) / (human − random) with the published random and human scores.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from keras_suite import common  # noqa: F401
from keras_suite.apps.dqn.data import VectorEnv, make_env

# (random, human) scores as tabulated in van Hasselt et al. 2016 (Double DQN) and
# Wang et al. 2016 (Dueling DQN), the reference the human-normalised score is usually
# computed against.
BASELINES = {
    "Pong": (-20.7, 14.6),
    "Breakout": (1.7, 30.5),
    "SpaceInvaders": (148.0, 1668.7),
    "Seaquest": (68.4, 42054.7),
    "BeamRider": (363.9, 16926.5),
    "Enduro": (0.0, 860.5),
    "Qbert": (163.9, 13455.0),
    "Freeway": (0.0, 29.6),
}


def game_name(env_id: str) -> str:
    """'ALE/Breakout-v5' -> 'Breakout'."""
    return env_id.split("/")[-1].split("-")[0].replace("NoFrameskip", "")


def human_normalized(env_id: str, score: float):
    base = BASELINES.get(game_name(env_id))
    if base is None:
        return None
    random_score, human_score = base
    return 100.0 * (score - random_score) / (human_score - random_score)


def epsilon_greedy(q_values: np.ndarray, epsilon: float, rng: np.random.Generator) -> np.ndarray:
    greedy = np.argmax(q_values, axis=-1)
    explore = rng.random(len(greedy)) < epsilon
    random_actions = rng.integers(0, q_values.shape[-1], len(greedy))
    return np.where(explore, random_actions, greedy).astype(np.int64)


def run_episodes(
    q_fn,
    env_cfg,
    episodes: int,
    epsilon: float,
    noop_max: int,
    seed: int,
    num_envs: int = 0,
    progress_bar=None,
):
    """Play `episodes` full games with ε-greedy actions from `q_fn(obs_batch) -> Q`.

    Each of the parallel envs plays a fixed quota of episodes, so short episodes are not
    over-represented (taking the first N to finish would bias the mean down)."""
    rng = np.random.default_rng(seed)
    n = max(1, min(episodes, num_envs or env_cfg.num_envs))
    quota = [episodes // n + (i < episodes % n) for i in range(n)]
    venv = VectorEnv(
        [
            lambda i=i: make_env(env_cfg, training=False, seed=seed + i, noop_max=noop_max)
            for i in range(n)
        ]
    )
    scores, lengths = [], []
    try:
        obs = venv.reset(seed=seed)
        active = [q > 0 for q in quota]
        while any(active):
            idx = [i for i in range(n) if active[i]]
            actions = np.zeros(n, np.int64)
            actions[idx] = epsilon_greedy(np.asarray(q_fn(obs[idx])), epsilon, rng)
            for i in idx:
                o, _, term, trunc, info = venv.envs[i].step(int(actions[i]))
                if term or trunc:
                    scores.append(float(info["game_score"]))
                    lengths.append(int(info["game_frames"]))
                    quota[i] -= 1
                    if progress_bar is not None:
                        progress_bar.update(1)
                    if quota[i] == 0:
                        active[i] = False
                        continue
                    o, _ = venv.envs[i].reset()
                obs[i] = o
    finally:
        venv.close()
    return scores, lengths


def summarize(env_id: str, scores, lengths, epsilon: float) -> dict:
    mean = float(np.mean(scores)) if scores else math.nan
    base = BASELINES.get(game_name(env_id))
    return {
        "env_id": env_id,
        "episodes": len(scores),
        "epsilon": epsilon,
        "mean_return": mean,
        "std_return": float(np.std(scores)) if scores else math.nan,
        "min_return": float(np.min(scores)) if scores else math.nan,
        "max_return": float(np.max(scores)) if scores else math.nan,
        "mean_length_frames": float(np.mean(lengths)) if lengths else math.nan,
        "human_normalized_percent": human_normalized(env_id, mean),
        "random_score": base[0] if base else None,
        "human_score": base[1] if base else None,
    }


def plot_learning_curve(
    records: list[dict], out_path, title: str, frames_per_step: int, final: dict | None = None
) -> Path | None:
    """Training-episode returns (and their running mean) and evaluation means against
    environment frames."""
    episodes = [r for r in records if r.get("kind") == "episode"]
    evals = [r for r in records if r.get("kind") == "eval"]
    if not episodes and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    if episodes:
        x = np.array([r["step"] * frames_per_step for r in episodes], float)
        y = np.array([r["return"] for r in episodes], float)
        ax.plot(x, y, ".", ms=2, alpha=0.35, color="tab:blue", label="training episode (ε-greedy)")
        window = max(1, min(100, len(y) // 10))
        running = np.convolve(y, np.ones(window) / window, mode="valid")
        ax.plot(x[window - 1 :], running, color="tab:blue", lw=2, label=f"running mean ({window})")
    if evals:
        ex = np.array([r["step"] * frames_per_step for r in evals], float)
        ey = np.array([r["mean_return"] for r in evals], float)
        es = np.array([r["std_return"] for r in evals], float)
        ax.errorbar(
            ex, ey, yerr=es, fmt="o-", color="tab:orange", capsize=3, label="evaluation mean ± std"
        )
    if final and final.get("random_score") is not None:
        ax.axhline(final["random_score"], color="grey", ls="--", lw=1, label="random play")
    ax.set_xlabel("environment frames")
    ax.set_ylabel("episode return (raw score)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out_path)
    return out_path


__all__ = [
    "BASELINES",
    "run_episodes",
    "summarize",
    "plot_learning_curve",
    "human_normalized",
    "epsilon_greedy",
    "game_name",
]
