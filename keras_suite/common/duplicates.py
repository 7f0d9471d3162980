"""Exact duplicates across splits, for the evaluation protocol (docs/design.md).

The number an app reports is computed on a test split that holds no copy of a training
example. For images the rule is an exact pixel hash: two examples are the same when their
8-bit pixels, as the model sees them (decoded, the right way up, resized to the input
size), are byte-identical. A re-saved PNG of a training image is caught; a re-compressed
JPEG (other pixels) is not.

Splits are de-duplicated in order: validation loses its copies of training examples, test
loses its copies of training and validation examples. Copies inside one split stay (they
are not a leak). Every app logs the counts and puts them in `info["evaluation_split"]`,
which metrics.json repeats.
"""

from __future__ import annotations

import hashlib
from typing import Iterable, Sequence

import numpy as np

from keras_suite.common.runlog import log

SPLIT_ORDER = ("train", "val", "test")

IMAGE_RULE = (
    "exact pixel hash: a val/test image whose 8-bit pixels, decoded and resized to the "
    "model input, equal those of an earlier split's image (train, then val) is removed"
)


def content_hash(example) -> str:
    """A 128-bit hash of an array's dtype, shape and bytes (or of a str/bytes value)."""
    digest = hashlib.blake2b(digest_size=16)
    if isinstance(example, str):
        example = example.encode("utf-8")
    if isinstance(example, (bytes, bytearray)):
        digest.update(b"bytes:")
        digest.update(bytes(example))
        return digest.hexdigest()
    array = np.ascontiguousarray(np.asarray(example))
    digest.update(f"{array.dtype.str}{array.shape}:".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def array_hashes(examples: Iterable) -> list[str]:
    """One hash per example (per row of an array)."""
    return [content_hash(x) for x in examples]


def dataset_hashes(dataset) -> list[str]:
    """One hash per element of an unbatched tf.data dataset of arrays (decoded in the
    dataset's own parallel map, hashed here)."""
    return [content_hash(x) for x in dataset.as_numpy_iterator()]


def keep_elements(dataset, kept, total: int):
    """The elements of an unbatched tf.data dataset at the positions `kept`, in order."""
    from keras_suite import common

    tf = common.quiet_import_tensorflow()
    if len(kept) == total:
        return dataset
    wanted = tf.constant(np.isin(np.arange(total), kept))
    return (
        dataset.enumerate()
        .filter(lambda i, *x: tf.gather(wanted, i))
        .map(lambda i, *x: x[0] if len(x) == 1 else x)
    )


def disjoint_indices(
    hashes: dict[str, Sequence[str]], order: Sequence[str] = SPLIT_ORDER
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Which examples each split keeps: those whose hash is in no earlier split of `order`.

    -> ({split: sorted kept indices}, {split: number removed}); the first split keeps all.
    Splits not in `order` are kept whole and checked against nothing."""
    seen: set[str] = set()
    keep, removed = {}, {}
    for split in [s for s in order if s in hashes] + [s for s in hashes if s not in order]:
        values = list(hashes[split])
        if split in order:
            kept = np.array([i for i, h in enumerate(values) if h not in seen], np.int64)
            seen.update(values)
        else:
            kept = np.arange(len(values), dtype=np.int64)
        keep[split] = kept
        removed[split] = len(values) - len(kept)
    return keep, removed


def log_removed(removed: dict[str, int], what: str = "images") -> None:
    """One line: how many copies each later split lost (or that there were none)."""
    lost = {s: n for s, n in removed.items() if n}
    if lost:
        log.warning(
            "removed exact duplicates of earlier splits' %s: %s (docs/design.md, evaluation "
            "protocol)",
            what,
            ", ".join(f"{n} from {s}" for s, n in lost.items()),
        )
    else:
        log.info("no exact duplicates across splits (%s)", what)


def evaluation_split(split: str, size: int, removed: dict[str, int], rule: str) -> dict:
    """`info["evaluation_split"]`: the scored split, its size after de-duplication, how
    many of its examples were removed and the rule; `removed_by_split` has every split's."""
    return {
        "split": split,
        "size": int(size),
        "near_duplicates_removed": int(removed.get(split, 0)),
        "duplicate_rule": rule,
        "removed_by_split": {s: int(n) for s, n in removed.items() if s != "train"},
    }
