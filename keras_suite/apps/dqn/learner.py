"""The DQN update: (double) Q-learning targets, Huber TD loss weighted by importance
weights, one gradient step per replica under the run's tf.distribute strategy, and
target-network updates (hard copy or Polyak averaging)."""

from __future__ import annotations

from keras_suite import common
from keras_suite.common.training import apply_gradients, replica_mean

tf = common.quiet_import_tensorflow()


def bootstrap_targets(q_next_online, q_next_target, returns, discounts, double: bool):
    """y = R^(n) + discount * Q_target(s', a*) with a* = argmax_a Q_online(s', a) for
    Double DQN (van Hasselt et al. 2016) or argmax_a Q_target(s', a) for the Nature DQN.
    `discounts` is gamma^n, or 0 where the episode terminated inside the n steps."""
    chooser = q_next_online if double else q_next_target
    best = tf.argmax(chooser, axis=-1, output_type=tf.int32)
    value = tf.gather(q_next_target, best, axis=-1, batch_dims=1)
    return tf.cast(returns, tf.float32) + tf.cast(discounts, tf.float32) * value


def huber(x, delta: float = 1.0):
    """0.5 x^2 inside [-delta, delta], linear outside (so large TD errors don't explode)."""
    abs_x = tf.abs(x)
    quadratic = tf.minimum(abs_x, delta)
    return 0.5 * tf.square(quadratic) + delta * (abs_x - quadratic)


class Learner:
    def __init__(self, strategy, online, target, optimizer, agent_cfg, train_cfg):
        self.strategy, self.online, self.target, self.optimizer = (
            strategy,
            online,
            target,
            optimizer,
        )
        self.double, self.delta = agent_cfg.double, agent_cfg.huber_delta
        self.tau = agent_cfg.tau
        self.soft = agent_cfg.target_update == "soft"
        self.clip_norm = train_cfg.clip_norm
        self.global_batch = train_cfg.batch_size
        self._step = tf.function(self._distributed_step)
        self._copy = tf.function(self._update_target)

    def _replica_step(self, obs, actions, returns, discounts, next_obs, weights):
        q_next_target = self.target(next_obs, training=False)
        q_next_online = self.online(next_obs, training=False) if self.double else q_next_target
        y = tf.stop_gradient(
            bootstrap_targets(q_next_online, q_next_target, returns, discounts, self.double)
        )
        with tf.GradientTape() as tape:
            q = self.online(obs, training=True)
            q_taken = tf.gather(q, actions, axis=-1, batch_dims=1)
            td = y - q_taken
            loss = replica_mean(huber(td, self.delta) * weights, self.global_batch)
        apply_gradients(tape, loss, self.online.trainable_variables, self.optimizer, self.clip_norm)
        return loss, replica_mean(q_taken, self.global_batch), td

    def _distributed_step(self, batch):
        loss, q, td = self.strategy.run(self._replica_step, args=batch)
        if self.soft:  # Polyak averaging after every update, in the same graph call
            self._update_target(self.tau)
        return (
            self.strategy.reduce("SUM", loss, axis=None),
            self.strategy.reduce("SUM", q, axis=None),
            self.strategy.gather(td, axis=0),
        )

    def train(self, sample: dict):
        """One gradient step on a sampled batch; returns (loss, mean Q(s,a), TD errors)."""
        keys = ("obs", "actions", "returns", "discounts", "next_obs", "weights")
        replicas = self.strategy.num_replicas_in_sync
        if replicas == 1:
            batch = tuple(tf.convert_to_tensor(sample[k]) for k in keys)
        else:
            per = self.global_batch // replicas

            def shard(ctx, key):
                i = ctx.replica_id_in_sync_group
                return tf.convert_to_tensor(sample[key][i * per : (i + 1) * per])

            batch = tuple(
                self.strategy.experimental_distribute_values_from_function(
                    lambda ctx, k=k: shard(ctx, k)
                )
                for k in keys
            )
        loss, q, td = self._step(batch)
        return float(loss), float(q), td.numpy()

    def _update_target(self, tau):
        for t, o in zip(self.target.weights, self.online.weights):
            t.assign(tau * o + (1.0 - tau) * t)

    def copy_to_target(self) -> None:
        """The hard update of the Nature DQN: target <- online."""
        self._copy(tf.constant(1.0, tf.float32))
