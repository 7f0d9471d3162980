"""Every app's smoke pipeline on the accelerators of this machine, as one table.

    python benchmarks/accelerator_check.py [--apps a,b] [--out accelerator_check.json]

For the day a GPU machine is at hand: each app trains its `smoke` preset with
`train.precision=auto` (mixed_float16 on GPUs) under MirroredStrategy over every visible
GPU, is evaluated, exported (SavedModel + warm-up, checked) and converted to TFLite
float32 + int8 with the parity report. Prints

    app | replicas | precision | examples/s | metric | export | tflite | seconds

and writes the rows as JSON. On a machine without a GPU it says so and exits 0
(`--allow-cpu` runs it anyway on the CPU, to try the script). A whole check is budgeted
at 10 minutes (`--total-seconds`); an app that runs past `--app-seconds` is reported and the
next one starts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# One app's pipeline, in a fresh process (a fresh TF runtime; a crash stays contained).
ONE_APP = r"""
import json, sys, time
from pathlib import Path
app_name, work, strategy = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
row = {"app": app_name}
from keras_suite.common.runlog import read_jsonl, setup_logging
setup_logging("WARNING")
from keras_suite.common.run import train_run
run_dir = work / "run"
t = time.perf_counter()
metrics = train_run(app_name, "smoke", overrides=["train.precision=auto"], strategy_name=strategy,
                    run_dir=run_dir, command="accelerator_check")
row["train_seconds"] = round(time.perf_counter() - t, 1)
meta = json.loads((run_dir / "run.json").read_text())
row.update(replicas=meta["replicas"], precision=meta["precision"])
records = read_jsonl(run_dir / "logs" / "metrics.jsonl")
rates = [r.get("examples_per_sec") or r.get("frames_per_sec") for r in records]
rates = [r for r in rates if r]
row["examples_per_sec"] = round(rates[-1], 1) if rates else None
scalars = [(k, v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
row["metric"] = f"{scalars[0][0]}={scalars[0][1]:.4g}" if scalars else None
try:
    from keras_suite.export.writer import export_run
    export_run(run_dir, work / "models", name=app_name)
    row["export_ok"] = True
except Exception as exc:
    row["export_ok"], row["export_error"] = False, f"{type(exc).__name__}: {exc}"[:300]
try:
    from keras_suite.tflite.pipeline import convert_run
    report = convert_run(run_dir, "float32,int8", calibration_samples=16, latency_runs=2)["report"]
    errors = [m.get("error") for t in report["targets"] for m in t["modes"] if m.get("error")]
    row["tflite_ok"] = bool(report["targets"]) and not errors
    if errors:
        row["tflite_error"] = errors[0][:300]
except Exception as exc:
    row["tflite_ok"], row["tflite_error"] = False, f"{type(exc).__name__}: {exc}"[:300]
print("ROW " + json.dumps(row))
"""

COLUMNS = (
    "app",
    "replicas",
    "precision",
    "examples_per_sec",
    "metric",
    "export_ok",
    "tflite_ok",
    "seconds",
)


def visible_gpus() -> int:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from keras_suite import common; tf = common.quiet_import_tensorflow(); "
            "print(len(tf.config.list_physical_devices('GPU')))",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    return int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else 0


def run_app(name: str, strategy: str, budget: float) -> dict:
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"acc-{name}-") as work:
        env = dict(os.environ, KSUITE_PROGRESS="0", PYTHONPATH=str(ROOT))
        try:
            out = subprocess.run(
                [sys.executable, "-c", ONE_APP, name, work, strategy],
                capture_output=True,
                text=True,
                cwd=ROOT,
                env=env,
                timeout=budget,
            )
        except subprocess.TimeoutExpired:
            return {"app": name, "error": f"ran past {budget:.0f} s", "seconds": round(budget)}
    rows = [line[4:] for line in out.stdout.splitlines() if line.startswith("ROW ")]
    row = (
        json.loads(rows[-1])
        if rows
        else {"app": name, "error": (out.stderr.strip().splitlines() or ["?"])[-1][:300]}
    )
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def print_table(rows: list[dict]) -> None:
    cells = [[str(r.get(c, "-") if r.get(c) is not None else "-") for c in COLUMNS] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(COLUMNS)]
    print(" | ".join(c.ljust(w) for c, w in zip(COLUMNS, widths)))
    print("-+-".join("-" * w for w in widths))
    for row in cells:
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths)))
    for r in rows:
        for key in ("error", "export_error", "tflite_error"):
            if r.get(key):
                print(f"{r['app']}: {key}: {r[key]}")


def main(argv=None) -> int:
    from keras_suite.common.registry import app_names

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", default="", help="comma-separated apps (default: every app)")
    parser.add_argument(
        "--allow-cpu", action="store_true", help="run on the CPU when there is no GPU"
    )
    parser.add_argument("--app-seconds", type=float, default=100.0, help="time limit per app")
    parser.add_argument(
        "--total-seconds",
        type=float,
        default=570.0,
        help="time limit of the whole check (apps not started by then are listed as skipped)",
    )
    parser.add_argument("--out", default="bench-results/accelerator_check.json")
    args = parser.parse_args(argv)
    gpus = visible_gpus()
    if not gpus and not args.allow_cpu:
        print(
            "no GPU visible to TensorFlow on this machine: nothing to check (use --allow-cpu to try the "
            "script on the CPU)"
        )
        return 0
    names = [n for n in args.apps.split(",") if n] or app_names()
    strategy = "mirrored" if gpus else "default"
    print(f"{gpus} GPU(s); strategy {strategy}; apps: {', '.join(names)}", flush=True)
    rows = []
    deadline = time.perf_counter() + args.total_seconds
    for name in names:
        left = deadline - time.perf_counter()
        if left < 20:
            rows.append({"app": name, "error": "skipped: the check's time limit was reached"})
            continue
        rows.append(run_app(name, strategy, min(args.app_seconds, left)))
        print(f"  {name}: {rows[-1].get('seconds')} s", flush=True)
    print_table(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"gpus": gpus, "strategy": strategy, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
