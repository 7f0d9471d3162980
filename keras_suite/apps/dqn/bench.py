"""`ksuite bench dqn`: environment frames per second INCLUDING learning, for this app's
training loop and for the straightforward implementation a keras-io example uses, measured
side by side in one process on the same game, preprocessing, network, batch size and
update frequency.

The straightforward loop (written here from its description, not copied): one
environment, one `model.predict` call per action, a replay made of Python lists of stacked
observations (state and next state stored separately), index sampling with
`np.random.choice` and list comprehensions, `model_target.predict` for the targets and an
eager GradientTape step.

This app's loop: N environments acting from one batched `tf.function` forward pass, the
frame-deduplicating replay buffer and a compiled (tf.function) update under the strategy.
Both start measuring after `--warmup` agent steps so that the timed window includes
gradient updates at the configured rate.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from keras_suite import common
from keras_suite.common.runlog import setup_logging


def _parse(argv):
    p = argparse.ArgumentParser(
        prog="ksuite bench dqn",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--env", default="ALE/Breakout-v5", help="environment id (an ALE game or CartPole-v1)"
    )
    p.add_argument(
        "--steps",
        type=int,
        default=1_000,
        help="timed agent steps per implementation (after warm-up)",
    )
    p.add_argument(
        "--warmup", type=int, default=500, help="agent steps gathered before learning starts"
    )
    p.add_argument(
        "--num-envs",
        type=int,
        nargs="+",
        default=[1, 4],
        help="vectorised env counts to measure for this app",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument(
        "--train-every", type=int, default=4, help="one gradient update per this many agent steps"
    )
    p.add_argument("--skip-baseline", action="store_true", help="only measure this app's loop")
    p.add_argument("--out", default="bench-results/dqn.json")
    return p.parse_args(argv)


def _config(args, num_envs: int, total_steps: int):
    from keras_suite.apps.dqn.config import PRESETS

    cfg = PRESETS["default"]() if args.env.startswith("ALE/") else PRESETS["cartpole"]()
    cfg.env.id = args.env
    cfg.env.num_envs = num_envs
    cfg.agent.total_steps = total_steps
    cfg.agent.learning_starts = args.warmup
    cfg.agent.train_every = args.train_every
    # A fixed ε = 0.5 in both implementations: half the actions come from the network.
    cfg.agent.epsilon_start = cfg.agent.epsilon_end = 0.5
    cfg.replay.capacity = max(10_000, 2 * total_steps)
    cfg.train.batch_size = args.batch_size
    cfg.train.log_every_steps = max(num_envs, 50)
    cfg.train.checkpoint_every_steps = 0
    cfg.eval.every_steps = 0
    return cfg


def measure_app_loop(args, num_envs: int) -> dict:
    """The real training loop (DQNTrainer) for warmup + steps; the rate comes from its own
    step records between the first record after learning began and the last one."""
    from keras_suite.apps.dqn import APP
    from keras_suite.apps.dqn.train import DQNTrainer
    from keras_suite.common.runlog import RunLogger, read_jsonl
    from keras_suite.common.training import TrainContext

    tf = common.quiet_import_tensorflow()
    cfg = _config(args, num_envs, args.warmup + args.steps)
    data = APP.datasets(cfg=cfg, artifacts=None)
    with tempfile.TemporaryDirectory() as tmp:
        strategy = tf.distribute.get_strategy()
        state = APP.build_state(cfg=cfg, info=data.info)
        state.build_optimizers()
        logger = RunLogger(tmp)
        ctx = TrainContext(
            app=APP,
            cfg=cfg,
            run_dir=Path(tmp),
            strategy=strategy,
            data=data,
            state=state,
            logger=logger,
        )
        DQNTrainer(ctx).fit()
        logger.close()
        records = [
            r for r in read_jsonl(Path(tmp) / "logs" / "metrics.jsonl") if r.get("kind") == "step"
        ]
    learning = [r for r in records if r["updates"] > 0]
    start, end = learning[0], learning[-1]
    steps = end["step"] - start["step"]
    seconds = end["time"] - start["time"]
    frame_skip = cfg.env.frame_skip if cfg.env.is_atari else 1
    return {
        "implementation": f"ksuite dqn loop, {num_envs} env(s)",
        "num_envs": num_envs,
        "agent_steps": steps,
        "updates": end["updates"] - start["updates"],
        "seconds": seconds,
        "agent_steps_per_sec": steps / seconds,
        "frames_per_sec": steps * frame_skip / seconds,
    }


def measure_straightforward(args) -> dict:
    """One env, model.predict per action, Python-list replay, eager update."""
    import keras

    from keras_suite.apps.dqn.data import make_env
    from keras_suite.apps.dqn.model import build_q_network

    tf = common.quiet_import_tensorflow()
    cfg = _config(args, 1, args.warmup + args.steps)
    env = make_env(cfg.env, training=True, seed=0)
    n_actions = env.action_space.n
    model = build_q_network(
        cfg.agent, env.observation_space.shape, str(env.observation_space.dtype), n_actions, "q"
    )
    model_target = build_q_network(
        cfg.agent,
        env.observation_space.shape,
        str(env.observation_space.dtype),
        n_actions,
        "q_target",
    )
    model_target.set_weights(model.get_weights())
    optimizer = keras.optimizers.Adam(cfg.train.learning_rate, clipnorm=10.0)
    loss_fn = keras.losses.Huber()
    states, next_states, actions, rewards, dones = [], [], [], [], []
    rng = np.random.default_rng(0)
    gamma, epsilon = cfg.agent.gamma, 0.5
    state, _ = env.reset(seed=0)
    updates, t_start = 0, None
    total = args.warmup + args.steps
    for step in range(total):
        if step == args.warmup:
            t_start = time.perf_counter()
        if rng.random() < epsilon:
            action = int(rng.integers(n_actions))
        else:
            q = model.predict(state[None], verbose=0)
            action = int(np.argmax(q[0]))
        next_state, reward, terminated, truncated, _ = env.step(action)
        states.append(state)
        next_states.append(next_state)
        actions.append(action)
        rewards.append(reward)
        dones.append(float(terminated))
        state = next_state
        if terminated or truncated:
            state, _ = env.reset()
        if step >= args.warmup and step % args.train_every == 0:
            idx = rng.choice(len(dones), size=args.batch_size)
            s = np.array([states[i] for i in idx])
            s2 = np.array([next_states[i] for i in idx])
            r = np.array([rewards[i] for i in idx], np.float32)
            d = np.array([dones[i] for i in idx], np.float32)
            a = [actions[i] for i in idx]
            future = model_target.predict(s2, verbose=0)
            target = r + gamma * np.max(future, axis=1) * (1 - d)
            mask = tf.one_hot(a, n_actions)
            with tf.GradientTape() as tape:
                q_values = model(s)
                q_action = tf.reduce_sum(q_values * mask, axis=1)
                loss = loss_fn(target, q_action)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            updates += 1
            if updates % cfg.agent.target_update_period == 0:
                model_target.set_weights(model.get_weights())
    seconds = time.perf_counter() - t_start
    env.close()
    frame_skip = cfg.env.frame_skip if cfg.env.is_atari else 1
    replay_bytes = sum(x.nbytes for x in states) + sum(x.nbytes for x in next_states)
    return {
        "implementation": "straightforward (keras-io style)",
        "num_envs": 1,
        "agent_steps": args.steps,
        "updates": updates,
        "seconds": seconds,
        "agent_steps_per_sec": args.steps / seconds,
        "frames_per_sec": args.steps * frame_skip / seconds,
        "replay_bytes_per_transition": replay_bytes / len(states),
    }


def main(argv=None) -> int:
    args = _parse(argv or [])
    setup_logging("WARNING")
    os.environ.setdefault("KSUITE_PROGRESS", "0")
    tf = common.quiet_import_tensorflow()
    results = []
    if not args.skip_baseline:
        results.append(measure_straightforward(args))
    for n in args.num_envs:
        results.append(measure_app_loop(args, n))
    base = results[0]["frames_per_sec"] if not args.skip_baseline else None
    print(
        f"DQN throughput on {args.env}: frames/s including learning "
        f"(batch {args.batch_size}, one update per {args.train_every} agent steps)"
    )
    for r in results:
        r["speedup_vs_straightforward"] = r["frames_per_sec"] / base if base else None
        ratio = f"  {r['speedup_vs_straightforward']:.1f}x" if base else ""
        print(
            f"  {r['implementation']:<36} {r['frames_per_sec']:9.0f} frames/s "
            f"({r['agent_steps_per_sec']:.0f} agent steps/s, {r['updates']} updates in {r['seconds']:.1f} s){ratio}"
        )
    out = {
        "benchmark": "dqn_throughput",
        "env": args.env,
        "batch_size": args.batch_size,
        "train_every": args.train_every,
        "warmup_steps": args.warmup,
        "timed_steps": args.steps,
        "results": results,
        "cpu_count": os.cpu_count(),
        "tensorflow": tf.__version__,
        "python": platform.python_version(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    tmp.replace(path)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
