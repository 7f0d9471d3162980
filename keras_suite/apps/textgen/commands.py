"""`ksuite generate RUN_DIR --prompt "..."` (or `ksuite generate textgen RUN_DIR ...`):
sample from a trained language model, streaming text to the terminal as it is produced.

Top level stays cheap (no TensorFlow import): `ksuite --help` reads COMMANDS."""

from __future__ import annotations

import sys

from keras_suite.common.commands import AppCommand
from keras_suite.common.errors import UserError


def _arguments(p) -> None:
    p.add_argument("run_dir", help="a finished `ksuite train textgen` run directory")
    p.add_argument("--prompt", default="", help="text to continue (empty: start a new document)")
    p.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="default: the run's generate.max_new_tokens",
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="0 = greedy; default: the run's generate.temperature",
    )
    p.add_argument(
        "--top-k", type=int, default=None, help="keep the k most likely tokens (0 = off)"
    )
    p.add_argument(
        "--top-p",
        type=float,
        default=None,
        help="nucleus: keep the most likely tokens up to this mass (1 = off)",
    )
    p.add_argument("--seed", type=int, default=0, help="same seed, same text")
    p.add_argument(
        "--stop",
        action="append",
        default=[],
        help="stop at this string (repeatable); it is not printed",
    )
    p.add_argument(
        "--beam", type=int, default=0, help="beam search with this many beams instead of sampling"
    )
    p.add_argument(
        "--num-samples", type=int, default=1, help="samples with seeds seed, seed+1, ..."
    )
    p.add_argument(
        "--tflite",
        default=None,
        metavar="FILE.tflite",
        help="decode with a converted decoding step (RUN_DIR/tflite/model_<mode>.tflite) instead of Keras",
    )


def _run(args) -> int:
    from pathlib import Path

    from keras_suite.common.commands import check_seed

    # the options first: a mistake is one line before the model loads
    check_seed(args.seed, args.num_samples)
    if args.num_samples < 1 or args.beam < 0:
        raise UserError("--num-samples must be >= 1 and --beam >= 0")
    if args.tflite and not Path(args.tflite).is_file():
        raise UserError(
            f"--tflite {args.tflite}: no such file; run `ksuite convert {args.run_dir}` first"
        )
    from keras_suite.apps.textgen.sampling import KerasDecoder, beam_search, generate
    from keras_suite.apps.textgen.tokenizers import Tokenizer
    from keras_suite.common.run import load_run

    run = load_run(args.run_dir)
    if run.app.name != "textgen":
        raise UserError(
            f"{args.run_dir} is a {run.app.name} run; `ksuite generate textgen` needs a textgen run"
        )
    g = run.cfg.generate
    max_new = g.max_new_tokens if args.max_new_tokens is None else args.max_new_tokens
    temperature = g.temperature if args.temperature is None else args.temperature
    top_k = g.top_k if args.top_k is None else args.top_k
    top_p = g.top_p if args.top_p is None else args.top_p
    if max_new < 0 or top_k < 0 or not 0 < top_p <= 1:
        raise UserError("--max-new-tokens and --top-k must be >= 0 and --top-p in (0, 1]")
    tokenizer = Tokenizer.load(run.artifacts)
    decoder = KerasDecoder(run.state.model)
    if args.tflite:
        from keras_suite.apps.textgen.sampling import SignatureDecoder
        from keras_suite.tflite.runtime import LiteRTSignature

        model = run.state.model
        context = model.context if hasattr(model, "num_heads") else None
        decoder = SignatureDecoder(
            LiteRTSignature(Path(args.tflite).read_bytes(), "decode_step", num_threads=2),
            model.state_shapes(1),
            context,
        )
    out = sys.stdout
    for i in range(max(1, args.num_samples)):
        if i:
            out.write("\n" + "-" * 40 + "\n")
        out.write(args.prompt)
        out.flush()
        if args.beam:
            try:
                result = beam_search(decoder, tokenizer, args.prompt, max_new, args.beam)
            except ValueError as error:
                raise UserError(str(error)) from None
            out.write(result["text"])
        else:

            def show(text):
                out.write(text)
                out.flush()

            generate(
                decoder,
                tokenizer,
                args.prompt,
                max_new,
                temperature,
                top_k,
                top_p,
                seed=args.seed + i,
                stop=tuple(args.stop),
                on_text=show,
            )
        out.write("\n")
        out.flush()
    return 0


COMMANDS = [
    AppCommand(
        "generate",
        "sample text from a trained language model, streamed as it is produced",
        _arguments,
        _run,
    )
]
