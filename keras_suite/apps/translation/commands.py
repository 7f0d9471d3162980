"""`ksuite translate-tflite RUN_DIR ...`: translate with the converted .tflite files alone
(the encoder and the decoder step, driven by the reference loop in Python). No TF import
at module level (`ksuite --help` reads this file)."""

from __future__ import annotations

import argparse

from keras_suite.common.commands import AppCommand


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a translation run converted with `ksuite convert RUN_DIR`")
    p.add_argument("sentences", nargs="*", help="sentences (or a .txt file, one a line)")
    p.add_argument(
        "--mode",
        default="float32",
        help="which converted files: float32, dynamic, float16, int8, ...",
    )
    p.add_argument(
        "--test", type=int, default=0, help="also translate N test pairs and print BLEU/chrF/exact"
    )
    p.add_argument(
        "--tflite-dir", default=None, help="where the .tflite files are (default RUN_DIR/tflite)"
    )


def _run(args) -> int:
    from pathlib import Path

    from keras_suite.apps.translation.app import make_translator, read_sentences
    from keras_suite.apps.translation.data import TARGET_VOCAB
    from keras_suite.apps.translation.export import tflite_files_translate
    from keras_suite.apps.translation.metrics import translation_metrics
    from keras_suite.common.errors import UserError
    from keras_suite.common.run import read_run

    run = read_run(args.run_dir)
    folder = Path(args.tflite_dir or Path(args.run_dir) / "tflite")
    encoder, step = (
        folder / f"encoder_{args.mode}.tflite",
        folder / f"decoder_step_{args.mode}.tflite",
    )
    if not (encoder.exists() and step.exists()):
        raise UserError(
            f"no {encoder.name} and {step.name} in {folder}; run "
            f"`ksuite convert {args.run_dir} --quantize {args.mode}` first"
        )
    if not args.sentences and not args.test:
        raise UserError("give sentences to translate, or --test N to score N test pairs")
    vocab = run.artifacts.read_text(TARGET_VOCAB).splitlines()
    translator = make_translator(None, run.cfg, run.info, run.artifacts)  # its tokenizer only
    max_steps = int(run.info["max_target_tokens"]) + 1

    def ids(sentences):
        import tensorflow as tf

        return translator.source_ids(tf.constant(sentences)).numpy()

    if args.sentences:
        sentences = read_sentences(args.sentences)
        for s, t in zip(
            sentences, tflite_files_translate(encoder, step, ids(sentences), vocab, max_steps)
        ):
            print(f"{s}\n  -> {t}")
    if args.test:
        pairs = run.datasets().extras["test"][: args.test]
        hyps = tflite_files_translate(encoder, step, ids([s for s, _ in pairs]), vocab, max_steps)
        m = translation_metrics(hyps, [t for _, t in pairs])
        print(
            f"{args.mode} .tflite encoder + decoder step, {len(pairs)} test pairs: BLEU {m['bleu']:.2f}, "
            f"chrF {m['chrf']:.2f}, exact match {m['exact_match']:.2%}"
        )
    return 0


COMMANDS = [
    AppCommand(
        "translate-tflite",
        "translate with the .tflite encoder + decoder step (Python loop)",
        _arguments,
        _run,
    )
]
