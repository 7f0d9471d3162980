"""`ksuite bench textgen`: GPT generation speed with the KV cache vs recomputing the whole
prefix at every step (the keras-io "miniature GPT" way), at 64 / 256 / 512 new tokens.

Implementations, all on the same model (the default preset's GPT, or a run's), batch 1,
same prompt, greedy decoding:
  kv_cache_graph     the SavedModel's `generate` body: tf.while_loop of one-token steps
                     against the KV cache (what TF Serving runs)
  kv_cache_python    a Python loop over the compiled one-token step (`ksuite generate`)
  recompute_compiled a Python loop; every step runs the full causal forward pass on the
                     window padded to the context length (keras-io pads to maxlen) in a
                     compiled tf.function, then samples at the last real position
  recompute_predict  the same with `model.predict` per token, literally what the keras-io
                     example does (only at the smallest length: it is slow)
The context must hold prompt + new tokens, so a fresh GPT with context 640 is built from
the preset's sizes (speed does not depend on the weights' values) unless --run-dir names
a run with a long enough context.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from keras_suite import common
from keras_suite.common.runlog import setup_logging, write_json_atomic


def _parse(argv):
    p = argparse.ArgumentParser(
        prog="ksuite bench textgen",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--preset", default="default", help="preset whose model sizes are used")
    p.add_argument("--run-dir", default=None, help="use this trained run's GPT instead")
    p.add_argument(
        "--lengths", type=int, nargs="+", default=[64, 256, 512], help="new tokens per measurement"
    )
    p.add_argument(
        "--context",
        type=int,
        default=640,
        help="context of the fresh model (>= prompt + longest length)",
    )
    p.add_argument("--repeats", type=int, default=2, help="timed repeats per length (best is kept)")
    p.add_argument(
        "--predict-lengths",
        type=int,
        nargs="*",
        default=[64],
        help="lengths also measured with model.predict per token (keras-io literally)",
    )
    p.add_argument("--out", default="bench-results/textgen.json")
    return p.parse_args(argv)


def _model(args):
    from keras_suite.apps.textgen.config import PRESETS
    from keras_suite.apps.textgen.model import build_model

    if args.run_dir:
        from keras_suite.common.run import load_run

        run = load_run(args.run_dir)
        if not hasattr(run.state.model, "num_heads"):
            raise SystemExit("the bench compares KV-cache and recompute decoding of a GPT run")
        return run.state.model, run.info["vocab_size"]
    cfg = PRESETS[args.preset]()
    cfg.model.arch = "gpt"
    vocab = 100
    return build_model(cfg.model, vocab, args.context), vocab


def main(argv=None) -> int:
    setup_logging("WARNING")
    args = _parse(argv)
    tf = common.quiet_import_tensorflow()
    from keras_suite.apps.textgen.export import graph_sample
    from keras_suite.apps.textgen.sampling import KerasDecoder

    model, vocab = _model(args)
    context = model.context
    prompt = np.random.default_rng(0).integers(3, vocab, 16).astype(np.int32)
    if len(prompt) + max(args.lengths) > context:
        raise SystemExit(
            f"context {context} cannot hold a 16-token prompt + {max(args.lengths)} new tokens"
        )

    # kv_cache_graph: the in-graph loop of the serving signature, on token ids
    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.int32)])
    def graph_generate(tokens, new):
        steps = tf.shape(tokens)[0] + new - 1
        n_prompt = tf.shape(tokens)[0]

        def body(t, prev, state, out):
            token = tf.where(t < n_prompt, tokens[tf.minimum(t, n_prompt - 1)], prev)
            logits, state = model.step(token[None], t, state)
            nxt = graph_sample(
                logits,
                tf.zeros([1]),
                tf.zeros([1], tf.int32),
                tf.ones([1]),
                tf.constant([[0, 0]], tf.int64),
            )[0]
            return t + 1, nxt, state, out.write(t, nxt)

        _, _, _, out = tf.while_loop(
            lambda t, *_: t < steps,
            body,
            (
                tf.constant(0),
                tf.constant(0),
                model.initial_state(1),
                tf.TensorArray(tf.int32, size=steps),
            ),
            maximum_iterations=context,
        )
        return out.stack()[n_prompt - 1 :]

    decoder = KerasDecoder(model)

    def kv_python(new):
        state = decoder.initial_state(1)
        for pos, t in enumerate(prompt):
            logits, state = decoder.step([t], pos, state)
        out = []
        for i in range(new):
            token = int(np.argmax(logits[0]))
            out.append(token)
            if i + 1 < new:
                logits, state = decoder.step([token], len(prompt) + i, state)
        return out

    @tf.function(input_signature=[tf.TensorSpec([1, context], tf.int32)])
    def forward(window):
        return model(window, training=False)

    def recompute(new, call):
        tokens = list(prompt)
        for _ in range(new):
            window = np.zeros([1, context], np.int32)
            window[0, : len(tokens)] = tokens
            logits = call(window)
            tokens.append(int(np.argmax(np.asarray(logits)[0, len(tokens) - 1])))
        return tokens[len(prompt) :]

    impls = {
        "kv_cache_graph": lambda n: (
            graph_generate(tf.constant(prompt), tf.constant(n)).numpy().tolist()
        ),
        "kv_cache_python": kv_python,
        "recompute_compiled": lambda n: recompute(n, forward),
        "recompute_predict": lambda n: recompute(n, lambda w: model.predict(w, verbose=0)),
    }
    for fn in impls.values():  # compile / warm up once
        fn(4)
    results = {}
    for n in args.lengths:
        row, outputs = {}, {}
        for name, fn in impls.items():
            if name == "recompute_predict" and n not in args.predict_lengths:
                continue
            best = float("inf")
            for _ in range(args.repeats if name != "recompute_predict" else 1):
                t0 = time.perf_counter()
                outputs[name] = fn(n)
                best = min(best, time.perf_counter() - t0)
            row[name] = {"seconds": best, "tokens_per_sec": n / best}
        same = all(o == outputs["kv_cache_python"] for o in outputs.values())
        row["ratio_kv_graph_vs_recompute"] = (
            row["recompute_compiled"]["seconds"] / row["kv_cache_graph"]["seconds"]
        )
        row["ratio_kv_python_vs_recompute"] = (
            row["recompute_compiled"]["seconds"] / row["kv_cache_python"]["seconds"]
        )
        row["same_tokens"] = same
        results[str(n)] = row
        line = ", ".join(
            f"{k} {v['tokens_per_sec']:.1f} tok/s" for k, v in row.items() if isinstance(v, dict)
        )
        print(
            f"{n:4d} new tokens: {line}; KV cache (graph) / recompute = "
            f"{row['ratio_kv_graph_vs_recompute']:.2f}x; same greedy tokens: {same}",
            flush=True,
        )
    report = {
        "model": {
            "parameters": int(model.count_params()),
            "context": context,
            "d_model": model.d_model,
            "layers": model.num_layers,
            "heads": model.num_heads,
            "vocab": vocab,
        },
        "prompt_tokens": len(prompt),
        "results": results,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average": os.getloadavg(),
        },
        "tensorflow": tf.__version__,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, report)
    print(f"wrote {args.out}")
    return 0
