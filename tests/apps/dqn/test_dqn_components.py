"""DQN building blocks against hand-computed values: Atari preprocessing wrappers on a
fake emulator with known frames, the sum-tree, the frame-deduplicating replay buffer
(stacking, n-step returns, validity, importance weights), and the Q-learning targets."""

from __future__ import annotations

import numpy as np
import pytest

from keras_suite import common  # noqa: F401
from keras_suite.apps.dqn import wrappers as W
from keras_suite.apps.dqn.config import cartpole, smoke
from keras_suite.apps.dqn.replay import ReplayBuffer, SumTree
from tests.apps.dqn.helpers import FakeAtari

# ---- preprocessing wrappers ----------------------------------------------------------


def test_max_and_skip_sums_rewards_and_maxes_last_two_frames():
    env = W.MaxAndSkip(FakeAtari(), skip=4)
    env.reset()
    frame, reward, term, trunc, _ = env.step(2)
    # emulator frames 1..4: rewards 1+2+3+4; max(frame 3, frame 4): background 4, sprite 200 from frame 3
    assert reward == 10.0 and not term
    expected = np.full((12, 10), 4, np.uint8)
    expected[:2, :2] = 200
    np.testing.assert_array_equal(frame, expected)
    frame, reward, _, _, _ = env.step(2)
    assert reward == 5 + 6 + 7 + 8 and frame[5, 5] == 8 and frame[0, 0] == 200
    assert env.unwrapped.actions == [2] * 8


def test_max_and_skip_stops_at_game_over():
    env = W.MaxAndSkip(FakeAtari(game_over_at=6), skip=4)
    env.reset()
    env.step(0)
    frame, reward, term, _, _ = env.step(0)
    assert term and reward == 5 + 6 and frame[5, 5] == 6 and frame[0, 0] == 200
    assert len(env.unwrapped.actions) == 6


def test_noop_reset_takes_seeded_number_of_noops():
    env = W.NoopReset(FakeAtari(), noop_max=5, seed=0)
    obs, _ = env.reset()
    expected = int(np.random.default_rng(0).integers(1, 6))
    assert env.unwrapped.actions == [0] * expected
    assert obs[5, 5] == expected


def test_fire_reset_presses_fire():
    env = W.FireReset(FakeAtari())
    obs, _ = env.reset()
    assert env.unwrapped.actions == [1] and obs[5, 5] == 1


def test_episodic_life_ends_episode_on_life_loss_without_resetting_game():
    fake = FakeAtari(life_loss_at=(2,), game_over_at=5)
    env = W.RecordGameScore(fake)
    env = W.EpisodicLife(env)
    env.reset()
    assert env.step(0)[2] is False
    _, _, term, _, info = env.step(0)
    assert term and "game_score" not in info  # a life, not the game
    obs, _ = env.reset()
    assert fake.resets == 1 and obs[5, 5] == 3  # continued with one no-op, not reset
    env.step(0)
    _, _, term, _, info = env.step(0)
    assert term and info["game_score"] == 1 + 2 + 3 + 4 + 5 and info["game_frames"] == 5
    obs, _ = env.reset()
    assert fake.resets == 2 and obs[5, 5] == 0


def test_resize_is_block_average_for_exact_downscale():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 60, (84, 84)).astype(np.uint8) * 4
    i, j = np.indices((168, 168))
    frame = (base[i // 2, j // 2] + 4 * (i % 2) + 2 * (j % 2)).astype(np.uint8)
    out = W.ResizeFrame(FakeAtari(shape=(168, 168)), 84).observation(frame)
    assert out.shape == (84, 84) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, base + 3)  # mean of 0, 2, 4, 6 offsets


def test_clip_reward_is_sign():
    env = W.ClipReward(FakeAtari())
    assert [env.reward(r) for r in (5.0, -3.0, 0.0)] == [1.0, -1.0, 0.0]


def test_frame_stack_fills_with_first_frame_then_shifts():
    env = W.FrameStack(FakeAtari(shape=(2, 3)), k=4)
    obs, _ = env.reset()
    assert obs.shape == (2, 3, 4) and (obs == 0).all()
    obs, *_ = env.step(0)
    obs, *_ = env.step(0)
    np.testing.assert_array_equal(obs[0, 0], [0, 0, 200, 2])  # frames 0, 0, 1 (sprite), 2
    np.testing.assert_array_equal(obs[1, 2], [0, 0, 1, 2])


def test_full_atari_chain_on_fake_env():
    cfg = smoke().env
    cfg.noop_max = 0
    env = W.atari_wrappers(FakeAtari(shape=(168, 168)), cfg, training=True, noop_max=0, seed=0)
    obs, _ = env.reset()
    assert env.unwrapped.actions == [1] * 4  # FIRE on reset, repeated by the frame skip
    obs, reward, *_ = env.step(3)
    # emulator frames 5..8: clipped reward, max(frame 7, frame 8) area-resized to 84x84
    assert reward == 1.0 and obs.shape == (84, 84)
    assert obs[40, 40] == 8 and obs[0, 0] == 200


# ---- sum-tree ----------------------------------------------------------------------


def test_sum_tree_prefix_search_and_updates():
    tree = SumTree(5)  # not a power of two on purpose
    tree.update([0, 1, 2, 3], [1.0, 2.0, 3.0, 4.0])
    assert tree.total == 10.0
    np.testing.assert_array_equal(
        tree.find([0, 0.99, 1, 2.99, 3, 5.99, 6, 9.99]), [0, 0, 1, 1, 2, 2, 3, 3]
    )
    tree.update([1, 4], [0.0, 5.0])
    assert tree.total == 13.0
    np.testing.assert_array_equal(tree.find([0.5, 1.0, 3.9, 4.0, 8.0, 12.9]), [0, 2, 2, 3, 4, 4])


def test_sum_tree_sampling_is_proportional():
    tree = SumTree(4)
    tree.update([0, 1, 2, 3], [1.0, 0.0, 3.0, 6.0])
    idx = tree.sample(20_000, np.random.default_rng(0), stratified=False)
    freq = np.bincount(idx, minlength=4) / len(idx)
    np.testing.assert_allclose(freq, [0.1, 0.0, 0.3, 0.6], atol=0.015)
    strat = tree.sample(10, np.random.default_rng(1))  # one draw per tenth of the total
    np.testing.assert_array_equal(strat, [0, 2, 2, 2, 3, 3, 3, 3, 3, 3])


# ---- replay buffer -----------------------------------------------------------------


def _vector_buffer(**kw):
    args = dict(
        capacity=20,
        num_envs=1,
        frame_shape=(2,),
        frame_dtype=np.float32,
        stack=1,
        n_step=3,
        gamma=0.5,
    )
    args.update(kw)
    return ReplayBuffer(**args)


def test_n_step_returns_with_termination_and_truncation():
    buf = _vector_buffer()
    # episode 1: slots 0..4, rewards 1..5, terminated after slot 4's action; slot 5 = final frame
    for t in range(5):
        buf.add(0, [t, t], action=t % 2, reward=t + 1, terminal=(t == 4), first=(t == 0))
        if t == 2:
            assert not buf.valid[0, 0]  # slot 0 needs slots 1..3 first
    assert buf.valid[0, 0] and buf.valid[0, 1] and not buf.valid[0, 2]
    buf.add_last(0, [5, 5])
    # episode 2: slots 6, 7 with reward 1, truncated (time limit) with final frame in slot 8
    buf.add(0, [6, 6], 0, 1.0, False, True)
    buf.add(0, [7, 7], 1, 1.0, False, False)
    buf.add_last(0, [8, 8])
    pos = np.array([0, 2, 3, 4, 6, 7])
    returns, next_pos, disc = buf.n_step_targets(np.zeros(6, np.int64), pos)
    np.testing.assert_allclose(
        returns, [1 + 0.5 * 2 + 0.25 * 3, 3 + 0.5 * 4 + 0.25 * 5, 4 + 0.5 * 5, 5, 1 + 0.5 * 1, 1]
    )
    np.testing.assert_allclose(disc, [0.125, 0, 0, 0, 0.25, 0.5])
    assert next_pos[0] == 3 and next_pos[4] == 8 and next_pos[5] == 8
    np.testing.assert_array_equal(np.flatnonzero(buf.valid[0]), [0, 1, 2, 3, 4, 6, 7])
    sample = buf.sample(200, np.random.default_rng(0))
    assert set(sample["index"]) == {0, 1, 2, 3, 4, 6, 7}  # never the final frames 5 and 8
    row = list(sample["index"]).index(6)
    np.testing.assert_allclose(sample["next_obs"][row], [8, 8])
    assert sample["returns"][row] == 1.5 and sample["discounts"][row] == 0.25


def test_stacking_repeats_first_frame_across_episode_start():
    buf = ReplayBuffer(
        capacity=16,
        num_envs=1,
        frame_shape=(2, 2),
        frame_dtype=np.uint8,
        stack=4,
        n_step=1,
        gamma=0.9,
    )
    for t in range(3):
        buf.add(0, np.full((2, 2), t), 0, 0.0, False, t == 0)
    buf.add_last(0, np.full((2, 2), 3))
    for t in (4, 5, 6):
        buf.add(0, np.full((2, 2), t), 0, 0.0, False, t == 4)
    stacks = buf._stacked(np.zeros(5, np.int64), np.array([1, 2, 3, 4, 5]))
    assert stacks.shape == (5, 2, 2, 4)
    np.testing.assert_array_equal(
        stacks[:, 0, 0], [[0, 0, 0, 1], [0, 0, 1, 2], [0, 1, 2, 3], [4, 4, 4, 4], [4, 4, 4, 5]]
    )
    returns, next_pos, disc = buf.n_step_targets(np.zeros(1, np.int64), np.array([2]))
    assert next_pos[0] == 3 and disc[0] == pytest.approx(
        0.9
    )  # truncated: bootstraps from the final frame


def test_ring_overwrite_invalidates_broken_stacks():
    buf = ReplayBuffer(
        capacity=8, num_envs=1, frame_shape=(1,), frame_dtype=np.uint8, stack=4, n_step=1, gamma=0.9
    )
    for t in range(12):  # one long episode; absolute slots 4..11 remain
        buf.add(0, [t], 0, 0.0, False, t == 0)
    # sampleable: stack reaches 3 back (>= abs 4) and the next slot exists -> abs 7..10
    assert sorted(np.flatnonzero(buf.valid[0])) == sorted([7 % 8, 8 % 8, 9 % 8, 10 % 8])
    assert len(buf) == 4 and buf.tree.total == 4.0


def test_each_frame_stored_once_and_memory_reported():
    buf = ReplayBuffer(
        capacity=1000,
        num_envs=4,
        frame_shape=(84, 84),
        frame_dtype=np.uint8,
        stack=4,
        n_step=3,
        gamma=0.99,
    )
    assert buf.frames.shape == (4, 250, 84, 84) and buf.frames.nbytes == 1000 * 84 * 84
    per_transition = buf.nbytes / 1000
    assert (
        84 * 84 < per_transition < 84 * 84 + 64
    )  # vs 2 * 4 * 7056 bytes for stored (s, s') stacks


def test_prioritized_sampling_and_importance_weights():
    buf = _vector_buffer(n_step=1, prioritized=True, alpha=1.0, priority_epsilon=0.0)
    for t in range(4):
        buf.add(0, [t, t], 0, 0.0, t == 3, t == 0)
    buf.add_last(0, [4, 4])
    index = np.arange(4)
    buf.update_priorities(index, np.array([1.0, -1.0, 2.0, 4.0]))  # priority |td|^1: 1, 1, 2, 4
    sample = buf.sample(64, np.random.default_rng(0), beta=1.0)
    counts = np.bincount(sample["index"], minlength=4)
    np.testing.assert_array_equal(counts, [8, 8, 16, 32])  # stratified: exactly ∝ priority
    # w = (N P)^-beta / max w = (4 * p/8)^-1 / 2 -> 1, 1, 0.5, 0.25
    expected = {0: 1.0, 1: 1.0, 2: 0.5, 3: 0.25}
    np.testing.assert_allclose(sample["weights"], [expected[i] for i in sample["index"]])


# ---- targets, loss, heads, schedules ------------------------------------------------


def test_double_and_nature_dqn_targets():
    from keras_suite.apps.dqn.learner import bootstrap_targets

    q_online = np.array([[1.0, 5.0, 2.0], [0.0, 0.0, 9.0]], np.float32)
    q_target = np.array([[3.0, 0.0, 4.0], [7.0, 1.0, 2.0]], np.float32)
    returns = np.array([1.0, 2.0], np.float32)
    discounts = np.array([0.5, 0.25], np.float32)
    double = bootstrap_targets(q_online, q_target, returns, discounts, double=True)
    nature = bootstrap_targets(q_online, q_target, returns, discounts, double=False)
    np.testing.assert_allclose(
        double.numpy(), [1 + 0.5 * 0.0, 2 + 0.25 * 2.0]
    )  # online picks 1 and 2
    np.testing.assert_allclose(nature.numpy(), [1 + 0.5 * 4.0, 2 + 0.25 * 7.0])  # max of target


def test_huber_and_dueling_head():
    from keras_suite.apps.dqn.learner import huber
    from keras_suite.apps.dqn.model import DuelingQ

    np.testing.assert_allclose(
        huber(np.array([-3.0, -0.5, 0.0, 0.5, 2.0], np.float32)).numpy(),
        [2.5, 0.125, 0.0, 0.125, 1.5],
    )
    q = DuelingQ()(np.array([[1.0]], np.float32), np.array([[1.0, 2.0, 3.0]], np.float32))
    np.testing.assert_allclose(np.asarray(q), [[0.0, 1.0, 2.0]])


def test_epsilon_and_beta_schedules():
    from keras_suite.apps.dqn.train import beta_at, epsilon_at

    cfg = cartpole()
    cfg.agent.epsilon_start, cfg.agent.epsilon_end, cfg.agent.epsilon_decay_steps = 1.0, 0.1, 100
    assert [round(epsilon_at(s, cfg.agent), 6) for s in (0, 50, 100, 500)] == [1.0, 0.55, 0.1, 0.1]
    cfg.agent.total_steps = 1000
    assert beta_at(0, cfg) == pytest.approx(0.4) and beta_at(500, cfg) == pytest.approx(0.7)


def test_learner_step_loss_and_soft_target_update():
    import keras

    from keras_suite.apps.dqn.learner import Learner, huber
    from keras_suite.apps.dqn.model import build_q_network

    tf = common.quiet_import_tensorflow()
    cfg = cartpole()
    cfg.agent.hidden_units = [8]
    cfg.agent.tau = 0.25
    cfg.train.batch_size = 4
    online = build_q_network(cfg.agent, [3], "float32", 2, "online")
    target = build_q_network(cfg.agent, [3], "float32", 2, "target")
    opt = keras.optimizers.SGD(0.1)
    learner = Learner(tf.distribute.get_strategy(), online, target, opt, cfg.agent, cfg.train)
    rng = np.random.default_rng(0)
    batch = {
        "obs": rng.normal(size=(4, 3)).astype(np.float32),
        "actions": np.array([0, 1, 1, 0], np.int32),
        "returns": np.array([1, 0, 2, 1], np.float32),
        "discounts": np.array([0.9, 0, 0.81, 0.9], np.float32),
        "next_obs": rng.normal(size=(4, 3)).astype(np.float32),
        "weights": np.array([1, 0.5, 1, 0.25], np.float32),
    }
    q = online(batch["obs"]).numpy()
    q_next_on, q_next_t = online(batch["next_obs"]).numpy(), target(batch["next_obs"]).numpy()
    y = batch["returns"] + batch["discounts"] * q_next_t[np.arange(4), q_next_on.argmax(1)]
    td = y - q[np.arange(4), batch["actions"]]
    expected_loss = float(np.mean(batch["weights"] * huber(td.astype(np.float32)).numpy()))
    before_online = [w.copy() for w in online.get_weights()]
    before_target = [w.copy() for w in target.get_weights()]
    loss, _, td_out = learner.train(batch)
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    np.testing.assert_allclose(td_out, td, rtol=1e-5, atol=1e-6)
    after_online = online.get_weights()
    assert any(not np.allclose(a, b) for a, b in zip(before_online, after_online))
    for t_old, t_new, o_new in zip(before_target, target.get_weights(), after_online):
        np.testing.assert_allclose(t_new, 0.25 * o_new + 0.75 * t_old, rtol=1e-5, atol=1e-6)
