"""The parity report: JSON (everything), a markdown table and a size-vs-metric PNG."""

from __future__ import annotations

import os
from pathlib import Path

from keras_suite.common.runlog import write_json_atomic

# One colour per mode, the same in every report.
MODES_ORDER = ("float32", "dynamic", "float16", "int8", "int16x8")
MODE_COLORS = {
    "float32": "tab:blue",
    "dynamic": "tab:orange",
    "float16": "tab:green",
    "int8": "tab:red",
    "int16x8": "tab:purple",
}
MODE_MARKERS = {"float32": "o", "dynamic": "s", "float16": "^", "int8": "D", "int16x8": "v"}


def primary_metric(report: dict) -> str | None:
    """The first metric the app's tflite_evaluate returned (top1 for the classifier)."""
    for target in report["targets"]:
        if target["keras"]["metrics"]:
            return next(iter(target["keras"]["metrics"]))
    return None


def check_parity(report: dict, tolerance: dict) -> list[dict]:
    """Flag every converted mode whose metric is further behind the Keras reference than
    the app's `parity_tolerance` allows (docs/tflite.md). Each mode row gets a `parity`
    entry; the flagged ones are returned and kept as report["parity_warnings"]."""
    from keras_suite.common.app import App

    tolerance = {**App.parity_tolerance, **tolerance}
    warnings = []
    for target in report["targets"]:
        keras_metrics = target["keras"]["metrics"]
        metric = tolerance["metric"] if tolerance["metric"] in keras_metrics else None
        metric = metric or next(iter(keras_metrics), None)
        if metric is None:
            continue
        reference = keras_metrics[metric]
        allowed = float(tolerance["max_drop"])
        if tolerance.get("relative", True):
            allowed *= abs(reference)
        for row in target["modes"]:
            value = row.get("metrics", {}).get(metric)
            if value is None:
                continue  # not run: its error is in the report already
            drop = (
                reference - value if tolerance.get("higher_is_better", True) else value - reference
            )
            # a hair of slack: a mode exactly at the limit is not flagged by rounding
            flagged = drop > allowed + 1e-9 * max(1.0, abs(reference))
            row["parity"] = {"metric": metric, "keras": reference, "tflite": value}
            row["parity"].update({"drop": drop, "allowed_drop": allowed, "flagged": flagged})
            if flagged:
                warnings.append({"target": target["name"], "mode": row["mode"], **row["parity"]})
    report["parity_tolerance"] = tolerance
    report["parity_warnings"] = warnings
    return warnings


def warning_line(flag: dict) -> str:
    """One line per flagged mode, for the terminal and report.md."""
    return (
        f"{flag['target']} {flag['mode']}: {flag['metric']} {_fmt(flag['tflite'])} vs Keras "
        f"{_fmt(flag['keras'])} (worse by {_fmt(flag['drop'])}, tolerance "
        f"{_fmt(flag['allowed_drop'])}): this quantized model is far off the float one"
    )


def _fmt(value, digits=4):
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 else f"{value:.{digits}f}"
    return str(value)


def _latency_cell(row: dict, key: str) -> str:
    lat = row.get("latency", {}).get(key)
    return f"{lat['p50_ms']:.2f} / {lat['p95_ms']:.2f}" if lat else "–"


def markdown(report: dict) -> str:
    metric = primary_metric(report)
    lines = [f"# TFLite parity report — {report['app']} ({report['run_dir']})", ""]
    lines.append(
        'Reference ("Keras") = the converted SavedModel signature run in TensorFlow over the same '
        "evaluation set; differences are over every output element of every evaluation sample. "
        "Latency = LiteRT interpreter, batch 1, ms p50 / p95."
    )
    if report.get("keras_metrics_json"):
        lines.append(
            "Keras metrics from metrics.json (App.evaluate): "
            + ", ".join(f"{k} {_fmt(v)}" for k, v in report["keras_metrics_json"].items())
        )
    for target in report["targets"]:
        lines += ["", f"## {target['name']} (signature `{target['signature']}`)", ""]
        if target.get("evaluation_split") or target.get("calibration_split"):
            lines += [
                f"Scored on: {target.get('evaluation_split') or 'the app evaluation set'}; "
                f"int8 calibrated on: {target.get('calibration_split') or 'the app representative data'}.",
                "",
            ]
        names = list(target["keras"]["metrics"])
        header = ["mode", "I/O", "size KB", "× float32"] + [f"{m} tflite" for m in names]
        if metric:
            header += [f"{metric} keras", f"Δ{metric}"]
        header += ["max abs diff", "mean abs diff", "1 thread ms", "2 threads ms", "parity"]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        for row in target["modes"]:
            if "error" in row:
                lines.append(
                    f"| {row['mode']} | {row.get('io_type', '')} | {row['size_bytes'] / 1024:.1f} | "
                    f"{_fmt(row.get('size_ratio'), 3)} | not run: {row['error']} |"
                )
                continue
            keras_value = target["keras"]["metrics"].get(metric)
            value = row["metrics"].get(metric)
            cells = [
                row["mode"],
                row["io_type"],
                f"{row['size_bytes'] / 1024:.1f}",
                _fmt(row.get("size_ratio"), 3),
            ]
            cells += [_fmt(row["metrics"].get(m)) for m in names]
            if metric:
                delta = None if value is None or keras_value is None else value - keras_value
                cells += [_fmt(keras_value), _fmt(delta)]
            cells += [
                _fmt(row["max_abs_diff"]),
                _fmt(row["mean_abs_diff"]),
                _latency_cell(row, "1_thread"),
                _latency_cell(row, "2_threads"),
            ]
            flag = row.get("parity")
            cells.append(("**off**" if flag["flagged"] else "ok") if flag else "–")
            lines.append("| " + " | ".join(cells) + " |")
    if report.get("parity_warnings"):
        tol = report["parity_tolerance"]
        how = "of the Keras value" if tol.get("relative", True) else "absolute"
        lines += [
            "",
            f"## Parity warnings (tolerance: {tol['max_drop']:g} {how}, app's parity_tolerance)",
            "",
        ]
        lines += [f"- WARNING: {warning_line(flag)}" for flag in report["parity_warnings"]]
    lines += ["", f"Plot: {report.get('plot', '')}", ""]
    return "\n".join(lines)


def plot(report: dict, path: Path) -> Path | None:
    """Size (KB) vs the app metric, one marker per mode, the Keras value as a dashed line."""
    metric = primary_metric(report)
    if metric is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = report["targets"]
    fig, axes = plt.subplots(1, len(targets), figsize=(9.5 * len(targets), 4.4), squeeze=False)
    for ax, target in zip(axes.flat, targets):
        rows = [r for r in target["modes"] if "metrics" in r and metric in r["metrics"]]
        # Modes often land on nearly the same point: name them in the legend, not on the plot.
        for row in sorted(
            rows, key=lambda r: MODES_ORDER.index(r["mode"]) if r["mode"] in MODES_ORDER else 99
        ):
            size = row["size_bytes"] / 1024
            io = f", {row['io_type']} I/O" if row["io_type"] != "float32" else ""
            ax.scatter(
                size,
                row["metrics"][metric],
                s=70,
                zorder=3,
                alpha=0.85,
                color=MODE_COLORS.get(row["mode"]),
                marker=MODE_MARKERS.get(row["mode"], "o"),
                label=f"{row['mode']}{io}: {size:.0f} KB, {row['metrics'][metric]:.4f}",
            )
        keras_value = target["keras"]["metrics"].get(metric)
        if keras_value is not None:
            ax.axhline(keras_value, color="gray", ls="--", lw=1, label=f"Keras: {keras_value:.4f}")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0)
        values = [r["metrics"][metric] for r in rows] + (
            [keras_value] if keras_value is not None else []
        )
        if values:
            span = max(values) - min(values)
            pad = max(span * 0.25, 0.005 * max(1.0, abs(max(values))))
            ax.set_ylim(min(values) - pad, max(values) + pad)
        sizes = [r["size_bytes"] / 1024 for r in rows]
        ax.set_xlim(0, max(sizes, default=1.0) * 1.25)
        ax.set_xlabel("model file size (KB)")
        ax.set_ylabel(metric)
        ax.set_title(f"{report['app']} / {target['name']}: size vs {metric}")
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def write(report: dict, out_dir: Path) -> dict:
    """report.json, report.md and report.png in out_dir (each written atomically)."""
    out_dir = Path(out_dir)
    png = plot(report, out_dir / "report.png")
    report["plot"] = str(png) if png else None
    write_json_atomic(out_dir / "report.json", report)
    md = out_dir / "report.md"
    tmp = md.with_name(md.name + ".tmp")
    tmp.write_text(markdown(report))
    os.replace(tmp, md)
    return {"json": out_dir / "report.json", "markdown": md, "plot": png}
