"""`ksuite bench tflite`: size and LiteRT latency of every conversion mode, side by side.

Converts a trained run in every mode (training one first if the run directory has none),
then times each .tflite in the LiteRT interpreter with 1 and 2 threads on the same input
and prints a table; numbers also go to bench-results/tflite.json. Sizes and latencies
are compared as ratios to float32 measured in the same process, one after the other.
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

from keras_suite import common  # noqa: F401


def _parse(argv):
    p = argparse.ArgumentParser(prog="ksuite bench tflite", description=__doc__.splitlines()[0])
    p.add_argument(
        "--app",
        default="classification",
        help="app whose run is benchmarked (default classification)",
    )
    p.add_argument(
        "--run-dir", help="a finished run (default runs/<app>-<preset>; trained if missing)"
    )
    p.add_argument(
        "--preset",
        default="default",
        help="preset to train when the run is missing (default default)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for that training",
    )
    p.add_argument(
        "--io",
        default="int8",
        choices=["float32", "int8", "uint8"],
        help="I/O type of the int8 model",
    )
    p.add_argument("--calibration-samples", type=int, default=300)
    p.add_argument(
        "--runs", type=int, default=200, help="timed invocations per mode and thread count"
    )
    p.add_argument("--out", default="bench-results/tflite.json", help="JSON output path")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = _parse(argv or [])
    from keras_suite.common.run import default_run_dir, train_run
    from keras_suite.common.runlog import log, write_json_atomic
    from keras_suite.tflite.pipeline import convert_run

    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(args.app, args.preset)
    if not (run_dir / "model.weights.h5").exists():
        log.info(
            "no finished run in %s: training %s (%s preset) first", run_dir, args.app, args.preset
        )
        train_run(
            args.app,
            args.preset,
            overrides=args.set,
            run_dir=run_dir,
            command="ksuite bench tflite",
        )
    result = convert_run(
        run_dir,
        "all",
        args.io,
        calibration_samples=args.calibration_samples,
        latency_runs=args.runs,
    )
    report = result["report"]
    rows = []
    for target in report["targets"]:
        keras_metrics = target["keras"]["metrics"]
        metric = next(iter(keras_metrics), None)
        for row in target["modes"]:
            lat = row.get("latency", {})
            rows.append(
                {
                    "target": target["name"],
                    "mode": row["mode"],
                    "io_type": row["io_type"],
                    "size_bytes": row["size_bytes"],
                    "size_ratio": row["size_ratio"],
                    "metric": metric,
                    "tflite_value": row.get("metrics", {}).get(metric),
                    "keras_value": keras_metrics.get(metric),
                    "max_abs_diff": row.get("max_abs_diff"),
                    "mean_abs_diff": row.get("mean_abs_diff"),
                    **{f"{k}_{q}": v[f"{q}_ms"] for k, v in lat.items() for q in ("p50", "p95")},
                    "error": row.get("error"),
                }
            )
    base = {r["target"]: r for r in rows if r["mode"] == "float32"}
    for r in rows:
        ref = base.get(r["target"], {}).get("1_thread_p50")
        r["speedup_vs_float32_1_thread"] = (
            (ref / r["1_thread_p50"]) if ref and r.get("1_thread_p50") else None
        )
    print(
        f"\n{'mode':9s} {'I/O':7s} {'size KB':>9s} {'×fp32':>6s} {'metric':>8s} {'keras':>8s} "
        f"{'p50 1t':>8s} {'p95 1t':>8s} {'p50 2t':>8s} {'p95 2t':>8s} {'speed-up':>8s}"
    )
    for r in rows:
        if r["error"]:
            print(
                f"{r['mode']:9s} {r['io_type']:7s} {r['size_bytes'] / 1024:9.1f}  not run: {r['error']}"
            )
            continue
        print(
            f"{r['mode']:9s} {r['io_type']:7s} {r['size_bytes'] / 1024:9.1f} {r['size_ratio']:6.3f} "
            f"{r['tflite_value']:8.4f} {r['keras_value']:8.4f} {r['1_thread_p50']:8.3f} {r['1_thread_p95']:8.3f} "
            f"{r['2_threads_p50']:8.3f} {r['2_threads_p95']:8.3f} {r['speedup_vs_float32_1_thread']:7.2f}×"
        )
    out = {
        "benchmark": "tflite",
        "app": args.app,
        "run_dir": str(run_dir),
        "latency_runs": args.runs,
        "units": {"latency": "ms per batch-1 inference in the LiteRT interpreter", "size": "bytes"},
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average": os.getloadavg(),
        },
        "versions": {k: report[k] for k in ("tensorflow", "ai_edge_litert")},
        "rows": rows,
        "report": str(run_dir / "tflite" / "report.json"),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, out)
    print(f"\nJSON: {args.out}")
    return 0
