"""Token streams and the tf.data pipelines of a run.

Each side of the split is one stream: every document is DOC + its tokens. Training
batches are dicts {tokens, targets, weights, reset} of [B, T] (reset: [B]):

- stateless: random windows of T+1 tokens from anywhere in the training stream, drawn
  with a seed of (run seed, epoch), so a resumed run sees the same windows;
- stateful: documents are cut into pieces of at most `doc_chunks` windows, pieces are
  dealt to B streams (shuffled per epoch, each to the shortest stream), and batch s holds
  window s of every stream: row i of consecutive batches is contiguous text, so the
  hidden state can be carried from one batch to the next. `reset` is 1 on the first
  window of every piece (the state is zeroed there) and padding windows weigh 0. A
  fixed budget of steps longer than one pass deals the pieces again.

Validation batches are non-overlapping windows of the validation stream.
"""

from __future__ import annotations

import numpy as np

from keras_suite import common
from keras_suite.apps.textgen.tokenizers import DOC
from keras_suite.common.data import epoch_seed

tf = common.quiet_import_tensorflow()


def token_stream(tokenizer, texts) -> np.ndarray:
    parts = []
    for t in texts:
        parts.append(np.asarray([DOC], np.int32))
        parts.append(tokenizer.encode(t))
    return np.concatenate(parts) if parts else np.zeros([0], np.int32)


def document_pieces(tokenizer, texts, seq_len: int, doc_chunks: int) -> list:
    """Token arrays of whole documents (DOC first), cut at most doc_chunks*seq_len long."""
    size = seq_len * doc_chunks
    pieces = []
    for t in texts:
        ids = np.concatenate([[DOC], tokenizer.encode(t)]).astype(np.int32)
        pieces += [ids[i : i + size + 1] for i in range(0, max(len(ids) - 1, 1), size)]
    return [p for p in pieces if len(p) >= 2]


def stateful_epoch_arrays(pieces, batch: int, seq_len: int, steps: int, seed: int, epoch: int):
    """Arrays [steps, batch, seq_len] (tokens, targets, weights) and reset [steps, batch].

    One shuffled pass over the pieces fills `stateful_steps` steps; a fixed budget of
    more steps than that deals further passes (each shuffled anew) until it is filled."""
    rng = np.random.default_rng(epoch_seed(seed, epoch))
    streams = [[] for _ in range(batch)]
    lengths = np.zeros(batch, np.int64)
    while True:
        for i in rng.permutation(len(pieces)):
            row = int(np.argmin(lengths))
            streams[row].append(pieces[i])
            lengths[row] += -(-(len(pieces[i]) - 1) // seq_len)
        if lengths.sum() >= steps * batch or not pieces:
            break
    tokens = np.zeros([steps, batch, seq_len], np.int32)
    targets = np.zeros_like(tokens)
    weights = np.zeros([steps, batch, seq_len], np.float32)
    reset = np.ones([steps, batch], np.float32)
    for row, stream in enumerate(streams):
        s = 0
        for piece in stream:
            for start in range(0, len(piece) - 1, seq_len):
                if s >= steps:
                    break
                x = piece[start : start + seq_len]
                y = piece[start + 1 : start + seq_len + 1]
                tokens[s, row, : len(y)] = x[: len(y)]
                targets[s, row, : len(y)] = y
                weights[s, row, : len(y)] = 1.0
                reset[s, row] = 1.0 if start == 0 else 0.0
                s += 1
    return tokens, targets, weights, reset


def stateful_steps(pieces, batch: int, seq_len: int) -> int:
    chunks = sum(-(-(len(p) - 1) // seq_len) for p in pieces)
    return chunks // batch


def stateless_epoch(
    stream: np.ndarray, batch: int, seq_len: int, windows: int, seed: int, epoch: int
):
    offsets = np.random.default_rng(epoch_seed(seed, epoch)).integers(
        0, len(stream) - seq_len - 1, size=windows
    )
    data = tf.constant(stream)
    span = tf.range(seq_len + 1)

    def gather(offs):
        w = tf.gather(data, offs[:, None] + span[None])
        return {
            "tokens": w[:, :-1],
            "targets": w[:, 1:],
            "weights": tf.ones(tf.shape(w[:, 1:]), tf.float32),
            "reset": tf.ones(tf.shape(offs), tf.float32),
        }

    ds = tf.data.Dataset.from_tensor_slices(offsets.astype(np.int32)).batch(
        batch, drop_remainder=True
    )
    return ds.map(gather).prefetch(2)


def window_arrays(stream: np.ndarray, seq_len: int):
    """Non-overlapping windows covering every target of the stream once (last one padded)."""
    n = max(-(-(len(stream) - 1) // seq_len), 1)
    tokens = np.zeros([n, seq_len], np.int32)
    targets = np.zeros_like(tokens)
    weights = np.zeros([n, seq_len], np.float32)
    for i in range(n):
        x = stream[i * seq_len : (i + 1) * seq_len]
        y = stream[i * seq_len + 1 : (i + 1) * seq_len + 1]
        tokens[i, : len(y)], targets[i, : len(y)] = x[: len(y)], y
        weights[i, : len(y)] = 1.0
    return tokens, targets, weights


def eval_dataset(stream: np.ndarray, seq_len: int, batch: int):
    tokens, targets, weights = window_arrays(stream, seq_len)
    return tf.data.Dataset.from_tensor_slices(
        {
            "tokens": tokens,
            "targets": targets,
            "weights": weights,
            "reset": np.ones([len(tokens)], np.float32),
        }
    ).batch(batch)
