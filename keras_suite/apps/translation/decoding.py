"""Greedy and beam search in graph: one `tf.while_loop` with a fixed maximum length over
the models' `encode` / `initial_cache` / `decode_step` (apps/translation/model.py), batched,
stopping early once every sentence has produced END. Nothing here runs Python per token,
so it exports into a SavedModel (docs/design.md §7).
"""

from __future__ import annotations

from keras_suite import common
from keras_suite.apps.translation.tokenizer import END_ID, PAD_ID, START_ID

tf = common.quiet_import_tensorflow()

NEG = -1e9  # "impossible" log-probability that stays finite (no inf - inf = NaN)


def _never_pad_or_start(logits):
    """A decoder never emits PAD or START (an undertrained one otherwise might)."""
    ids = tf.range(tf.shape(logits)[-1])
    return tf.where((ids == PAD_ID) | (ids == START_ID), tf.cast(NEG, logits.dtype), logits)


def greedy_decode(model, source, max_length: int):
    """source [B, S] int32 -> ids [B, L] int32 (L <= max_length), PAD after END."""
    memory = model.encode(source)
    cache = model.initial_cache(memory)
    batch = tf.shape(source)[0]
    tokens = tf.TensorArray(tf.int32, size=max_length, element_shape=[None])

    def cond(i, token, finished, cache, tokens):
        return (i < max_length) & ~tf.reduce_all(finished)

    def body(i, token, finished, cache, tokens):
        logits, cache = model.decode_step(token, i, cache, memory)
        nxt = tf.where(
            finished, PAD_ID, tf.argmax(_never_pad_or_start(logits), -1, output_type=tf.int32)
        )
        return i + 1, nxt, finished | (nxt == END_ID), cache, tokens.write(i, nxt)

    start = tf.fill([batch], START_ID)
    i, _, _, _, tokens = tf.while_loop(
        cond,
        body,
        (tf.constant(0), start, tf.zeros([batch], tf.bool), cache, tokens),
        maximum_iterations=max_length,
    )
    ids = tf.transpose(tokens.gather(tf.range(i)))
    return tf.reshape(ids, [batch, i])


def _length_penalty(length, alpha):
    """GNMT (Wu et al. 2016): ((5 + |Y|) / 6) ** alpha."""
    return tf.pow((5.0 + tf.cast(length, tf.float32)) / 6.0, alpha)


def beam_search(model, source, max_length: int, beam_width, length_penalty: float = 0.6):
    """source [B, S] -> (ids [B, max_length] int32 of the best hypothesis, PAD after END;
    scores [B] its length-normalised log-probability).

    Each sentence keeps `beam_width` hypotheses; a finished one stays in the beam with
    its score frozen (it can only be extended by PAD at no cost) and competes with the
    live ones on raw log-probability; the final choice among the beam is by
    log-probability / GNMT length penalty. `beam_width` may be a tensor.
    """
    batch = tf.shape(source)[0]
    k = tf.convert_to_tensor(beam_width, tf.int32)
    memory = model.encode(source)
    memory = tf.nest.map_structure(lambda t: tf.repeat(t, k, axis=0), memory)  # [B*K, ...]
    cache = model.initial_cache(memory)
    # only the first copy of each sentence is live at the start, so step 0 expands it alone
    scores = tf.tile(tf.concat([[0.0], tf.fill([k - 1], NEG)], 0)[None], [batch, 1])
    ids = tf.zeros([batch, k, max_length], tf.int32)
    finished = tf.zeros([batch, k], tf.bool)
    lengths = tf.zeros([batch, k], tf.int32)
    token = tf.fill([batch * k], START_ID)
    positions = tf.range(max_length)

    def cond(i, token, scores, ids, finished, lengths, cache):
        return (i < max_length) & ~tf.reduce_all(finished)

    def body(i, token, scores, ids, finished, lengths, cache):
        logits, cache = model.decode_step(token, i, cache, memory)
        vocab = tf.shape(logits)[-1]
        logp = tf.reshape(tf.nn.log_softmax(_never_pad_or_start(logits)), [batch, k, vocab])
        pad_only = tf.where(
            tf.range(vocab) == PAD_ID, 0.0, NEG
        )  # a finished beam's one continuation
        logp = tf.where(finished[..., None], pad_only[None, None], logp)
        total = tf.reshape(scores[..., None] + logp, [batch, k * vocab])
        scores, flat = tf.math.top_k(total, k=k)
        parent, nxt = flat // vocab, flat % vocab
        ids = tf.gather(ids, parent, batch_dims=1)
        ids = tf.where(positions[None, None] == i, nxt[..., None], ids)
        was_finished = tf.gather(finished, parent, batch_dims=1)
        lengths = tf.gather(lengths, parent, batch_dims=1) + tf.cast(~was_finished, tf.int32)
        finished = was_finished | (nxt == END_ID)
        rows = tf.reshape(parent + tf.range(batch)[:, None] * k, [-1])
        cache = tf.nest.map_structure(lambda t: tf.gather(t, rows), cache)
        return i + 1, tf.reshape(nxt, [-1]), scores, ids, finished, lengths, cache

    state = (tf.constant(0), token, scores, ids, finished, lengths, cache)
    loose = tf.nest.map_structure(lambda t: tf.TensorShape([None] * t.shape.rank), state)
    _, _, scores, ids, finished, lengths, _ = tf.while_loop(
        cond, body, state, shape_invariants=loose, maximum_iterations=max_length
    )
    normalised = scores / _length_penalty(lengths, length_penalty)
    best = tf.argmax(normalised, -1, output_type=tf.int32)
    return tf.gather(ids, best, batch_dims=1), tf.gather(normalised, best, batch_dims=1)


def python_loop_decode(model, source, max_length: int):
    """The keras-io recipe's decoding (for the benchmark only): from Python, call the
    model on the whole prefix once per output token, no cache."""
    import numpy as np

    batch = int(source.shape[0])
    prefix = np.full([batch, 1], START_ID, np.int32)
    finished = np.zeros([batch], bool)
    for _ in range(max_length):
        logits = model({"source": source, "target_in": tf.constant(prefix)}, training=False)
        nxt = np.argmax(_never_pad_or_start(logits[:, -1]).numpy(), -1).astype(np.int32)
        nxt[finished] = PAD_ID
        prefix = np.concatenate([prefix, nxt[:, None]], 1)
        finished |= nxt == END_ID
        if finished.all():
            break
    return prefix[:, 1:]
