"""Serving graphs (tokenization and the generation loop in graph) and the TFLite
decoding step.

SavedModel signatures (core TF + TF Text ops only, docs/design.md §7):
  serving_default(text [N] string) -> next_token_log_probs [N, V] after each text,
      log_likelihood [N] (nats of the text's tokens after the document start),
      num_tokens [N], num_chars [N]: enough to score text in bits per character.
  generate(prompts [N] string, max_new_tokens [N] int32, temperature [N] float32,
      top_k [N] int32, top_p [N] float32, seed [N] int64) -> text [N] string, num_tokens [N]
      A tf.while_loop of one-token steps with a fixed maximum (KV cache for the GPT):
      prompts are fed token by token (rows of different lengths in one batch), then each
      row samples its own continuation with stateless per-row noise seeded by (seed, t):
      a row's output depends only on its own inputs, also when TF Serving batches requests.
TFLite: decode_step(token [1], position [1], state...) -> logits [1, V], next_<state>...
"""

from __future__ import annotations

import numpy as np

from keras_suite import common
from keras_suite.apps.textgen.tokenizers import DOC, PAD

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402


def graph_sample(logits, temperature, top_k, top_p, seeds):
    """One token per row of logits [N, V]; per-row temperature (<= 0: greedy), top_k
    (0: off), top_p (1: off) and seeds [N, 2] int64."""
    vocab = tf.shape(logits)[-1]
    greedy = tf.argmax(logits, -1, output_type=tf.int32)
    z = logits / tf.maximum(temperature, 1e-6)[:, None]
    ranked = tf.sort(z, -1, direction="DESCENDING")
    k = tf.where(top_k > 0, tf.minimum(top_k, vocab), vocab)
    kth = tf.gather(ranked, k - 1, batch_dims=1)
    z = tf.where(z < kth[:, None], tf.constant(-np.inf, z.dtype), z)
    probs = tf.nn.softmax(z, -1)
    sorted_p = tf.sort(probs, -1, direction="DESCENDING")
    keep = (tf.cumsum(sorted_p, -1) - sorted_p) < top_p[:, None]
    smallest_kept = tf.reduce_min(tf.where(keep, sorted_p, 2.0), -1)
    z = tf.where(probs < smallest_kept[:, None], tf.constant(-np.inf, z.dtype), z)
    uniform = tf.map_fn(
        lambda s: tf.random.stateless_uniform([vocab], s, 1e-7, 1.0),
        seeds,
        fn_output_signature=tf.float32,
    )
    sampled = tf.argmax(
        z - tf.math.log(-tf.math.log(uniform)), -1, output_type=tf.int32
    )  # Gumbel-max
    return tf.where(temperature <= 0, greedy, sampled)


def _prompt_tokens(gtok, texts, max_tokens):
    """[N, P] int32 (DOC + the last max_tokens tokens, PAD after) and lengths [N]."""
    ragged = gtok.tokenize(texts)
    ragged = ragged[:, -max_tokens:] if max_tokens else ragged[:, :0]
    ragged = tf.concat([tf.ones([ragged.nrows(), 1], tf.int32) * DOC, ragged], axis=1)
    return ragged.to_tensor(PAD), tf.cast(ragged.row_lengths(), tf.int32)


def generation_limits(model, gcfg):
    """(max prompt tokens, max new tokens) of the in-graph loop: a GPT's whole sequence
    (DOC + prompt + new tokens) must fit its KV cache."""
    prompt, new = gcfg.max_prompt_tokens, gcfg.max_new_tokens_limit
    context = getattr(model, "context", None) if hasattr(model, "num_heads") else None
    if context is not None:
        prompt = min(prompt, context // 2 - 1)
        new = min(new, context - prompt - 1)
    return prompt, new


def make_generate(model, gtok, gcfg):
    max_prompt, limit = generation_limits(model, gcfg)

    def generate(prompts, max_new_tokens, temperature, top_k, top_p, seed):
        tokens, lengths = _prompt_tokens(gtok, prompts, max_prompt)
        n = tf.shape(tokens)[0]
        width = tf.shape(tokens)[1]
        max_new = tf.clip_by_value(max_new_tokens, 0, limit)
        steps = tf.reduce_max(lengths) - 1 + tf.reduce_max(tf.concat([max_new, [0]], 0))
        temperature = tf.cast(temperature, tf.float32)
        top_p = tf.cast(top_p, tf.float32)
        seed = tf.cast(seed, tf.int64)

        def body(t, previous, state, out):
            prompt_token = tf.gather(tokens, tf.minimum(t, width - 1), axis=1)
            token = tf.where(t < lengths, prompt_token, previous)
            logits, state = model.step(token, t, state)
            seeds = tf.stack([seed, tf.fill([n], tf.cast(t, tf.int64))], axis=1)
            nxt = graph_sample(tf.cast(logits, tf.float32), temperature, top_k, top_p, seeds)
            return t + 1, nxt, state, out.write(t, nxt)

        out = tf.TensorArray(tf.int32, size=steps, element_shape=[None])
        state = model.initial_state(n)
        _, _, _, out = tf.while_loop(
            lambda t, *_: t < steps,
            body,
            (tf.constant(0), tf.zeros([n], tf.int32), state, out),
            maximum_iterations=max_prompt + limit + 1,
        )
        produced = tf.transpose(tf.reshape(out.stack(), [steps, n]))  # [N, steps]
        index = tf.range(steps)[None] - (lengths[:, None] - 1)  # 0 = the first new token
        wanted = (index >= 0) & (index < max_new[:, None])
        ended = tf.cumsum(tf.cast(wanted & tf.equal(produced, DOC), tf.int32), axis=1) > 0
        mask = wanted & ~ended
        return {
            "text": gtok.detokenize(produced, mask),
            "num_tokens": tf.reduce_sum(tf.cast(mask, tf.int32), axis=1),
        }

    return generate


def make_score(model, gtok):
    context = getattr(model, "context", None) if hasattr(model, "num_heads") else None

    def score(text):
        tokens, lengths = _prompt_tokens(gtok, text, (context - 1) if context else 1 << 30)
        logits = tf.cast(model(tokens, training=False), tf.float32)
        log_probs = tf.nn.log_softmax(logits, -1)
        last = tf.gather(log_probs, lengths - 1, batch_dims=1)
        picked = tf.gather(log_probs[:, :-1], tokens[:, 1:], batch_dims=2)
        valid = tf.sequence_mask(lengths - 1, tf.shape(tokens)[1] - 1)
        return {
            "next_token_log_probs": last,
            "log_likelihood": tf.reduce_sum(tf.where(valid, picked, 0.0), -1),
            "num_tokens": lengths - 1,
            "num_chars": tf.strings.length(text, unit="UTF8_CHAR"),
        }

    return score


def serving_archive(model, tokenizer, gcfg):
    gtok = tokenizer.graph()
    archive = keras.export.ExportArchive()
    archive.track(model)
    for resource in gtok.resources:
        archive.track(resource)
    score = make_score(model, gtok)
    generate = make_generate(model, gtok, gcfg)
    archive.add_endpoint(
        "serving_default", score, input_signature=[tf.TensorSpec([None], tf.string, name="text")]
    )
    archive.add_endpoint(
        "generate",
        generate,
        input_signature=[
            tf.TensorSpec([None], tf.string, name="prompts"),
            tf.TensorSpec([None], tf.int32, name="max_new_tokens"),
            tf.TensorSpec([None], tf.float32, name="temperature"),
            tf.TensorSpec([None], tf.int32, name="top_k"),
            tf.TensorSpec([None], tf.float32, name="top_p"),
            tf.TensorSpec([None], tf.int64, name="seed"),
        ],
    )
    return archive


def tflite_archive(model):
    """A SavedModel for TFLite: one decoding step, batch 1, the state as inputs/outputs."""
    names = model.state_names()
    shapes = model.state_shapes(1)
    specs = [
        tf.TensorSpec([1], tf.int32, name="token"),
        tf.TensorSpec([1], tf.int32, name="position"),
    ]
    specs += [tf.TensorSpec(shapes[n], tf.float32, name=n) for n in names]

    def decode_step(token, position, *states):
        logits, new = model.step(token, tf.reshape(position, []), dict(zip(names, states)))
        return {"logits": tf.cast(logits, tf.float32), **{f"next_{n}": new[n] for n in names}}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("decode_step", decode_step, input_signature=specs)
    return archive
