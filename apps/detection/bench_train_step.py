"""`ksuite bench detection train-step`: the detector's training step with TensorFlow's
fused batch-norm kernel (common.batchnorm, what the app uses) against Keras's stock
BatchNormalization, side by side in one process.

Both models have the same weights and see the same fixed batch of random images; a step
is forward, backward and an AdamW update (the YOLO loss and the input pipeline are left
out: they are the same on both sides). The two are timed in alternating blocks, so a
noisy shared host slows both alike; the ratio of medians is the number to read.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import common

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402


def _with_stock_batch_norm(model):
    """A copy of `model` whose fused batch norms are Keras's own layer, same weights."""
    from common.batchnorm import FusedBatchNormalization

    def clone(layer):
        cls = keras.layers.BatchNormalization if isinstance(layer, FusedBatchNormalization) else type(layer)
        return cls.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def _step_fn(model):
    optimizer = keras.optimizers.AdamW(1e-3)

    @tf.function
    def step(images):
        with tf.GradientTape() as tape:
            raw = model(images, training=True)
            loss = tf.reduce_mean(tf.square(raw))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return step


def main(argv=None) -> int:
    from apps.detection.model import build_detector
    from common.runlog import write_json_atomic

    parser = argparse.ArgumentParser(prog="ksuite bench detection train-step")
    parser.add_argument("--variant", default="n", choices=["n", "s", "m"])
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--blocks", type=int, default=6, help="alternating timing blocks per side")
    parser.add_argument("--steps", type=int, default=10, help="steps per block")
    parser.add_argument("--out", default="bench-results/detection_train_step.json")
    args = parser.parse_args(argv)

    fused = build_detector(8, args.image_size, args.variant)
    models = {"keras_batch_norm": _with_stock_batch_norm(fused), "fused_batch_norm": fused}
    images = tf.random.uniform((args.batch_size, args.image_size, args.image_size, 3), 0, 255)
    steps = {name: _step_fn(m) for name, m in models.items()}
    for step in steps.values():  # trace and warm up outside the timing
        for _ in range(3):
            step(images).numpy()
    seconds = {name: [] for name in steps}
    for _ in range(args.blocks):
        for name, step in steps.items():
            t = time.perf_counter()
            for _ in range(args.steps):
                loss = step(images)
            loss.numpy()
            seconds[name].append((time.perf_counter() - t) / args.steps)

    rows = {name: {"ms_per_step_median": 1000 * float(np.median(s)),
                   "images_per_sec": args.batch_size / float(np.median(s)),
                   "ms_per_step_blocks": [round(1000 * x, 1) for x in s]}
            for name, s in seconds.items()}
    speedup = rows["fused_batch_norm"]["images_per_sec"] / rows["keras_batch_norm"]["images_per_sec"]
    for name, r in rows.items():
        print(f"{name:17s} {r['ms_per_step_median']:7.1f} ms/step {r['images_per_sec']:7.1f} img/s")
    print(f"fused / keras speed: {speedup:.2f}x")
    result = {"variant": args.variant, "image_size": args.image_size, "batch_size": args.batch_size,
              "blocks": args.blocks, "steps_per_block": args.steps, "results": rows,
              "speedup_fused_vs_keras": speedup}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, result)
    print(f"wrote {args.out}")
    return 0
