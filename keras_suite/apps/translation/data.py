"""Sentence pairs -> subword ids -> length-bucketed batches.

Sources: the built-in number task (apps/translation/numbers.py) or tab-separated files
(`source<TAB>target[<TAB>anything]`, UTF-8: the Tatoeba/Anki format; a UTF-8, UTF-16 or
UTF-32 byte-order mark is honoured, NUL bytes without one are refused). Files named
train*/val*/dev*/test* are used as those splits; all other files are pooled and split
with a seeded permutation. Unusable lines are skipped and counted by reason.

The test split is scored whole (docs/translation.md, "Evaluation protocol"): no length
filter applies to it (a long source is cut to the model's input length, a reference is
never dropped), and a test pair whose normalised source equals a training or validation
source is removed and counted.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np

from keras_suite import common
from keras_suite.apps.translation.numbers import english, french, number_pairs
from keras_suite.apps.translation.tokenizer import (
    END_ID,
    PAD_ID,
    START_ID,
    SubwordTokenizer,
    learn_vocabulary,
)
from keras_suite.common.app import Datasets
from keras_suite.common.data import epoch_seed, split_indices
from keras_suite.common.errors import UserError
from keras_suite.common.runlog import log

tf = common.quiet_import_tensorflow()

SOURCE_VOCAB, TARGET_VOCAB = "source_vocab.txt", "target_vocab.txt"
SKIP_REASONS = ("no tab", "empty side", "bad encoding", "too long (words)", "too long (subwords)")
# Byte-order marks, longest first (UTF-32-LE's begins with UTF-16-LE's).
BYTE_ORDER_MARKS = (
    (codecs.BOM_UTF32_LE, "utf-32", "UTF-32"),
    (codecs.BOM_UTF32_BE, "utf-32", "UTF-32"),
    (codecs.BOM_UTF8, "utf-8-sig", "UTF-8"),
    (codecs.BOM_UTF16_LE, "utf-16", "UTF-16"),
    (codecs.BOM_UTF16_BE, "utf-16", "UTF-16"),
)
# how near-duplicates of training pairs are found (info["evaluation_split"])
DUPLICATE_RULE = (
    "normalised source: NFKC, case-folded, printf/format placeholders (%s, %(name)s, {0}, "
    "${x}) and numbers replaced by one slot, punctuation and symbols dropped, whitespace "
    "collapsed; a val pair whose normalised source is a training source, and a test pair "
    "whose normalised source is a training or kept val source, is removed and counted"
)
_PLACEHOLDER = re.compile(
    r"%(?:\([^)]*\))?[-+#0]*(?:\d+\$)?[\d.*]*[hlLqjzt]*[a-zA-Z@%]"  # printf, %(name)s
    r"|\{[^{}\s]*\}"  # {0}, {name}
    r"|\$\{?\w+\}?"  # $x, ${x}
    r"|\d+(?:[.,]\d+)*"  # numbers
)
_SLOT = "\ue000"  # a private-use character: kept by the punctuation filter below


class SkipCounter:
    """Skipped lines by reason, with the first few places each reason happened."""

    def __init__(self):
        self.counts: Counter = Counter()
        self.examples: dict = {}

    def add(self, reason: str, where: str) -> None:
        self.counts[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < 3:
            self.examples[reason].append(where)

    def report(self) -> dict:
        return {
            r: {"count": self.counts[r], "first": self.examples[r]}
            for r in SKIP_REASONS
            if self.counts[r]
        }

    def log(self, total: int) -> None:
        if not self.counts:
            return
        parts = [
            f"{self.counts[r]} {r} (e.g. {', '.join(self.examples[r])})"
            for r in SKIP_REASONS
            if self.counts[r]
        ]
        log.warning(
            "skipped %d of %d lines: %s", sum(self.counts.values()), total, "; ".join(parts)
        )


def tsv_files(path: str) -> list[Path]:
    files: list[Path] = []
    for part in [p.strip() for p in str(path).split(",") if p.strip()]:
        p = Path(part).expanduser()
        if p.is_dir():
            found = sorted(
                f for f in p.iterdir() if f.is_file() and f.suffix.lower() in (".tsv", ".txt")
            )
            if not found:
                raise UserError(f"data.path folder {str(p)!r} has no .tsv or .txt files")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise UserError(
                f"data.path {str(p)!r} does not exist; give a file, a folder of .tsv/.txt "
                "files, or a comma-separated list of files"
            )
    return files


def text_lines(path: Path) -> list[tuple[int, str | None]]:
    """(line number, text) per line of a text file; text is None for a line that is not
    valid UTF-8. A byte-order mark decides the encoding (UTF-8, UTF-16, UTF-32, logged);
    NUL bytes without one mean UTF-16/32 text that would fill the vocabulary and the pairs
    with NULs: refused with one line saying how to convert it."""
    raw = Path(path).read_bytes()
    for mark, codec, label in BYTE_ORDER_MARKS:
        if raw.startswith(mark):
            try:
                text = raw.decode(codec)
            except UnicodeDecodeError:
                raise UserError(
                    f"{path} starts with a {label} byte-order mark but does not decode as "
                    f"{label}; convert it: iconv -f {label} -t UTF-8 {path} > {Path(path).stem}.utf8.tsv"
                ) from None
            if label != "UTF-8":
                log.info("%s: %s text (byte-order mark), decoded as such", Path(path).name, label)
            return [(n, line.rstrip("\r")) for n, line in enumerate(text.split("\n"), 1)]
    nuls = raw.count(0)
    if nuls > 0.1 * len(raw):  # ASCII-range text in UTF-16 is half NUL bytes
        guess = "UTF-16LE" if raw[1::2].count(0) >= raw[0::2].count(0) else "UTF-16BE"
        raise UserError(
            f"{path} is not UTF-8: {nuls} NUL bytes and no byte-order mark, likely {guess}; "
            f"convert it: iconv -f {guess} -t UTF-8 {path} > {Path(path).stem}.utf8.tsv"
        )
    lines = []
    for number, line in enumerate(raw.split(b"\n"), 1):
        try:
            text = line.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError:
            text = None
        lines.append((number, None if text is None or "\x00" in text else text))
    return lines


def read_tsv(path: Path, skipped: SkipCounter) -> tuple[list, int]:
    """(source, target) pairs of one file, and the number of non-blank lines read. No
    length filter here: it applies to the training and validation splits only
    (`drop_long_pairs`), never to the test split."""
    pairs, lines = [], 0
    for number, line in text_lines(path):
        where = f"{path.name}:{number}"
        if line is None:
            skipped.add("bad encoding", where)
            lines += 1
            continue
        if not line.strip():
            continue  # blank lines are not data
        lines += 1
        fields = line.split("\t")
        if len(fields) < 2:
            skipped.add("no tab", where)
            continue
        source, target = " ".join(fields[0].split()), " ".join(fields[1].split())
        if not source or not target:
            skipped.add("empty side", where)
            continue
        pairs.append((source, target))
    return pairs, lines


def drop_long_pairs(pairs, max_source_words, max_target_words, skipped, split) -> list:
    """Training/validation pairs within the word limits (longer ones counted)."""
    kept = []
    for i, (source, target) in enumerate(pairs):
        if len(source.split()) > max_source_words or len(target.split()) > max_target_words:
            skipped.add("too long (words)", f"{split} pair {i}")
        else:
            kept.append((source, target))
    return kept


def normalize_for_duplicates(text: str) -> str:
    """The key two sentences share when they differ only in case, whitespace,
    punctuation, a placeholder or a number (DUPLICATE_RULE)."""
    text = _PLACEHOLDER.sub(f" {_SLOT} ", unicodedata.normalize("NFKC", text)).casefold()
    text = "".join(" " if unicodedata.category(c)[0] in "PS" else c for c in text)
    return " ".join(text.split())


def remove_near_duplicates(splits: dict) -> dict:
    """Drop val pairs whose normalised source is a training source and test pairs whose
    normalised source is a training or kept val source, in place; -> {split: removed}."""
    seen = {normalize_for_duplicates(s) for s, _ in splits["train"]}
    removed = {}
    for name in ("val", "test"):
        kept, dropped = [], []
        for pair in splits[name]:
            (dropped if normalize_for_duplicates(pair[0]) in seen else kept).append(pair)
        removed[name] = len(dropped)
        if dropped:
            log.warning(
                "removed %d of %d %s pairs whose source equals a training%s source after "
                "normalisation (case, whitespace, punctuation, placeholders, numbers), e.g. %s",
                len(dropped),
                len(splits[name]),
                name,
                " or validation" if name == "test" else "",
                "; ".join(repr(s) for s, _ in dropped[:3]),
            )
        splits[name] = kept
        seen |= {normalize_for_duplicates(s) for s, _ in kept}
    return removed


def load_pairs(cfg) -> tuple[dict, dict]:
    """{"train"|"val"|"test": [(source, target), ...]} and a report of skipped lines."""
    d = cfg.data
    if d.source == "numbers":
        # 0-99 are the task's vocabulary ("sept", "soixante et onze"), which no model can
        # guess: all of them are trained on; the held-out numbers are >= 100.
        small = [(english(n, False), french(n)) for n in range(min(100, d.num_train))]
        _, pairs = number_pairs(
            max(d.num_train - 4 * len(small), 0) + d.num_val + d.num_test,
            seed=cfg.train.seed,
            min_value=100,
        )
        test, val = pairs[: d.num_test], pairs[d.num_test : d.num_test + d.num_val]
        # ... and shown 4x: they are 1% of the pairs instead of 0.25%, so one-word inputs
        # (which a user types first) are not a rarity the decoder never learned to end
        train = (small * 4 + pairs[d.num_test + d.num_val :])[: max(d.num_train, len(small))]
        return {"train": train, "val": val, "test": test}, {
            "lines": len(small) + len(pairs),
            "origin": {
                "train": "built-in: 0-99 (4x) and numbers >= 100",
                "val": f"built-in: {len(val)} held-out numbers >= 100",
                "test": f"built-in: {len(test)} held-out numbers >= 100 (never in training)",
            },
        }
    if d.source == "tfds":  # a dataset by name: keras_suite/common/tfds.py
        from keras_suite.common.tfds import text_pairs

        splits, origin, keys = text_pairs(d, cfg.train.seed)
        log.info("TFDS %s: %s -> %s; %s", d.name, keys[0], keys[1], origin)
        return splits, {"lines": sum(len(p) for p in splits.values())}
    skipped = SkipCounter()
    explicit: dict = {"train": [], "val": [], "test": []}
    pooled: list = []
    origin: dict = {}  # split -> the files named after it
    pooled_files: list = []  # the other files, split by seeded fractions
    total = 0
    for path in tsv_files(d.path):
        pairs, lines = read_tsv(path, skipped)
        total += lines
        stem = path.stem.lower()
        split = next(
            (
                s
                for s, prefixes in (
                    ("train", ("train",)),
                    ("val", ("val", "dev")),
                    ("test", ("test",)),
                )
                if stem.startswith(prefixes)
            ),
            None,
        )
        (explicit[split] if split else pooled).extend(pairs)
        if split:
            origin.setdefault(split, []).append(path.name)
        else:
            pooled_files.append(path.name)
    skipped.log(total)
    if d.max_pairs:
        pooled = pooled[: d.max_pairs]
    if pooled:
        val_f = 0.0 if explicit["val"] else d.val_fraction
        test_f = 0.0 if explicit["test"] else d.test_fraction
        train_i, val_i, test_i = split_indices(len(pooled), val_f, test_f, cfg.train.seed)
        explicit["train"] += [pooled[i] for i in train_i]
        explicit["val"] += [pooled[i] for i in val_i]
        explicit["test"] += [pooled[i] for i in test_i]
    if not explicit["train"]:
        raise UserError(
            f"no usable sentence pairs in {d.path}: lines must be source<TAB>target, UTF-8 "
            f"(skipped: {dict(skipped.counts) or 'none'})"
        )
    if not explicit["test"]:
        raise UserError(
            f"no test pairs from {d.path}: raise data.test_fraction or add a test*.tsv file"
        )
    where, pool = {}, ", ".join(pooled_files[:3]) + (" ..." if len(pooled_files) > 3 else "")
    for split in ("train", "val", "test"):
        parts = list(origin.get(split, []))
        if pooled and split == "train":
            parts.append(f"{pool} (what the carving left)")
        elif pooled and split not in origin:
            fraction = d.val_fraction if split == "val" else d.test_fraction
            parts.append(f"carved from {pool} (seeded, data.{split}_fraction={fraction:g})")
        where[split] = " + ".join(parts) or "none"
    return explicit, {"lines": total, "skipped": skipped.report(), "origin": where}


def vocabularies(cfg, artifacts, train_pairs) -> tuple[list, list]:
    """Learned from the training split the first time, then read back from the run."""
    d = cfg.data
    if not (artifacts.exists(SOURCE_VOCAB) and artifacts.exists(TARGET_VOCAB)):
        sources, targets = [p[0] for p in train_pairs], [p[1] for p in train_pairs]
        if d.shared_vocabulary:
            log.info(
                "learning one shared WordPiece vocabulary from %d training pairs", len(train_pairs)
            )
            src = tgt = learn_vocabulary(sources + targets, d.source_vocab_size, d.lowercase)
        else:
            log.info("learning WordPiece vocabularies from %d training pairs", len(train_pairs))
            src = learn_vocabulary(sources, d.source_vocab_size, d.lowercase)
            tgt = learn_vocabulary(targets, d.target_vocab_size, d.lowercase)
        artifacts.write_text(SOURCE_VOCAB, "\n".join(src) + "\n")
        artifacts.write_text(TARGET_VOCAB, "\n".join(tgt) + "\n")
    return (
        artifacts.read_text(SOURCE_VOCAB).splitlines(),
        artifacts.read_text(TARGET_VOCAB).splitlines(),
    )


def tokenizers(cfg, artifacts) -> tuple[SubwordTokenizer, SubwordTokenizer]:
    return (
        SubwordTokenizer(
            str(artifacts.path(SOURCE_VOCAB)), cfg.data.lowercase, name="source_tokenizer"
        ),
        SubwordTokenizer(
            str(artifacts.path(TARGET_VOCAB)), cfg.data.lowercase, name="target_tokenizer"
        ),
    )


def encode_pairs(
    pairs,
    src_tok,
    tgt_tok,
    max_src: int,
    max_tgt: int,
    skipped: SkipCounter | None,
    split: str,
    cut: bool = False,
    counts: Counter | None = None,
):
    """Padded int32 arrays: sources [N, max_src] and targets [N, max_tgt + 2] (START ... END).
    Pairs longer than that in subword pieces are dropped (counted), unless `cut` (the test
    split, which is scored whole): then a long source keeps its first max_src pieces, as the
    served Translator cuts it, and a long reference its first max_tgt pieces in these
    teacher-forced arrays only (BLEU reads the full reference text); `counts` gets both."""
    sources, targets, kept = [], [], []
    for start in range(0, len(pairs), 2048):
        chunk = pairs[start : start + 2048]
        s = src_tok.tokenize(tf.constant([p[0] for p in chunk])).to_list()
        t = tgt_tok.tokenize(tf.constant([p[1] for p in chunk])).to_list()
        for i, (a, b) in enumerate(zip(s, t)):
            if cut:
                if counts is not None:
                    counts["sources_cut"] += len(a) > max_src
                    counts["references_longer_than_output_limit"] += len(b) > max_tgt
                a, b = a[:max_src], b[:max_tgt]
            elif len(a) > max_src or len(b) > max_tgt or not a or not b:
                if skipped is not None:
                    skipped.add("too long (subwords)", f"{split} pair {start + i}")
                continue
            sources.append(a + [PAD_ID] * (max_src - len(a)))
            targets.append([START_ID] + b + [END_ID] + [PAD_ID] * (max_tgt - len(b)))
            kept.append(chunk[i])
    src = np.asarray(sources, np.int32).reshape(-1, max_src)
    tgt = np.asarray(targets, np.int32).reshape(-1, max_tgt + 2)
    return src, tgt, kept


def _trim(source, target):
    """Drop the padding so that batches pad only to their own longest pair."""
    s = tf.reduce_sum(tf.cast(source != PAD_ID, tf.int32))
    t = tf.reduce_sum(tf.cast(target != PAD_ID, tf.int32))
    return source[:s], target[:t]


def batches_per_epoch(src_lengths: np.ndarray, boundaries, batch_size: int) -> int:
    """Full batches bucket_by_sequence_length yields (each bucket drops its own remainder)."""
    edges = [0, *boundaries, np.inf]
    counts = [
        int(((src_lengths >= lo) & (src_lengths < hi)).sum())
        for lo, hi in zip(edges[:-1], edges[1:])
    ]
    return sum(c // batch_size for c in counts)


def build_datasets(cfg, artifacts) -> Datasets:
    d = cfg.data
    splits, report = load_pairs(cfg)
    skipped = SkipCounter()
    total = sum(len(p) for p in splits.values())
    # length limits are for what the model trains and validates on; the test split is whole
    for name in ("train", "val"):
        splits[name] = drop_long_pairs(
            splits[name], d.max_source_words, d.max_target_words, skipped, name
        )
    removed = remove_near_duplicates(splits)
    if not splits["test"]:
        raise UserError(
            f"every test pair of {d.path or d.source} has a near-duplicate in training "
            "(same source after normalisation): add distinct test pairs"
        )
    vocabularies(cfg, artifacts, splits["train"])
    src_tok, tgt_tok = tokenizers(cfg, artifacts)
    counts: Counter = Counter()
    arrays = {
        name: encode_pairs(
            pairs,
            src_tok,
            tgt_tok,
            d.max_source_tokens,
            d.max_target_tokens,
            skipped,
            name,
            cut=name == "test",
            counts=counts,
        )
        for name, pairs in splits.items()
    }
    if skipped.counts:
        skipped.log(total)
    if counts["sources_cut"] or counts["references_longer_than_output_limit"]:
        log.info(
            "test: all %d pairs scored; %d sources longer than %d pieces cut to it, %d "
            "references longer than the %d pieces the decoder can emit (scored in full)",
            len(splits["test"]),
            counts["sources_cut"],
            d.max_source_tokens,
            counts["references_longer_than_output_limit"],
            d.max_target_tokens,
        )
    train_src, train_tgt, _ = arrays["train"]
    batch = cfg.train.batch_size
    boundaries = [
        b + 1 for b in d.bucket_boundaries
    ]  # bucket_by_sequence_length: length < boundary
    steps = batches_per_epoch((train_src != PAD_ID).sum(1) + 1, boundaries, batch)
    if cfg.train.steps_per_epoch:
        steps = min(steps, cfg.train.steps_per_epoch)
    base = tf.data.Dataset.from_tensor_slices((train_src, train_tgt))

    def train_epoch(epoch: int):
        ds = base.shuffle(
            len(train_src), seed=epoch_seed(cfg.train.seed, epoch), reshuffle_each_iteration=False
        )
        ds = ds.map(_trim, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.bucket_by_sequence_length(
            lambda s, t: tf.shape(s)[0] + 1,
            boundaries,
            [batch] * (len(boundaries) + 1),
            padded_shapes=([None], [None]),
            padding_values=(PAD_ID, PAD_ID),
            drop_remainder=True,
        )
        return ds.prefetch(tf.data.AUTOTUNE)

    def evaluation(name):
        src, tgt, _ = arrays[name]
        if not len(src):
            return None
        return (
            tf.data.Dataset.from_tensor_slices((src, tgt))
            .map(_trim)
            .padded_batch(batch, padded_shapes=([None], [None]))
            .prefetch(tf.data.AUTOTUNE)
        )

    skipped_report = dict(report.get("skipped", {}))
    skipped_report.update(skipped.report())
    info = {
        "source": d.source,
        "source_vocab_size": len(artifacts.read_text(SOURCE_VOCAB).splitlines()),
        "target_vocab_size": len(artifacts.read_text(TARGET_VOCAB).splitlines()),
        "max_source_tokens": d.max_source_tokens,
        "max_target_tokens": d.max_target_tokens,
        "lowercase": d.lowercase,
        "steps_per_epoch": int(steps),
        "num_train": int(len(train_src)),
        "num_val": int(len(arrays["val"][0])),
        "num_test": int(len(arrays["test"][0])),
        "evaluation_split": {
            "split": "test",
            "size": int(len(arrays["test"][0])),
            "near_duplicates_removed": int(removed["test"]),
            "duplicate_rule": DUPLICATE_RULE,
            "origin": report.get("origin", {}).get("test", d.source),
            "length_filter": "none: every test pair is scored",
            "sources_cut": int(counts["sources_cut"]),
            "references_longer_than_output_limit": int(
                counts["references_longer_than_output_limit"]
            ),
        },
        "split_origin": report.get("origin", {}),
        "near_duplicates_removed": {k: int(v) for k, v in removed.items()},
        "split_sizes": {
            "train": int(len(train_src)),
            "val": int(len(arrays["val"][0])),
            "test": int(len(arrays["test"][0])),
        },
        "lines_read": report.get("lines", 0),
        "skipped": skipped_report,
    }
    log.info(
        "translation data: %d train / %d val / %d test pairs, vocabularies %d / %d pieces",
        info["num_train"],
        info["num_val"],
        info["num_test"],
        info["source_vocab_size"],
        info["target_vocab_size"],
    )
    extras = {
        name: arrays[name][2] for name in arrays
    }  # the (source, target) strings kept, per split
    extras["arrays"] = {name: arrays[name][:2] for name in arrays}
    return Datasets(
        train_epoch=train_epoch,
        steps_per_epoch=steps,
        val=evaluation("val"),
        test=evaluation("test"),
        info=info,
        extras=extras,
    )
