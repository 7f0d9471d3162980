"""What the textgen evaluation protocol change does to the Kneser-Ney 5-gram baseline on
the built-in corpus, one change at a time.

The old split (4M characters, train / validation only, files de-duplicated by exact hash)
is rebuilt with the corpus code as it was before the change, read from git history
(`--before COMMIT`, default: the parent of the commit that introduced the test split),
and scored as published, then without the generated tables, then with the lines
training has verbatim cut out; last, the new test split:

    python benchmarks/textgen_protocol.py
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

BEFORE = "3748dab^"  # the commit before textgen's test split


def _old_corpus_module(commit: str):
    source = subprocess.run(
        ["git", "show", f"{commit}:keras_suite/apps/textgen/corpus.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "textgen_corpus_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("textgen_corpus_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default=BEFORE, help="a commit with the old corpus code")
    args = parser.parse_args(argv)
    from keras_suite.apps.textgen import corpus as new
    from keras_suite.apps.textgen.config import DataConfig, default
    from keras_suite.apps.textgen.ngram import KneserNey

    old = _old_corpus_module(args.before)
    documents = old.load_corpus(DataConfig(max_chars=4_000_000)).documents
    train, val = old.split_documents(documents, 0.05, 42, "auto", 20_000)
    lm = KneserNey(5).fit([t for _, t in train])

    def row(name, docs, model=lm):
        bits = model.bits_per_char([t for _, t in docs])
        chars = sum(len(t) for _, t in docs)
        print(f"| {name} | {len(docs)} | {chars:,} | {bits:.3f} |", flush=True)

    print("| scored text | documents | characters | Kneser-Ney 5-gram bits/char |")
    print("|---|---|---|---|")
    row("old validation split, as published", val)
    tables = [(n, t) for n, t in val if new.looks_generated(t)]
    rest = [(n, t) for n, t in val if not new.looks_generated(t)]
    row(f"its generated tables only ({', '.join(n for n, _ in tables)})", tables)
    row("its other files", rest)
    kept, _ = new.remove_training_lines(train, rest)
    row("its other files, lines training has verbatim cut out", kept)
    d = default().data
    corpus = new.load_corpus(d)
    split = new.make_split(
        corpus.documents,
        {"test": d.test_fraction, "val": d.val_fraction},
        default().train.seed,
        d.split,
        d.block_chars,
    )
    new_lm = KneserNey(5).fit([t for _, t in split.train])
    row("new test split (whole built-in corpus, tables out, lines cut)", split.test, new_lm)
    row("new validation split", split.val, new_lm)
    print(json.dumps({"removed": split.removed}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
