"""Bits per character: the model over the whole validation stream, every token scored
once with as much context as the model can use, and the n-gram baseline on the same text.

bits/char = total nats of the validation tokens / characters of the validation text / ln 2
(document separators are inputs, never scored; the character count is that of the
documents' text, so the number is comparable across tokenizers and with the n-gram).
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


def gpt_windows(stream: np.ndarray, context: int, stride: int):
    """Windows of `context` tokens every `stride` tokens; weight 1 on the targets a window
    scores first (all of the first window, then the last `stride`), so each target of the
    stream is scored once with at least context - stride tokens before it."""
    n_targets = len(stream) - 1
    starts = list(range(0, max(n_targets - context, 0) + stride, stride))
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


def score_stream(model, stream: np.ndarray, seq_len: int, batch: int = 32) -> dict:
    """Total nats and token count over the validation stream (DOC targets not scored)."""
    nll = _nll_fn(model)
    total, count = 0.0, 0
    if hasattr(model, "num_heads"):  # GPT: overlapping windows, half a context of history
        tokens, targets, weights = gpt_windows(stream, model.context, max(model.context // 2, 1))
        weights = weights * (targets != DOC)
        for i in range(0, len(tokens), batch):
            ce, _ = nll(tokens[i : i + batch], targets[i : i + batch], {})
            total += float(np.sum(ce.numpy() * weights[i : i + batch]))
            count += int(weights[i : i + batch].sum())
        return {"nats": total, "tokens": count}
    # RNN: `batch` contiguous segments side by side, the state carried chunk to chunk
    n = len(stream) - 1
    rows = max(1, min(batch, n // max(seq_len, 1)))
    seg = -(-n // rows)
    pad = np.zeros(rows * seg + 1, np.int32)
    pad[: len(stream)] = stream
    tokens = np.stack([pad[r * seg : (r + 1) * seg] for r in range(rows)])
    targets = np.stack([pad[r * seg + 1 : (r + 1) * seg + 1] for r in range(rows)])
    index = np.arange(rows)[:, None] * seg + np.arange(seg)[None]
    weights = ((index < n) & (targets != DOC)).astype(np.float32)
    states = model.initial_state(rows)
    for i in range(0, seg, seq_len):
        ce, states = nll(tokens[:, i : i + seq_len], targets[:, i : i + seq_len], states)
        total += float(np.sum(ce.numpy() * weights[:, i : i + seq_len]))
        count += int(weights[:, i : i + seq_len].sum())
    return {"nats": total, "tokens": count}


def language_metrics(nats: float, tokens: int, chars: int) -> dict:
    per_token = nats / max(tokens, 1)
    return {
        "bits_per_char": nats / max(chars, 1) / math.log(2),
        "val_loss": per_token,
        "perplexity": math.exp(min(per_token, 700.0)),
        "val_tokens": tokens,
        "val_chars": chars,
    }


def stepwise_bits_per_char(
    run_signature, stream: np.ndarray, tokenizer, state_shapes: dict, context, max_tokens: int
) -> dict:
    """The reference decoding loop of the TFLite step: feed the validation stream one token
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
