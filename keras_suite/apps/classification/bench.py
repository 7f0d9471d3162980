"""`ksuite bench classification`: training throughput of the shared loop vs the plain way.

Side by side in one process, on the same class-per-folder PNG dataset and the same model:
  ours_float32          folder pipeline (decode once, cache, prefetch) + strategy.run loop
                        (augmentation off and plain Adam, so both sides do the same work)
  ours_mixed_bfloat16   the same with the mixed_bfloat16 policy
  kerasio_fit_float32   keras.utils.image_dataset_from_directory + model.fit, no cache or
                        prefetch, float32 — how a keras-io example trains
Throughput is images/s over the epochs after the first (tracing and the first decode
excluded). Writes JSON (default bench-results/classification.json).

`ksuite bench classification train-step` is the other benchmark: the app's training step
with the fused batch norm against Keras's (common/batchnorm_bench.py).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from keras_suite import common
from keras_suite.apps.classification.export import png_bytes as _png_bytes
from keras_suite.common import shapes

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402


def write_png_tree(root: Path, n: int, size: int) -> None:
    images, labels = shapes.classification_images(n, size, seed=11)
    for i, (img, y) in enumerate(zip(images, labels)):
        folder = root / shapes.SHAPES[y]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:06d}.png").write_bytes(_png_bytes(img))


def ours(data_dir: Path, work: Path, precision: str, epochs: int, steps: int, size: int) -> float:
    from keras_suite.common.run import train_run
    from keras_suite.common.runlog import read_jsonl

    run_dir = work / f"ours-{precision}"
    train_run(
        "classification",
        "default",
        overrides=[
            "data.source=folder",
            f"data.path={data_dir}",
            f"data.image_size={size}",
            "data.val_fraction=0",
            "data.test_fraction=0.02",
            f"train.epochs={epochs}",
            # the same work as the keras-io baseline: no augmentation, plain Adam
            "data.augment=false",
            "train.optimizer=adam",
            "train.lr_schedule=constant",
            f"train.steps_per_epoch={steps}",
            f"train.precision={precision}",
        ],
        strategy_name="default",
        run_dir=run_dir,
        evaluate=False,
    )
    epochs_log = [
        r for r in read_jsonl(run_dir / "logs" / "metrics.jsonl") if r.get("kind") == "epoch"
    ]
    later = epochs_log[1:] or epochs_log
    return float(np.mean([r["examples_per_sec"] for r in later]))


def kerasio_fit(data_dir: Path, epochs: int, steps: int, size: int, batch: int) -> float:
    from keras_suite.apps.classification.config import default
    from keras_suite.apps.classification.model import build_classifier
    from keras_suite.common.training import EpochTimer

    keras.mixed_precision.set_global_policy("float32")
    ds = keras.utils.image_dataset_from_directory(
        str(data_dir),
        image_size=(size, size),
        batch_size=batch,
        label_mode="int",
        seed=1,
        verbose=False,
    )
    model = build_classifier(default().model, size, len(ds.class_names))
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    timer = EpochTimer()

    model.fit(ds.repeat(), epochs=epochs, steps_per_epoch=steps, callbacks=[timer], verbose=0)
    later = timer.seconds[1:] or timer.seconds
    return float(steps * batch / np.mean(later))


def main(argv=None) -> int:
    if argv and argv[0] == "train-step":  # the other benchmark: fused vs Keras batch norm
        from keras_suite.common import batchnorm_bench

        return batchnorm_bench.main("classification", argv[1:])
    p = argparse.ArgumentParser(
        prog="ksuite bench classification",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--images", type=int, default=4000, help="PNG images written to the temporary dataset"
    )
    p.add_argument("--image-size", type=int, default=48, help="training resolution")
    p.add_argument(
        "--epochs", type=int, default=3, help="epochs per variant (the first is warm-up)"
    )
    p.add_argument("--steps", type=int, default=40, help="steps per epoch")
    p.add_argument(
        "--skip-bf16",
        action="store_true",
        help="leave out mixed_bfloat16 (slow without AVX512_BF16)",
    )
    p.add_argument("--out", default="bench-results/classification.json", help="JSON output path")
    args = p.parse_args(argv)
    from keras_suite.common.precision import cpu_has_fast_bfloat16

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data_dir = tmp / "data"
        write_png_tree(data_dir, args.images, args.image_size)
        results = {
            "ours_float32": ours(data_dir, tmp, "float32", args.epochs, args.steps, args.image_size)
        }
        if not args.skip_bf16:
            results["ours_mixed_bfloat16"] = ours(
                data_dir, tmp, "mixed_bfloat16", args.epochs, args.steps, args.image_size
            )
        results["kerasio_fit_float32"] = kerasio_fit(
            data_dir, args.epochs, args.steps, args.image_size, 64
        )
    report = {
        "images_per_sec": results,
        "ratio_ours_float32_vs_kerasio": results["ours_float32"] / results["kerasio_fit_float32"],
        "cpu_has_fast_bfloat16": cpu_has_fast_bfloat16(),
        "config": vars(args),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }
    if "ours_mixed_bfloat16" in results:
        report["ratio_bf16_vs_float32"] = results["ours_mixed_bfloat16"] / results["ours_float32"]
    for name, value in results.items():
        print(f"{name:22s} {value:8.1f} images/s")
    print(f"ours float32 / keras-io fit: {report['ratio_ours_float32_vs_kerasio']:.2f}x")
    if "ratio_bf16_vs_float32" in report:
        print(f"mixed_bfloat16 / float32:    {report['ratio_bf16_vs_float32']:.2f}x")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0
