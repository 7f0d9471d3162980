"""Sentence pairs -> subword ids -> length-bucketed batches.

Sources: the built-in number task (apps/translation/numbers.py) or tab-separated files
(`source<TAB>target[<TAB>anything]`, UTF-8: the Tatoeba/Anki format). Files named
train*/val*/dev*/test* are used as those splits; all other files are pooled and split
with a seeded permutation. Unusable lines are skipped and counted by reason.
"""

from __future__ import annotations

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


def read_tsv(
    path: Path, max_source_words: int, max_target_words: int, skipped: SkipCounter
) -> tuple[list, int]:
    """(source, target) pairs of one file, and the number of non-blank lines read."""
    pairs, lines = [], 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            where = f"{path.name}:{number}"
            if not raw.strip():
                continue  # blank lines are not data
            lines += 1
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                skipped.add("bad encoding", where)
                continue
            fields = line.split("\t")
            if len(fields) < 2:
                skipped.add("no tab", where)
                continue
            source, target = " ".join(fields[0].split()), " ".join(fields[1].split())
            if not source or not target:
                skipped.add("empty side", where)
                continue
            if len(source.split()) > max_source_words or len(target.split()) > max_target_words:
                skipped.add("too long (words)", where)
                continue
            pairs.append((source, target))
    return pairs, lines


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
        return {"train": train, "val": val, "test": test}, {"lines": len(small) + len(pairs)}
    skipped = SkipCounter()
    explicit: dict = {"train": [], "val": [], "test": []}
    pooled: list = []
    total = 0
    for path in tsv_files(d.path):
        pairs, lines = read_tsv(path, d.max_source_words, d.max_target_words, skipped)
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
    return explicit, {"lines": total, "skipped": skipped.report()}


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
    pairs, src_tok, tgt_tok, max_src: int, max_tgt: int, skipped: SkipCounter | None, split: str
):
    """Padded int32 arrays: sources [N, max_src] and targets [N, max_tgt + 2] (START ... END);
    pairs longer than that in subword pieces are dropped (counted)."""
    sources, targets, kept = [], [], []
    for start in range(0, len(pairs), 2048):
        chunk = pairs[start : start + 2048]
        s = src_tok.tokenize(tf.constant([p[0] for p in chunk])).to_list()
        t = tgt_tok.tokenize(tf.constant([p[1] for p in chunk])).to_list()
        for i, (a, b) in enumerate(zip(s, t)):
            if len(a) > max_src or len(b) > max_tgt or not a or not b:
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
    vocabularies(cfg, artifacts, splits["train"])
    src_tok, tgt_tok = tokenizers(cfg, artifacts)
    skipped = SkipCounter()
    arrays = {
        name: encode_pairs(
            pairs, src_tok, tgt_tok, d.max_source_tokens, d.max_target_tokens, skipped, name
        )
        for name, pairs in splits.items()
    }
    if skipped.counts:
        skipped.log(sum(len(p) for p in splits.values()))
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
            "near_duplicates_removed": 0,
            "duplicate_rule": "not checked",
        },
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
