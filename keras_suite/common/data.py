"""tf.data helpers shared by the apps: per-epoch pipelines that resume exactly, splits."""

from __future__ import annotations

import numpy as np

from keras_suite import common

tf = common.quiet_import_tensorflow()

AUTOTUNE = tf.data.AUTOTUNE


def epoch_seed(seed: int, epoch: int) -> int:
    """A shuffle seed that depends only on (run seed, epoch): a resumed run reshuffles
    exactly as the interrupted one did, so skipping the finished batches is honest."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0] % (2**31 - 1))


def train_pipeline(
    ds,
    batch_size: int,
    seed: int,
    epoch: int,
    shuffle_buffer: int,
    batch_map=None,
    element_map=None,
):
    """Shuffle (seeded by epoch) -> map -> batch (drop remainder) -> augment -> prefetch."""
    ds = ds.shuffle(shuffle_buffer, seed=epoch_seed(seed, epoch), reshuffle_each_iteration=False)
    if element_map is not None:
        ds = ds.map(element_map, num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=True)
    if batch_map is not None:
        ds = ds.map(batch_map, num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.prefetch(AUTOTUNE)


def eval_pipeline(ds, batch_size: int, element_map=None):
    if element_map is not None:
        ds = ds.map(element_map, num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.batch(batch_size).prefetch(AUTOTUNE)


def split_indices(n: int, val_fraction: float, test_fraction: float, seed: int):
    """Seeded random split of range(n) into train/val/test index arrays."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    n_val = int(round(n * val_fraction))
    return order[n_test + n_val :], order[n_test : n_test + n_val], order[:n_test]


def carve_missing_splits(
    n_train: int, missing, val_fraction: float, test_fraction: float, seed: int
):
    """Indices for splits a dataset lacks, carved out of its training split by seeded
    fractions: -> (train indices kept, {missing split: indices}). Splits a user supplied
    are never touched; a fraction of 0 leaves that split out."""
    missing = set(missing)
    keep, val, test = split_indices(
        n_train,
        val_fraction if "val" in missing else 0.0,
        test_fraction if "test" in missing else 0.0,
        seed,
    )
    carved = {
        name: idx for name, idx in (("val", val), ("test", test)) if name in missing and len(idx)
    }
    return np.sort(keep), {k: np.sort(v) for k, v in carved.items()}
