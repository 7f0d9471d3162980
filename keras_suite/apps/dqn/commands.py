"""`ksuite play dqn RUN_DIR` (or `ksuite play RUN_DIR`): record one episode of a trained
agent as a GIF or MP4.

Top level stays cheap (no TensorFlow import): `ksuite --help` reads COMMANDS."""

from __future__ import annotations

from pathlib import Path

from keras_suite.common.commands import AppCommand
from keras_suite.common.errors import UserError


def _play_arguments(p) -> None:
    p.add_argument("run_dir", help="a finished `ksuite train dqn` run directory")
    p.add_argument(
        "--out", default=None, help="output file (.gif or .mp4); default RUN_DIR/plots/episode.gif"
    )
    p.add_argument(
        "--epsilon",
        type=float,
        default=None,
        help="ε-greedy noise (default: the run's eval.epsilon)",
    )
    p.add_argument(
        "--max-steps",
        type=int,
        default=5_000,
        help="stop the recording after this many agent steps",
    )
    p.add_argument(
        "--fps",
        type=int,
        default=15,
        help="frames per second of the recording (15 = real time with frame skip 4)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the environment (no-op starts, sticky actions) and of ε-greedy",
    )


def _cmd_play(args) -> int:
    from keras_suite.common.commands import check_seed
    from keras_suite.common.runlog import log

    out = Path(args.out) if args.out else Path(args.run_dir) / "plots" / "episode.gif"
    if out.suffix.lower() not in (".gif", ".mp4"):
        raise UserError(f"--out {out}: use a .gif or .mp4 file name")
    if args.fps < 1 or args.max_steps < 1:
        raise UserError("--fps and --max-steps must be at least 1")
    if args.epsilon is not None and not 0 <= args.epsilon <= 1:
        raise UserError(f"--epsilon {args.epsilon}: a probability, from 0 to 1")
    check_seed(args.seed)
    result = play(
        args.run_dir,
        out,
        epsilon=args.epsilon,
        max_steps=args.max_steps,
        fps=args.fps,
        seed=args.seed,
    )
    log.info(
        "recorded %d frames, score %.1f -> %s", result["frames"], result["score"], result["path"]
    )
    print(result["path"])
    return 0


def play(run_dir, out, epsilon=None, max_steps: int = 5_000, fps: int = 30, seed: int = 0) -> dict:
    """Play one evaluation episode (no episodic life, raw score) and write the screen."""
    import numpy as np

    from keras_suite.apps.dqn.data import make_env
    from keras_suite.apps.dqn.evaluate import epsilon_greedy
    from keras_suite.common.run import load_run

    run = load_run(run_dir)
    if run.app.name != "dqn":
        raise UserError(f"{run_dir} is a {run.app.name} run; `ksuite play dqn` needs a dqn run")
    cfg = run.cfg
    eps = cfg.eval.epsilon if epsilon is None else epsilon
    q_fn = run.app.greedy_q_fn(run.state.model)
    env = make_env(
        cfg.env, training=False, seed=seed, noop_max=cfg.eval.noop_max, render_mode="rgb_array"
    )
    rng = np.random.default_rng(seed)
    screens, score = [], 0.0
    try:
        obs, _ = env.reset(seed=seed)
        screens.append(env.render())
        for _ in range(max_steps):
            action = epsilon_greedy(np.asarray(q_fn(obs[None])), eps, rng)[0]
            obs, reward, term, trunc, _ = env.step(int(action))
            score += float(reward)  # evaluation envs do not clip rewards: this is the game score
            screens.append(env.render())
            if term or trunc:
                break
    finally:
        env.close()
    _write_video(screens, Path(out), fps)
    return {"path": str(out), "frames": len(screens), "score": score}


def _write_video(screens, out: Path, fps: int) -> None:
    """Write through a temporary file and rename, so a failure never leaves half a file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp" + out.suffix)
    if out.suffix.lower() == ".gif":
        from PIL import Image

        images = [Image.fromarray(s) for s in screens]
        images[0].save(
            tmp, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0
        )
    else:
        import cv2

        h, w = screens[0].shape[:2]
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if not writer.isOpened():
            raise UserError("OpenCV cannot write MP4 here; use --out episode.gif")
        for s in screens:
            writer.write(cv2.cvtColor(s, cv2.COLOR_RGB2BGR))
        writer.release()
    tmp.replace(out)


COMMANDS = [
    AppCommand(
        "play", "record an episode of a trained DQN agent (GIF or MP4)", _play_arguments, _cmd_play
    )
]
