"""`ksuite bench segmentation`: this app against the keras-io recipe, and U-Net against
DeepLabV3+, each trained for the same wall-clock budget on the same built-in data.

    ksuite bench segmentation [--seconds 240] [--only kerasio|models] [--out FILE]

kerasio  the keras-io example "Image segmentation with a U-Net-like architecture"
         (an Xception-style U-Net, `model.fit`, sparse categorical cross-entropy, RMSprop,
         a plain `from_tensor_slices().batch()` pipeline) vs this app's default preset
         (its U-Net, loss, augmentation and optimizer, stepped by the shared
         `strategy.run` loop). Both see the same training images for the same seconds;
         both are scored with this app's confusion-matrix mIoU on the same test images.
models   U-Net vs DeepLabV3+ under this app's default recipe: mIoU after the budget,
         parameters, training images/s, TFLite float32 and int8 size and latency.

Throughput is images/s over the training time after the first (tracing) steps. Numbers
are printed and written as JSON (default bench-results/segmentation.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from keras_suite import common

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402

WARMUP_STEPS = 3  # steps excluded from the throughput (tracing, first allocations)


def _miou(model, split, cfg, names) -> dict:
    from keras_suite.apps.segmentation.app import predict_ids
    from keras_suite.apps.segmentation.metrics import ConfusionMatrix

    cm = ConfusionMatrix(len(names), cfg.data.ignore_index)
    cm.update(split.masks, predict_ids(model, split.images))
    return cm.result(names)


def train_ours(cfg, seconds: float, log_every: float = 0.0) -> dict:
    """The app's own training step under the shared loop's compiled `strategy.run`,
    stopped after `seconds`; returns throughput, mIoU and the trained model."""
    from keras_suite.apps.segmentation import APP
    from keras_suite.common.training import TrainContext, Trainer

    keras.utils.set_random_seed(cfg.train.seed)
    strategy = tf.distribute.get_strategy()
    data = APP.datasets(cfg=cfg, artifacts=None)
    state = APP.build_state(cfg=cfg, info=data.info)
    state.build_optimizers()
    ctx = TrainContext(
        app=APP,
        cfg=cfg,
        run_dir=Path(tempfile.mkdtemp()),
        strategy=strategy,
        data=data,
        state=state,
    )
    trainer = Trainer(APP, ctx)
    step_fn = trainer._compiled_train()
    splits = data.extras["splits"]
    images, step, epoch, t_start, curve = 0, 0, 0, None, []
    start = time.perf_counter()
    while True:
        iterator = iter(
            strategy.experimental_distribute_dataset(
                data.train_epoch(epoch).take(data.steps_per_epoch)
            )
        )
        for _ in range(data.steps_per_epoch):
            step_fn(iterator, tf.constant(step, tf.int64), tf.constant(epoch, tf.int64))[
                "loss"
            ].numpy()
            step += 1
            if step == WARMUP_STEPS:
                t_start, images = time.perf_counter(), 0
            else:
                images += cfg.train.batch_size
            if log_every and step % int(log_every) == 0:
                m = _miou(state.model, splits["val"], cfg, data.info["class_names"])["miou"]
                curve.append((step, round(time.perf_counter() - start, 1), m))
                print(
                    f"  step {step} ({time.perf_counter() - start:.0f}s): val mIoU {m:.4f}",
                    flush=True,
                )
            if step > WARMUP_STEPS and time.perf_counter() - start >= seconds:
                break
        else:
            epoch += 1
            continue
        break
    train_time = time.perf_counter() - (t_start or start)
    metrics = _miou(state.model, splits["test"], cfg, data.info["class_names"])
    return {
        "images_per_sec": images / train_time,
        "steps": step,
        "images_seen": step * cfg.train.batch_size,
        "miou": metrics["miou"],
        "pixel_accuracy": metrics["pixel_accuracy"],
        "per_class_iou": {k: v["iou"] for k, v in metrics["per_class"].items()},
        "params": state.model.count_params(),
        "curve": curve,
        "model": state.model,
        "info": data.info,
    }


def kerasio_unet(image_size: int, num_classes: int) -> keras.Model:
    """The keras-io example's model (Xception-style U-Net): strided entry conv, three
    downsampling blocks of separable convs with residual projections, four upsampling
    blocks of transposed convs with residual UpSampling2D projections, softmax head."""
    inputs = keras.Input((image_size, image_size, 3))
    x = keras.layers.Rescaling(1.0 / 255)(inputs)  # the example feeds 0..1 images
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("relu")(x)
    previous = x
    for filters in (64, 128, 256):
        x = keras.layers.Activation("relu")(x)
        x = keras.layers.SeparableConv2D(filters, 3, padding="same")(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.Activation("relu")(x)
        x = keras.layers.SeparableConv2D(filters, 3, padding="same")(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.MaxPooling2D(3, strides=2, padding="same")(x)
        residual = keras.layers.Conv2D(filters, 1, strides=2, padding="same")(previous)
        x = keras.layers.add([x, residual])
        previous = x
    for filters in (256, 128, 64, 32):
        x = keras.layers.Activation("relu")(x)
        x = keras.layers.Conv2DTranspose(filters, 3, padding="same")(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.Activation("relu")(x)
        x = keras.layers.Conv2DTranspose(filters, 3, padding="same")(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.UpSampling2D(2)(x)
        residual = keras.layers.UpSampling2D(2)(previous)
        residual = keras.layers.Conv2D(filters, 1, padding="same")(residual)
        x = keras.layers.add([x, residual])
        previous = x
    outputs = keras.layers.Conv2D(num_classes, 3, activation="softmax", padding="same")(x)
    return keras.Model(inputs, outputs, name="kerasio_unet")


def train_kerasio(cfg, seconds: float) -> dict:
    """The keras-io recipe on the same training images, stopped after `seconds`."""
    from keras_suite.apps.segmentation.data import load_splits

    keras.utils.set_random_seed(cfg.train.seed)
    splits, names = load_splits(cfg.data, cfg.train.seed)
    train = splits["train"]
    model = kerasio_unet(cfg.data.image_size, len(names))
    model.compile(optimizer=keras.optimizers.RMSprop(1e-3), loss="sparse_categorical_crossentropy")
    ds = (
        tf.data.Dataset.from_tensor_slices((train.images, train.masks))
        .shuffle(len(train), seed=cfg.train.seed)
        .batch(cfg.train.batch_size, drop_remainder=True)
        .map(lambda x, y: (tf.cast(x, tf.float32), y))
        .repeat()
    )
    clock = {"start": time.perf_counter(), "t0": None, "steps": 0}

    class Budget(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            clock["steps"] += 1
            if clock["steps"] == WARMUP_STEPS:
                clock["t0"] = time.perf_counter()
            if clock["steps"] > WARMUP_STEPS and time.perf_counter() - clock["start"] >= seconds:
                self.model.stop_training = True

    model.fit(
        ds,
        epochs=10_000,
        steps_per_epoch=len(train) // cfg.train.batch_size,
        callbacks=[Budget()],
        shuffle=False,
        verbose=0,
    )
    train_time = time.perf_counter() - clock["t0"]
    images = (clock["steps"] - WARMUP_STEPS) * cfg.train.batch_size
    metrics = _miou(model, splits["test"], cfg, names)
    return {
        "images_per_sec": images / train_time,
        "steps": clock["steps"],
        "images_seen": clock["steps"] * cfg.train.batch_size,
        "miou": metrics["miou"],
        "pixel_accuracy": metrics["pixel_accuracy"],
        "params": model.count_params(),
    }


def tflite_numbers(model, info, workdir: Path, calibration) -> dict:
    """float32 and int8 .tflite size and single-thread latency of the fixed-shape target."""
    from keras_suite.apps.segmentation.export import tflite_archive
    from keras_suite.tflite.convert import convert
    from keras_suite.tflite.runtime import measure_latency

    path = str(workdir / f"{model.name}_fixed")
    tflite_archive(model, info).write_out(path, verbose=False)
    feeds = {"images": calibration[:1].astype(np.float32)}
    out = {}
    for mode in ("float32", "int8"):
        rep = (
            (lambda: ({"images": im[None].astype(np.float32)} for im in calibration))
            if mode == "int8"
            else None
        )
        result = convert(path, "serving_default", mode, "float32", rep)
        file = workdir / f"{model.name}_{mode}.tflite"
        file.write_bytes(result.model)
        latency = measure_latency(str(file), "serving_default", feeds, 1, runs=30)
        out[mode] = {"size_kb": len(result.model) / 1024, "latency_ms": latency}
    return out


def main(argv=None) -> int:
    from keras_suite.apps.segmentation.config import default

    p = argparse.ArgumentParser(
        prog="ksuite bench segmentation",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--seconds", type=float, default=240.0, help="training budget of each contender")
    p.add_argument("--only", choices=("kerasio", "models"), help="run one of the two comparisons")
    p.add_argument("--log-every", type=int, default=0, help="print val mIoU every N steps (ours)")
    p.add_argument("--set", action="append", default=[], help="config override for this app's runs")
    p.add_argument("--out", default="bench-results/segmentation.json")
    args = p.parse_args(argv)
    from keras_suite.common import config as config_lib

    keras.mixed_precision.set_global_policy("float32")
    cfg = default()
    for text in args.set:
        cfg = config_lib.merge(cfg, config_lib.parse_override(text))
    config_lib.validate(cfg)
    report = {
        "seconds": args.seconds,
        "image_size": cfg.data.image_size,
        "num_train": cfg.data.num_train,
        "batch_size": cfg.train.batch_size,
        "overrides": args.set,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }
    if args.only in (None, "kerasio"):
        print(
            f"== this app (U-Net, shared loop) vs keras-io recipe, {args.seconds:.0f}s each",
            flush=True,
        )
        ours = train_ours(cfg, args.seconds, args.log_every)
        theirs = train_kerasio(cfg, args.seconds)
        report["kerasio"] = {
            "ours": {k: v for k, v in ours.items() if k not in ("model", "info")},
            "kerasio": theirs,
            "ratio_images_per_sec": ours["images_per_sec"] / theirs["images_per_sec"],
            "ratio_miou": ours["miou"] / max(theirs["miou"], 1e-9),
        }
        print(f"{'':10s} {'images/s':>9s} {'mIoU':>7s} {'params':>9s}")
        for name, r in (("this app", ours), ("keras-io", theirs)):
            print(f"{name:10s} {r['images_per_sec']:9.1f} {r['miou']:7.4f} {r['params']:9d}")
        print(
            f"ratio (this app / keras-io): images/s {report['kerasio']['ratio_images_per_sec']:.2f}x, "
            f"mIoU {report['kerasio']['ratio_miou']:.2f}x",
            flush=True,
        )
    if args.only in (None, "models"):
        print(f"== U-Net vs DeepLabV3+, {args.seconds:.0f}s each", flush=True)
        rows = {}
        work = Path(tempfile.mkdtemp(prefix="seg-bench-"))
        for arch in ("unet", "deeplabv3plus"):
            arch_cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, arch=arch))
            r = train_ours(arch_cfg, args.seconds, args.log_every)
            from keras_suite.apps.segmentation.data import load_splits

            calibration = load_splits(arch_cfg.data, arch_cfg.train.seed)[0]["train"].images[:100]
            r["tflite"] = tflite_numbers(r.pop("model"), r.pop("info"), work, calibration)
            rows[arch] = r
        report["models"] = rows
        print(
            f"{'model':14s} {'mIoU':>7s} {'params':>9s} {'train img/s':>11s} {'fp32 KB':>8s} "
            f"{'fp32 ms':>8s} {'int8 KB':>8s} {'int8 ms':>8s}"
        )
        for arch, r in rows.items():
            t = r["tflite"]
            print(
                f"{arch:14s} {r['miou']:7.4f} {r['params']:9d} {r['images_per_sec']:11.1f} "
                f"{t['float32']['size_kb']:8.0f} {t['float32']['latency_ms']['p50_ms']:8.2f} "
                f"{t['int8']['size_kb']:8.0f} {t['int8']['latency_ms']['p50_ms']:8.2f}"
            )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=float) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
