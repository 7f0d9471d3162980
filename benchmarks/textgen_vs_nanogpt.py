"""textgen's `default` preset against nanoGPT's CPU "baby" GPT on the same English text.

Nothing is downloaded and nothing of nanoGPT is part of this repository: the English
text is built from the GNU manuals installed on this machine, nanoGPT is a checkout you
point at (`--nanogpt DIR`, run by its own `train.py` in its own Python with PyTorch),
and this driver only prepares its data files, times it, and scores its checkpoint.
Run the steps one at a time (each training takes the 2 cores for ~20 minutes):

    python benchmarks/textgen_vs_nanogpt.py english --out /tmp/english.txt
    ksuite train textgen --preset default --set data.source=files \\
        --set data.path=/tmp/english.txt --run-dir /tmp/runs/english-default
    python benchmarks/textgen_vs_nanogpt.py nanogpt-data --text /tmp/english.txt \\
        --nanogpt /tmp/nanoGPT
    python benchmarks/textgen_vs_nanogpt.py nanogpt-train --nanogpt /tmp/nanoGPT \\
        --python /tmp/nanogpt-venv/bin/python --seconds-from /tmp/runs/english-default
    python benchmarks/textgen_vs_nanogpt.py nanogpt-score --nanogpt /tmp/nanoGPT \\
        --python /tmp/nanogpt-venv/bin/python
    python benchmarks/textgen_vs_nanogpt.py plot --run-dir /tmp/runs/english-default \\
        --nanogpt /tmp/nanoGPT --out docs/results/textgen_vs_nanogpt.png

The split is textgen's own (`make_split` with the preset's fractions and seed): nanoGPT
trains on the same training text, watches the same validation text, and both are scored
on the same test text with the same protocol (windows of the model's context every half
context, every character scored once), in bits per character.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import pickle
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

INFO_DIR = Path("/usr/share/info")
NANOGPT_DATASET = "ksuite_text"  # data/<this>/ inside the nanoGPT checkout
NANOGPT_OUT = "out-ksuite-text"
#: nanoGPT's README CPU run ("baby GPT" on a laptop), everything but the number of
#: iterations, which is set to fill the same wall time as textgen's run
BABY = [
    "config/train_shakespeare_char.py",
    "--device=cpu",
    "--compile=False",
    "--eval_iters=20",
    "--log_interval=10",
    "--block_size=64",
    "--batch_size=12",
    "--n_layer=4",
    "--n_head=4",
    "--n_embd=128",
    "--dropout=0.0",
    f"--dataset={NANOGPT_DATASET}",
    f"--out_dir={NANOGPT_OUT}",
]


# ---- the English text ----------------------------------------------------------------------


def info_manual_text(path: Path) -> str:
    """The prose of one GNU info manual: node headers, menus, index entries and the tag
    table dropped, everything else kept as written."""
    with gzip.open(path, "rt", encoding="utf-8", errors="strict") as f:
        raw = f.read()
    raw = raw.split("\x1fTag Table:")[0].split("\x1f\nTag Table:")[0]
    lines, in_menu = [], False
    for line in raw.split("\n"):
        if "\x1f" in line or line.startswith("File: ") and "Node: " in line:
            continue
        if line.startswith("* Menu:"):
            in_menu = True
            continue
        if in_menu:
            if not line.strip():
                in_menu = False
            continue
        if re.match(r"^\* .*\(line +\d+\)\s*$", line):  # index entries
            continue
        lines.append(line)
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def build_english(out: Path) -> None:
    manuals = sorted(INFO_DIR.glob("*.info*.gz"))
    parts, used = [], []
    for path in manuals:
        try:
            parts.append(info_manual_text(path))
            used.append(path.name)
        except (UnicodeDecodeError, OSError) as error:
            print(f"skipped {path.name}: {error}")
    text = "\n".join(parts)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}: {len(text):,} characters from {len(used)} manuals: {', '.join(used)}")


# ---- textgen's split, written for nanoGPT --------------------------------------------------


def textgen_split(text_path: Path, preset: str = "default"):
    from keras_suite.apps.textgen.config import PRESETS
    from keras_suite.apps.textgen.corpus import load_corpus, make_split
    from keras_suite.common import config as config_lib
    from keras_suite.common.runlog import setup_logging

    setup_logging("INFO")  # the split's sizes and removed lines, as a run logs them
    cfg = config_lib.resolve(
        PRESETS, preset, overrides=["data.source=files", f"data.path={text_path}"]
    )
    d = cfg.data
    corpus = load_corpus(d)
    fractions = {"test": d.test_fraction, "val": d.val_fraction}
    return make_split(corpus.documents, fractions, cfg.train.seed, d.split, d.block_chars)


def nanogpt_data(text_path: Path, nanogpt: Path) -> None:
    """nanoGPT's character dataset files (train.bin, val.bin, meta.pkl as its own
    shakespeare_char/prepare.py writes them) from textgen's split, and test.json."""
    split = textgen_split(text_path)
    texts = {name: [t for _, t in getattr(split, name)] for name in ("train", "val", "test")}
    chars = sorted(set("".join(t for docs in texts.values() for t in docs)))
    stoi = {c: i for i, c in enumerate(chars)}
    folder = nanogpt / "data" / NANOGPT_DATASET
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("train", "val"):
        ids = np.array([stoi[c] for c in "\n".join(texts[name])], dtype=np.uint16)
        ids.tofile(folder / f"{name}.bin")
    meta = {"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": stoi}
    with open(folder / "meta.pkl", "wb") as f:
        pickle.dump(meta, f)
    (folder / "test.json").write_text(json.dumps(texts["test"]))
    sizes = {name: sum(map(len, docs)) for name, docs in texts.items()}
    print(f"wrote {folder}: vocab {len(chars)}, characters {sizes}")


# ---- nanoGPT training, timed -----------------------------------------------------------------


def _run_logged(command, cwd: Path, log_path: Path, threads: int) -> list:
    """Run nanoGPT's train.py, echo its lines with the seconds since start, and return the
    evaluation points [(seconds, step, train_loss, val_loss)]."""
    points = []
    # PyTorch's OpenMP threads spin at barriers: on these 2 cores shared with other jobs,
    # 2 threads took 5-8 s per iteration and 1 thread 0.3-1.2 s, so it gets 1 by default
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    with (
        subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as process,
        open(log_path, "w") as log,
    ):
        for line in process.stdout:
            seconds = time.perf_counter() - start
            log.write(f"{seconds:9.1f} {line}")
            log.flush()
            found = re.match(r"step (\d+): train loss ([\d.]+), val loss ([\d.]+)", line)
            if found:
                step, train, val = int(found[1]), float(found[2]), float(found[3])
                points.append((seconds, step, train, val))
                print(f"{seconds:7.0f}s step {step}: val {val / math.log(2):.3f} bits/char")
    if process.returncode:
        raise SystemExit(f"nanoGPT's train.py failed ({process.returncode}); see {log_path}")
    return points


def _textgen_train_seconds(run_dir: Path) -> float:
    records = [json.loads(line) for line in (run_dir / "logs" / "metrics.jsonl").open()]
    return sum(r.get("epoch_seconds", 0.0) for r in records if r.get("kind") == "epoch")


def nanogpt_train(
    nanogpt: Path,
    python: str,
    seconds: float,
    eval_interval: int,
    threads: int,
    iterations: int = 0,
) -> None:
    """Probe nanoGPT's speed here for 60 iterations, then train it for as many iterations
    as fill `seconds` (its cosine schedule ends there, as in its README run), or for
    `iterations` when given (the load of a shared machine changes: when a first run
    ends far from `seconds`, rerun it with the iterations its measured pace gives)."""
    probe_log = nanogpt / "probe.log"
    probe = [python, "train.py", *BABY, "--max_iters=60", "--lr_decay_iters=60"]
    probe += ["--eval_interval=1000", "--log_interval=1", f"--out_dir={NANOGPT_OUT}-probe"]
    _run_logged(probe, nanogpt, probe_log, threads)
    times = [float(m[1]) for m in re.finditer(r"time ([\d.]+)ms", probe_log.read_text())]
    per_iter = float(np.median(times[10:])) / 1000  # after warm-up
    # the evaluations take time too: 2 x eval_iters forward passes every eval_interval
    iters = iterations or int(seconds / per_iter / (1 + 40 / 3 / eval_interval))
    iters = max(eval_interval, iters // eval_interval * eval_interval)
    print(
        f"nanoGPT: {per_iter * 1000:.0f} ms/iteration here: {iters} iterations for {seconds:.0f}s"
    )
    command = [python, "train.py", *BABY, f"--max_iters={iters}", f"--lr_decay_iters={iters}"]
    command += [f"--eval_interval={eval_interval}"]
    start = time.perf_counter()
    points = _run_logged(command, nanogpt, nanogpt / "train.log", threads)
    report = {
        "command": f"OMP_NUM_THREADS={threads} " + " ".join(command),
        "iterations": iters,
        "ms_per_iteration_probe": per_iter * 1000,
        "wall_seconds": time.perf_counter() - start,
        "target_seconds": seconds,
        "points": [dict(zip(("seconds", "step", "train_loss", "val_loss"), p)) for p in points],
    }
    (nanogpt / "ksuite_train.json").write_text(json.dumps(report, indent=1))
    print(f"wrote {nanogpt / 'ksuite_train.json'}")


# ---- scoring nanoGPT's checkpoint on the test split (runs in nanoGPT's Python) --------------

SCORE_SCRIPT = r"""
import json, math, pickle, sys
import torch
sys.path.insert(0, ".")
from model import GPT, GPTConfig

folder, out_dir = sys.argv[1], sys.argv[2]
meta = pickle.load(open(f"{folder}/meta.pkl", "rb"))
texts = json.load(open(f"{folder}/test.json"))
checkpoint = torch.load(f"{out_dir}/ckpt.pt", map_location="cpu")
model = GPT(GPTConfig(**checkpoint["model_args"]))
state = {k.removeprefix("_orig_mod."): v for k, v in checkpoint["model"].items()}
model.load_state_dict(state)
model.eval()
context = model.config.block_size
stride = context // 2
nats, chars = 0.0, 0
with torch.no_grad():
    for text in texts:
        # a newline stands in for the document start (nanoGPT has no such token)
        ids = torch.tensor([meta["stoi"]["\n"]] + [meta["stoi"][c] for c in text])
        n = len(ids) - 1
        done = 0
        for start in range(0, max(n - context, 0) + stride, stride):
            x = ids[start : start + context][None]
            y = ids[start + 1 : start + context + 1][None]
            logits, _ = model(x[:, : y.shape[1]], y)  # with targets: logits at every position
            logp = torch.log_softmax(logits[0].double(), -1)
            first = max(done - start, 0)
            picked = logp[torch.arange(y.shape[1]), y[0]][first:]
            nats -= float(picked.sum())
            done = start + y.shape[1]
        chars += len(text)
print(json.dumps({"bits_per_char": nats / chars / math.log(2), "test_chars": chars,
                  "test_documents": len(texts), "iter_num": int(checkpoint["iter_num"]),
                  "best_val_loss": float(checkpoint["best_val_loss"])}))
"""


def nanogpt_score(nanogpt: Path, python: str) -> None:
    folder = nanogpt / "data" / NANOGPT_DATASET
    out = subprocess.run(
        [python, "-c", SCORE_SCRIPT, str(folder), NANOGPT_OUT],
        cwd=nanogpt,
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    (nanogpt / "ksuite_test.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


# ---- both curves -----------------------------------------------------------------------------


def plot(run_dir: Path, nanogpt: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    info = json.loads((run_dir / "info.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    records = [json.loads(line) for line in (run_dir / "logs" / "metrics.jsonl").open()]
    epochs = [r for r in records if r.get("kind") == "epoch"]
    # per-epoch validation loss is per token: times tokens per character (the DOC tokens,
    # one per document, are inputs only)
    tokens_per_char = (info["val_tokens"] - info["val_documents"]) / info["val_chars"]
    seconds = np.cumsum([r["epoch_seconds"] for r in epochs])
    ours = [r["val_loss"] * tokens_per_char / math.log(2) for r in epochs]
    theirs = json.loads((nanogpt / "ksuite_train.json").read_text())
    their_test = json.loads((nanogpt / "ksuite_test.json").read_text())
    points = theirs["points"]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.plot(seconds / 60, ours, "o-", color="tab:blue", label="textgen default (GPT, BPE): val")
    ax.plot(
        [p["seconds"] / 60 for p in points],
        [p["val_loss"] / math.log(2) for p in points],
        ".-",
        color="tab:orange",
        label="nanoGPT baby (char): val (its 20-batch estimate)",
    )
    ax.axhline(
        metrics["ngram_bits_per_char"], color="gray", ls="--", label="Kneser-Ney 5-gram: test"
    )
    end = max(seconds[-1], points[-1]["seconds"]) / 60
    ax.plot([end], [metrics["bits_per_char"]], "*", ms=13, color="tab:blue", label="textgen: test")
    ax.plot(
        [end], [their_test["bits_per_char"]], "*", ms=13, color="tab:orange", label="nanoGPT: test"
    )
    ax.set_xlabel("training wall time on 2 shared CPU cores (minutes)")
    ax.set_ylabel("bits per character")
    ax.set_ylim(1.0, 4.0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Same English text, same split, same 2 cores", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")
    summary = {
        "textgen": {
            "test_bits_per_char": metrics["bits_per_char"],
            "ci95": metrics.get("bits_per_char_ci95"),
            "train_seconds": float(seconds[-1]),
            "val_curve": list(zip(seconds.tolist(), ours)),
        },
        "ngram_test_bits_per_char": metrics["ngram_bits_per_char"],
        "nanogpt": {
            "test_bits_per_char": their_test["bits_per_char"],
            "iterations": theirs["iterations"],
            "train_seconds": theirs["wall_seconds"],
            "val_curve": [(p["seconds"], p["val_loss"] / math.log(2)) for p in points],
        },
    }
    out.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items()}, default=str)[:2000])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("english", help="build the English text from the GNU info manuals")
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("nanogpt-data", help="textgen's split as nanoGPT's dataset files")
    p.add_argument("--text", type=Path, required=True)
    p.add_argument("--nanogpt", type=Path, required=True)
    p = sub.add_parser("nanogpt-train", help="nanoGPT's baby CPU config for equal wall time")
    p.add_argument("--nanogpt", type=Path, required=True)
    p.add_argument("--python", required=True, help="a Python with PyTorch (not the project's)")
    p.add_argument("--seconds", type=float, help="training wall time to fill")
    p.add_argument("--seconds-from", type=Path, help="a textgen run: its training seconds")
    p.add_argument("--eval-interval", type=int, default=250)
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS for PyTorch")
    p.add_argument("--iterations", type=int, default=0, help="instead of the probe's estimate")
    p = sub.add_parser("nanogpt-score", help="nanoGPT's checkpoint on the test split")
    p.add_argument("--nanogpt", type=Path, required=True)
    p.add_argument("--python", required=True)
    p = sub.add_parser("plot", help="both curves in one PNG (+ a .json of the numbers)")
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--nanogpt", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.step == "english":
        build_english(args.out)
    elif args.step == "nanogpt-data":
        nanogpt_data(args.text, args.nanogpt)
    elif args.step == "nanogpt-train":
        seconds = args.seconds or _textgen_train_seconds(args.seconds_from)
        nanogpt_train(
            args.nanogpt, args.python, seconds, args.eval_interval, args.threads, args.iterations
        )
    elif args.step == "nanogpt-score":
        nanogpt_score(args.nanogpt, args.python)
    else:
        plot(args.run_dir, args.nanogpt, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
