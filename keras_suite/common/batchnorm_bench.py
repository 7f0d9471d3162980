"""`ksuite bench APP train-step`: an app's training step with the fused batch norm
(keras_suite.common.batchnorm, what the apps use) against Keras's stock BatchNormalization, side by
side in one process.

Both sides run the app's own `train_step` (its loss, optimizer and precision) on the same
fixed batch from its `default` preset, with the same starting weights; the stock side's
model is a copy whose fused layers are Keras's. The input pipeline is left out (it is
the same on both sides). The two are timed in alternating blocks, so a noisy shared host
slows both alike; the ratio of medians is the number to read.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from keras_suite import common

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402


def with_keras_batch_norm(model):
    """A copy of `model` whose fused batch norms are Keras's own layer, same weights."""
    from keras_suite.common.batchnorm import FusedBatchNormalization

    def clone(layer):
        cls = (
            keras.layers.BatchNormalization
            if isinstance(layer, FusedBatchNormalization)
            else type(layer)
        )
        return cls.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def main(app_name: str, argv=None) -> int:
    from keras_suite.common import config as config_lib
    from keras_suite.common.app import StepContext
    from keras_suite.common.precision import resolve_precision
    from keras_suite.common.registry import get_app
    from keras_suite.common.run import set_precision
    from keras_suite.common.runlog import write_json_atomic

    parser = argparse.ArgumentParser(prog=f"ksuite bench {app_name} train-step")
    parser.add_argument("--preset", default="default")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override, as for `ksuite train` (e.g. train.batch_size=64)",
    )
    parser.add_argument("--blocks", type=int, default=6, help="alternating timing blocks per side")
    parser.add_argument("--steps", type=int, default=10, help="steps per block")
    parser.add_argument("--out", default=f"bench-results/{app_name}_train_step.json")
    args = parser.parse_args(argv)

    app = get_app(app_name)
    cfg = config_lib.resolve(app.presets, args.preset, None, args.set)
    precision = resolve_precision(cfg.train.precision)
    set_precision(precision)
    data = app.datasets(cfg=cfg, artifacts=None)
    # The last epoch's batch: an app may train at a smaller size first (detection does).
    batch = next(iter(data.train_epoch(max(cfg.train.epochs - 1, 0))))
    batch_size = int(tf.nest.flatten(batch)[0].shape[0])

    fused_state = app.build_state(cfg=cfg, info=data.info)
    stock_state = app.build_state(cfg=cfg, info=data.info)
    stock_state.models["model"] = with_keras_batch_norm(fused_state.models["model"])
    states = {"keras_batch_norm": stock_state, "fused_batch_norm": fused_state}

    def compiled_step(state):
        context = StepContext(cfg=cfg, global_batch_size=batch_size)
        return tf.function(lambda: app.train_step(state, batch, context))

    steps = {name: compiled_step(state) for name, state in states.items()}
    for step in steps.values():  # trace and warm up outside the timing
        for _ in range(3):
            tf.nest.map_structure(lambda x: x.numpy(), step())
    seconds = {name: [] for name in steps}
    for _ in range(args.blocks):
        for name, step in steps.items():
            t = time.perf_counter()
            for _ in range(args.steps):
                out = step()
            tf.nest.map_structure(lambda x: x.numpy(), out)  # wait for the last step
            seconds[name].append((time.perf_counter() - t) / args.steps)

    rows = {
        name: {
            "ms_per_step_median": 1000 * float(np.median(s)),
            "images_per_sec": batch_size / float(np.median(s)),
            "ms_per_step_blocks": [round(1000 * x, 1) for x in s],
        }
        for name, s in seconds.items()
    }
    speedup = (
        rows["fused_batch_norm"]["images_per_sec"] / rows["keras_batch_norm"]["images_per_sec"]
    )
    print(f"{app_name} train step, preset {args.preset}, batch {batch_size}, {precision}")
    for name, r in rows.items():
        print(f"{name:17s} {r['ms_per_step_median']:7.1f} ms/step {r['images_per_sec']:7.1f} img/s")
    print(f"fused / keras speed: {speedup:.2f}x")
    result = {
        "app": app_name,
        "preset": args.preset,
        "overrides": args.set,
        "precision": precision,
        "batch_size": batch_size,
        "blocks": args.blocks,
        "steps_per_block": args.steps,
        "results": rows,
        "speedup_fused_vs_keras": speedup,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, result)
    print(f"wrote {args.out}")
    return 0
