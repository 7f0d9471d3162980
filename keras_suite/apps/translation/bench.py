"""`ksuite bench translation RUN_DIR`: decoding speed of a trained run, side by side.

  ours_greedy     this app's decoding: one tf.function, batched, a tf.while_loop over
                  output positions with the Transformer's KV cache (or the RNN's state)
  kerasio_loop    the keras-io recipe's loop: from Python, the model called once per
                  output token on the whole prefix (no cache), on the same batches, and
                  at batch 1 as the recipe translates (one sentence at a time)
  ours_beam4      beam search, width 4, in graph, on the same batches
Every variant translates the same test sentences; sentences/s excludes tracing (one
warm-up batch first). Quality (BLEU, chrF, exact match) of greedy vs beam on them too.
Writes JSON (default bench-results/translation.json).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from keras_suite import common

tf = common.quiet_import_tensorflow()


def _rate(fn, batches, repeat: int = 1):
    fn(batches[0])  # warm-up: tracing and first-call costs are not decoding speed
    outs = []
    start = time.perf_counter()
    for _ in range(repeat):
        outs = [np.asarray(fn(b)) for b in batches]
    seconds = time.perf_counter() - start
    n = sum(len(b) for b in batches) * repeat
    return n / seconds, seconds, outs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="ksuite bench translation",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", help="a trained translation run (ksuite train translation ...)")
    p.add_argument("--sentences", type=int, default=256, help="test sentences to translate")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument(
        "--batch1-sentences",
        type=int,
        default=32,
        help="sentences for the keras-io loop at batch 1 (it is slow)",
    )
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--out", default="bench-results/translation.json")
    args = p.parse_args(argv)

    from keras_suite.apps.translation.app import make_translator
    from keras_suite.apps.translation.data import TARGET_VOCAB
    from keras_suite.apps.translation.decoding import beam_search, greedy_decode, python_loop_decode
    from keras_suite.apps.translation.metrics import translation_metrics
    from keras_suite.apps.translation.tokenizer import detokenize_python
    from keras_suite.common.run import load_run

    run = load_run(args.run_dir)
    data = run.datasets()
    model = run.state.model
    translator = make_translator(model, run.cfg, run.info, data.artifacts)
    vocab = data.artifacts.read_text(TARGET_VOCAB).splitlines()
    pairs = data.extras["test"][: args.sentences]
    source = translator.source_ids(tf.constant([s for s, _ in pairs])).numpy()
    references = [t for _, t in pairs]
    steps = translator.max_steps
    batches = [tf.constant(source[i : i + args.batch]) for i in range(0, len(source), args.batch)]

    greedy = tf.function(lambda s: greedy_decode(model, s, steps))
    beam = tf.function(
        lambda s: beam_search(model, s, steps, args.beam, run.cfg.decode.length_penalty)[0]
    )
    results = {
        "run_dir": str(args.run_dir),
        "arch": run.cfg.model.arch,
        "sentences": len(pairs),
        "batch": args.batch,
        "max_steps": steps,
        "tensorflow": tf.__version__,
        "variants": {},
    }

    def text(outs):
        return [detokenize_python(row, vocab) for out in outs for row in out]

    rows = {}
    for name, fn in (
        ("ours_greedy", greedy),
        ("kerasio_loop", lambda s: python_loop_decode(model, s, steps)),
        (f"ours_beam{args.beam}", beam),
    ):
        rate, seconds, outs = _rate(fn, batches)
        rows[name] = text(outs)
        m = translation_metrics(rows[name], references)
        results["variants"][name] = {
            "sentences_per_sec": rate,
            "seconds": seconds,
            "bleu": m["bleu"],
            "chrf": m["chrf"],
            "exact_match": m["exact_match"],
        }
        print(
            f"{name:>14}: {rate:8.1f} sentences/s ({seconds:.2f} s)  BLEU {m['bleu']:.2f}  "
            f"chrF {m['chrf']:.2f}  exact {m['exact_match']:.2%}"
        )
    one = [tf.constant(source[i : i + 1]) for i in range(min(args.batch1_sentences, len(source)))]
    rate1, seconds1, _ = _rate(lambda s: python_loop_decode(model, s, steps), one)
    ours1, oseconds1, _ = _rate(greedy, one)
    results["variants"]["kerasio_loop_batch1"] = {"sentences_per_sec": rate1, "seconds": seconds1}
    results["variants"]["ours_greedy_batch1"] = {"sentences_per_sec": ours1, "seconds": oseconds1}
    print(
        f"{'kerasio_loop_batch1':>14}: {rate1:8.1f} sentences/s; ours at batch 1: {ours1:.1f} sentences/s"
    )
    v = results["variants"]
    results["same_outputs_greedy_vs_kerasio"] = float(
        np.mean([a == b for a, b in zip(rows["ours_greedy"], rows["kerasio_loop"])])
    )
    results["speedup_greedy_vs_kerasio_batched"] = (
        v["ours_greedy"]["sentences_per_sec"] / v["kerasio_loop"]["sentences_per_sec"]
    )
    results["speedup_greedy_vs_kerasio_batch1"] = ours1 / rate1
    results["speedup_greedy_batched_vs_kerasio_batch1"] = (
        v["ours_greedy"]["sentences_per_sec"] / rate1
    )
    results[f"beam{args.beam}_time_vs_greedy"] = (
        v["ours_greedy"]["sentences_per_sec"] / v[f"ours_beam{args.beam}"]["sentences_per_sec"]
    )
    print(
        f"greedy in graph vs keras-io loop: x{results['speedup_greedy_vs_kerasio_batched']:.1f} (batch "
        f"{args.batch}), x{results['speedup_greedy_vs_kerasio_batch1']:.1f} (batch 1), "
        f"x{results['speedup_greedy_batched_vs_kerasio_batch1']:.1f} (ours batched vs the recipe's batch 1); "
        f"same outputs {results['same_outputs_greedy_vs_kerasio']:.1%}; beam {args.beam} costs "
        f"x{results[f'beam{args.beam}_time_vs_greedy']:.1f} greedy's time"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
