"""Bits per character on the test split: the model over the whole test stream, every
token scored once with as much context as the model can use, the n-gram baseline on the
same text, and a bootstrap over test documents for the spread.

bits/char = total nats of the test tokens / characters of the test text / ln 2 (document
separators are inputs, never scored; the character count is that of the documents' text,
so the number is comparable across tokenizers and with the n-gram).

What "as much context as the model can use" means, per model:
- GPT: windows of `context` tokens every `context / 2` tokens over the stream; a target
  is scored by the first window that holds it, so after the first window every token
  sees at least half a context (`gpt_windows`).
- RNN: every document is read from its start (its DOC token) from a zero state, the
  state carried chunk to chunk to the document's end (`rnn_document_chunks`).
"""

from __future__ import annotations

import math

import numpy as np

from keras_suite import common
from keras_suite.apps.textgen.tokenizers import DOC

tf = common.quiet_import_tensorflow()


def _nll_fn(model):
    @tf.function(reduce_retracing=True)
    def nll(tokens, targets, states):
        logits, new = model.forward(tokens, states if states else None, training=False)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(targets, tf.cast(logits, tf.float32))
        return ce, new

    return nll


def _window_starts(n_targets: int, context: int, stride: int) -> list:
    return list(range(0, max(n_targets - context, 0) + stride, stride))


def gpt_windows(stream: np.ndarray, context: int, stride: int):
    """Windows of `context` tokens every `stride` tokens; weight 1 on the targets a window
    scores first (all of the first window, then the last `stride`), so each target of the
    stream is scored once with at least context - stride tokens before it."""
    starts = _window_starts(len(stream) - 1, context, stride)
    tokens = np.zeros([len(starts), context], np.int32)
    targets = np.zeros_like(tokens)
    weights = np.zeros([len(starts), context], np.float32)
    done = 0
    for i, s in enumerate(starts):
        x, y = stream[s : s + context], stream[s + 1 : s + context + 1]
        tokens[i, : len(y)], targets[i, : len(y)] = x[: len(y)], y
        first = max(done - s, 0)
        weights[i, first : len(y)] = 1.0
        done = s + len(y)
    return tokens, targets, weights


def document_index(stream: np.ndarray) -> np.ndarray:
    """The document each position of the stream belongs to (each starts with DOC)."""
    return np.cumsum(stream == DOC) - 1


def rnn_document_chunks(stream: np.ndarray, rows: int, seq_len: int):
    """Every document of the stream read from its start: documents (DOC + text) are dealt,
    longest first, to `rows` rows, each padded to whole chunks of `seq_len`, so that a
    document always starts a chunk. Returns tokens, targets, weights, document ids
    [rows, chunks, seq_len] and reset [rows, chunks] (1 where a document starts)."""
    starts = np.flatnonzero(stream == DOC).tolist() + [len(stream)]
    docs = [(starts[i], starts[i + 1]) for i in range(len(starts) - 1)]
    n_chunks = [max(-(-(b - a - 1) // seq_len), 1) for a, b in docs]
    rows = max(1, min(rows, len(docs)))
    placed, lengths = [[] for _ in range(rows)], [0] * rows
    for d in sorted(range(len(docs)), key=lambda d: -n_chunks[d]):
        row = int(np.argmin(lengths))
        placed[row].append(d)
        lengths[row] += n_chunks[d]
    shape = [rows, max(lengths), seq_len]
    tokens, targets = np.zeros(shape, np.int32), np.zeros(shape, np.int32)
    weights, doc_ids = np.zeros(shape, np.float32), np.zeros(shape, np.int64)
    reset = np.zeros(shape[:2], np.float32)
    for row, ds in enumerate(placed):
        chunk = 0
        for d in ds:
            a, b = docs[d]
            x, y = stream[a : b - 1], stream[a + 1 : b]
            reset[row, chunk] = 1.0
            for k in range(n_chunks[d]):
                piece = slice(k * seq_len, (k + 1) * seq_len)
                n = len(y[piece])
                tokens[row, chunk, :n], targets[row, chunk, :n] = x[piece], y[piece]
                weights[row, chunk, :n] = 1.0
                doc_ids[row, chunk, :] = d
                chunk += 1
    return tokens, targets, weights, doc_ids, reset


def score_stream(model, stream: np.ndarray, seq_len: int, batch: int = 32) -> dict:
    """Total nats and scored tokens over the stream, and the nats of each document
    (DOC targets not scored)."""
    nll = _nll_fn(model)
    doc_nats = np.zeros(int(np.sum(stream == DOC)), np.float64)
    total, count = 0.0, 0
    if hasattr(model, "num_heads"):  # GPT: overlapping windows, half a context of history
        context, stride = model.context, max(model.context // 2, 1)
        tokens, targets, weights = gpt_windows(stream, context, stride)
        weights = weights * (targets != DOC)
        starts = np.asarray(_window_starts(len(stream) - 1, context, stride))
        positions = np.minimum(starts[:, None] + 1 + np.arange(context)[None], len(stream) - 1)
        doc_ids = document_index(stream)[positions]
        for i in range(0, len(tokens), batch):
            ce, _ = nll(tokens[i : i + batch], targets[i : i + batch], {})
            nats = ce.numpy().astype(np.float64) * weights[i : i + batch]
            np.add.at(doc_nats, doc_ids[i : i + batch].reshape(-1), nats.reshape(-1))
            count += int(weights[i : i + batch].sum())
        return {"nats": float(doc_nats.sum()), "tokens": count, "doc_nats": doc_nats}
    tokens, targets, weights, doc_ids, reset = rnn_document_chunks(stream, batch, seq_len)
    weights = weights * (targets != DOC)
    states = model.initial_state(tokens.shape[0])
    for k in range(tokens.shape[1]):
        keep = tf.constant(1.0 - reset[:, k, None])
        states = {n: s * keep for n, s in states.items()}  # a new document: zero state
        ce, states = nll(tokens[:, k], targets[:, k], states)
        nats = ce.numpy().astype(np.float64) * weights[:, k]
        np.add.at(doc_nats, doc_ids[:, k].reshape(-1), nats.reshape(-1))
        count += int(weights[:, k].sum())
    total = float(doc_nats.sum())
    return {"nats": total, "tokens": count, "doc_nats": doc_nats}


def language_metrics(nats: float, tokens: int, chars: int, split: str = "test") -> dict:
    per_token = nats / max(tokens, 1)
    return {
        "bits_per_char": nats / max(chars, 1) / math.log(2),
        f"{split}_loss": per_token,
        "perplexity": math.exp(min(per_token, 700.0)),
        f"{split}_tokens": tokens,
        f"{split}_chars": chars,
    }


def bootstrap_bits(doc_nats, doc_chars, baseline_nats=None, samples=1000, seed=0) -> dict:
    """A 95% interval of bits/char by resampling test documents with replacement (the
    ratio of summed nats to summed characters per resample); with the baseline's
    per-document nats, the same resamples give an interval of the difference."""
    doc_nats, doc_chars = np.asarray(doc_nats, np.float64), np.asarray(doc_chars, np.float64)
    picks = np.random.default_rng(seed).integers(0, len(doc_nats), [samples, len(doc_nats)])
    chars = doc_chars[picks].sum(1)
    bits = doc_nats[picks].sum(1) / chars / math.log(2)
    per_doc = doc_nats / np.maximum(doc_chars, 1) / math.log(2)
    out = {
        "bits_per_char_ci95": [float(np.percentile(bits, 2.5)), float(np.percentile(bits, 97.5))],
        "per_document_bits_per_char": {
            "median": float(np.median(per_doc)),
            "p10": float(np.percentile(per_doc, 10)),
            "p90": float(np.percentile(per_doc, 90)),
        },
    }
    if baseline_nats is not None:
        base = np.asarray(baseline_nats, np.float64)[picks].sum(1) / chars / math.log(2)
        out["ngram_bits_per_char_ci95"] = [
            float(np.percentile(base, 2.5)),
            float(np.percentile(base, 97.5)),
        ]
        out["minus_ngram_ci95"] = [
            float(np.percentile(bits - base, 2.5)),
            float(np.percentile(bits - base, 97.5)),
        ]
    return out


def stepwise_bits_per_char(
    run_signature, stream: np.ndarray, tokenizer, state_shapes: dict, context, max_tokens: int
) -> dict:
    """The reference decoding loop of the TFLite step: feed the test stream one token
    at a time, the state coming back from the model itself; a GPT's cache starts again
    every `context` tokens. Scores the first `max_tokens` targets (DOC targets excluded)."""
    from keras_suite.apps.textgen.sampling import SignatureDecoder

    decoder = SignatureDecoder(run_signature, state_shapes, context)
    n = min(max_tokens, len(stream) - 1)
    nats, scored = 0.0, []
    state = decoder.initial_state(1)
    for i in range(n):
        position = i % context if context else 0
        if context and position == 0:
            state = decoder.initial_state(1)
        logits, state = decoder.step([stream[i]], position, state)
        target = int(stream[i + 1])
        if target == DOC:
            continue
        logits = logits.astype(np.float64).reshape(-1)
        logits = logits - logits.max()
        nats += float(np.log(np.exp(logits).sum()) - logits[target])
        scored.append(target)
    chars = len(tokenizer.decode(scored))
    return {
        "bits_per_char": nats / max(chars, 1) / math.log(2),
        "loss": nats / max(len(scored), 1),
        "tokens": len(scored),
        "chars": chars,
    }
