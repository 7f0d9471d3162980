"""The copy-the-source baseline of a translation run: BLEU and chrF of the test sources
scored as if they were the translations.

On software messages, placeholders (`%s`), option names and numbers pass unchanged, so
copying the English source already earns some BLEU; a model has to beat this to have
learned anything. The script reads the run's `test_translations.tsv` (written by
`ksuite evaluate`: source, reference, outputs), so it scores exactly the test pairs the
run scored:

    python benchmarks/copy_source_baseline.py runs/translation-gettext
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from keras_suite.apps.translation.metrics import corpus_bleu, corpus_chrf


def read_pairs(path: Path) -> list[tuple[str, str]]:
    """(source, reference) per row after the header; the file is tab-joined, unquoted."""
    lines = path.read_text(encoding="utf-8").split("\n")[1:]
    return [tuple(line.split("\t")[:2]) for line in lines if line.count("\t") >= 1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a translation run evaluated by `ksuite evaluate`")
    parser.add_argument(
        "--file",
        default="test_translations.tsv",
        help="the run's file of test pairs (default test_translations.tsv)",
    )
    args = parser.parse_args(argv)
    path = Path(args.run_dir) / args.file
    if not path.is_file():
        print(
            f"error: {path} does not exist; run `ksuite evaluate {args.run_dir}`", file=sys.stderr
        )
        return 2
    pairs = read_pairs(path)
    sources, references = [s for s, _ in pairs], [r for _, r in pairs]
    bleu = corpus_bleu(sources, references)["bleu"]
    chrf = corpus_chrf(sources, references)
    print(f"copy the source, {len(pairs)} test pairs: BLEU {bleu:.2f}, chrF {chrf:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
