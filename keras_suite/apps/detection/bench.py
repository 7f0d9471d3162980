"""`ksuite bench detection --run-dir RUN`: mAP of a trained detector in Keras and in every
TFLite mode (float32, dynamic, float16, int8) on the built-in test split, side by side,
plus file size and per-image latency. Prints a table and writes JSON.

The TFLite models are converted with builtin ops only (keras_suite.tflite.convert) from the app's
fixed-shape target and run with ai_edge_litert; the Keras reference runs the same
SavedModel signature in TensorFlow.

`ksuite bench detection train-step` is the other benchmark: training-step speed with the
fused batch norm against Keras's (common/batchnorm_bench.py).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from keras_suite import common

tf = common.quiet_import_tensorflow()


def main(argv=None) -> int:
    if argv and argv[0] == "train-step":  # the other benchmark: fused vs Keras batch norm
        from keras_suite.common import batchnorm_bench

        return batchnorm_bench.main("detection", argv[1:])
    from ai_edge_litert.interpreter import Interpreter

    from keras_suite.common.run import load_run
    from keras_suite.common.runlog import setup_logging, write_json_atomic
    from keras_suite.tflite.convert import convert

    parser = argparse.ArgumentParser(prog="ksuite bench detection")
    parser.add_argument("--run-dir", required=True, help="a finished `ksuite train detection` run")
    parser.add_argument("--modes", default="float32,dynamic,float16,int8")
    parser.add_argument("--limit", type=int, default=0, help="test images to use (0 = all)")
    parser.add_argument("--calibration-samples", type=int, default=200)
    parser.add_argument("--out", default="bench-results/detection.json")
    args = parser.parse_args(argv)
    setup_logging()

    run = load_run(args.run_dir)
    data = run.datasets()
    if args.limit:
        s = data.extras["splits"]["test"]
        data.extras["splits"]["test"] = s.take(np.arange(min(args.limit, len(s))))
    workdir = Path(args.run_dir) / "tflite"
    workdir.mkdir(parents=True, exist_ok=True)
    (target,) = run.app.tflite_targets(state=run.state, data=data, cfg=run.cfg, workdir=workdir)
    reference = tf.saved_model.load(target.saved_model_dir).signatures[target.signature]

    def timed(fn):
        times = []

        def call(feeds):
            t = time.perf_counter()
            out = fn(feeds)
            times.append(time.perf_counter() - t)
            return out

        return call, times

    keras_fn, keras_times = timed(
        lambda f: {
            k: v.numpy() for k, v in reference(**{n: tf.constant(v) for n, v in f.items()}).items()
        }
    )
    rows = {
        "keras": {
            **run.app.tflite_evaluate(
                run_signature=keras_fn, data=data, cfg=run.cfg, info=run.info, target=None
            ),
            "ms_per_image": 1000 * float(np.median(keras_times)),
        }
    }
    for mode in args.modes.split(","):
        conv = convert(
            target.saved_model_dir,
            target.signature,
            mode,
            representative_data=target.representative_data,
            num_calibration=args.calibration_samples,
        )
        path = workdir / f"detector_{mode}.tflite"
        path.write_bytes(conv.model)
        interp = Interpreter(model_content=conv.model, num_threads=2)
        runner = interp.get_signature_runner("serving_default")
        fn, times = timed(lambda f: runner(**f))
        m = run.app.tflite_evaluate(
            run_signature=fn, data=data, cfg=run.cfg, info=run.info, target=None
        )
        rows[mode] = {
            **m,
            "ms_per_image": 1000 * float(np.median(times)),
            "size_mb": len(conv.model) / 1e6,
            "builtin_only": not conv.flex_ops,
            "nms_op": "NON_MAX_SUPPRESSION_V5" in conv.ops,
        }
    base = rows.get("float32", rows["keras"])
    for r in rows.values():
        r["delta_map_50_vs_float32"] = r["map_50"] - base["map_50"]
    print(
        f"{'model':10s} {'mAP@.5':>8s} {'mAP@.5:.95':>11s} {'d mAP@.5':>9s} {'ms/img':>8s} {'MB':>6s}"
    )
    for name, r in rows.items():
        print(
            f"{name:10s} {r['map_50']:8.4f} {r['map_50_95']:11.4f} {r['delta_map_50_vs_float32']:+9.4f} "
            f"{r['ms_per_image']:8.1f} {r.get('size_mb', float('nan')):6.2f}"
        )
    result = {
        "run_dir": str(args.run_dir),
        "test_images": len(data.extras["splits"]["test"]),
        "results": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, result)
    write_json_atomic(workdir / "parity_report.json", result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
