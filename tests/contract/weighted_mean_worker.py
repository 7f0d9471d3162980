"""Run as a script by test_contract_pieces.py: one step of a token-weighted loss under a
strategy (default / mirrored over 2 logical CPUs / one worker of a 2-worker cluster),
printing the globally reduced loss and gradient as JSON on the last line.

The global batch is 4 sequences of 6 tokens; replica r of R holds sequences r::R. The
first sequences are mostly padding, so replicas hold different numbers of real tokens:
a per-replica mean averaged over replicas differs from the true token mean."""

import json
import sys

import numpy as np

from keras_suite import common
from keras_suite.common.strategy import make_strategy
from keras_suite.common.training import replica_weighted_mean

tf = common.quiet_import_tensorflow()

X = np.arange(24, dtype=np.float32).reshape(4, 6) / 10.0
Y = np.sin(X).astype(np.float32)
MASK = np.array(
    [[1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0]], np.float32
)


def main(mode: str) -> None:
    strategy = make_strategy(mode, cpu_devices=2 if mode == "mirrored" else 0)
    replicas = strategy.num_replicas_in_sync
    with strategy.scope():
        w = tf.Variable(0.7)

    def local(ctx):
        r = ctx.replica_id_in_sync_group
        return tuple(tf.constant(a[r::replicas]) for a in (X, Y, MASK))

    values = strategy.experimental_distribute_values_from_function(local)

    @tf.function
    def step(batch):
        def per_replica(batch):
            x, y, mask = batch
            with tf.GradientTape() as tape:
                loss = replica_weighted_mean(tf.square(w * x - y), mask)
            return loss, tape.gradient(loss, w)

        loss, grad = strategy.run(per_replica, args=(batch,))
        return strategy.reduce("SUM", loss, axis=None), strategy.reduce("SUM", grad, axis=None)

    loss, grad = step(values)
    print(json.dumps({"replicas": replicas, "loss": float(loss), "grad": float(grad)}))


if __name__ == "__main__":
    main(sys.argv[1])
