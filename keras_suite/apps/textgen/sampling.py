"""Samplers and the Python decoding loop (used by `ksuite generate`, the TFLite reference
loop and beam search). The in-graph loop of the SavedModel is in export.py.

A decoder is anything with `initial_state(batch) -> {name: array}`, `step(tokens [B] int32,
position int, state) -> (logits [B, V], state)` and `context` (None for an RNN, the KV
cache length for the GPT).
"""

from __future__ import annotations

import numpy as np

from keras_suite.apps.textgen.tokenizers import DOC


def filter_logits(
    logits: np.ndarray, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0
) -> np.ndarray:
    """Probabilities [..., V] after temperature, top-k and top-p (nucleus) filtering.
    temperature <= 0 is greedy (all mass on the argmax)."""
    logits = np.asarray(logits, np.float64)
    if temperature <= 0:
        probs = np.zeros_like(logits)
        np.put_along_axis(probs, logits.argmax(-1)[..., None], 1.0, -1)
        return probs
    z = logits / temperature
    if top_k and top_k < z.shape[-1]:
        kth = np.sort(z, -1)[..., -top_k][..., None]
        z = np.where(z < kth, -np.inf, z)
    z = z - z.max(-1, keepdims=True)
    probs = np.exp(z)
    probs /= probs.sum(-1, keepdims=True)
    if top_p < 1.0:
        order = np.argsort(-probs, -1)
        sorted_p = np.take_along_axis(probs, order, -1)
        before = np.cumsum(sorted_p, -1) - sorted_p  # mass of the tokens ranked above
        keep_sorted = before < top_p  # the smallest set reaching top_p (always >= 1 token)
        keep = np.zeros_like(keep_sorted)
        np.put_along_axis(keep, order, keep_sorted, -1)
        probs = np.where(keep, probs, 0.0)
        probs /= probs.sum(-1, keepdims=True)
    return probs


def sample(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One token per row, drawn by inverse CDF (reproducible for a given rng)."""
    cdf = np.cumsum(probs, -1)
    u = rng.random(probs.shape[:-1])[..., None] * cdf[..., -1:]
    return np.minimum((cdf < u).sum(-1), probs.shape[-1] - 1).astype(np.int32)


class _Prefix:
    """Feeds tokens through a decoder, re-reading the last half-context when a GPT's KV
    cache is full (a sliding window), and returns the logits after the last one."""

    def __init__(self, decoder, batch: int = 1):
        self.decoder, self.batch = decoder, batch
        self.state = decoder.initial_state(batch)
        self.position = 0
        self.history: list = []  # [B] token arrays fed so far

    def feed(self, tokens: np.ndarray):
        ctx = self.decoder.context
        if ctx is not None and self.position >= ctx:
            keep = self.history[-(ctx // 2) :]
            self.state, self.position, self.history = self.decoder.initial_state(self.batch), 0, []
            for t in keep:
                self._step(t)
        return self._step(tokens)

    def _step(self, tokens):
        tokens = np.asarray(tokens, np.int32).reshape(self.batch)
        logits, self.state = self.decoder.step(tokens, self.position, self.state)
        self.position += 1
        self.history.append(tokens)
        return np.asarray(logits, np.float32)


def generate(
    decoder,
    tokenizer,
    prompt: str,
    max_new_tokens: int = 200,
    temperature: float = 0.8,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 0,
    stop: tuple = (),
    on_text=None,
) -> dict:
    """Sample a continuation of `prompt`; `on_text(new_text)` is called as text appears
    (whole characters only). Stops at max_new_tokens, the end-of-document token or the
    first stop string (which is cut off)."""
    rng = np.random.default_rng(seed)
    prefix = _Prefix(decoder)
    logits = None
    for t in [DOC, *tokenizer.encode(prompt)]:
        logits = prefix.feed([t])
    new: list = []
    shown = 0
    text = ""
    reason = "max_new_tokens"
    for _ in range(max_new_tokens):
        token = int(sample(filter_logits(logits, temperature, top_k, top_p), rng)[0])
        if token == DOC:
            reason = "end_of_document"
            break
        new.append(token)
        text = tokenizer.decode_bytes(new).decode("utf-8", errors="ignore")
        hit = min((text.find(s) for s in stop if s and s in text), default=-1)
        if hit >= 0:
            text, reason = text[:hit], "stop_string"
        # hold back a tail that could still become a stop string, so nothing after a
        # stop string's start is ever shown
        ready = len(text) if reason == "stop_string" else len(text) - _stop_prefix(text, stop)
        if on_text is not None and ready > shown:
            on_text(text[shown:ready])
            shown = ready
        if reason == "stop_string":
            break
        logits = prefix.feed([token])
    if reason != "stop_string":
        text = tokenizer.decode(new)
        if on_text is not None and len(text) > shown:
            on_text(text[shown:])
    return {"text": text, "tokens": len(new), "stopped": reason}


def _stop_prefix(text: str, stop) -> int:
    """Length of the longest end of `text` that begins some stop string."""
    return max((k for s in stop for k in range(1, len(s)) if text.endswith(s[:k])), default=0)


def beam_search(
    decoder,
    tokenizer,
    prompt: str,
    max_new_tokens: int = 50,
    beam_width: int = 4,
    length_penalty: float = 1.0,
) -> dict:
    """Beam search over the decoder: keeps the `beam_width` best partial continuations by
    total log-probability; finished ones (end-of-document) are ranked by
    logp / length**length_penalty. The context must hold prompt + max_new_tokens."""
    prompt_ids = [DOC, *tokenizer.encode(prompt)]
    if decoder.context is not None and len(prompt_ids) + max_new_tokens > decoder.context:
        raise ValueError(
            f"beam search needs prompt + max_new_tokens <= the context ({decoder.context})"
        )
    state = decoder.initial_state(1)
    for pos, t in enumerate(prompt_ids):
        logits, state = decoder.step(np.asarray([t], np.int32), pos, state)
    logp0 = _log_softmax(np.asarray(logits, np.float64))[0]
    beams = [([], 0.0)]
    state = {k: np.repeat(np.asarray(v), 1, 0) for k, v in state.items()}
    logp = logp0[None]
    finished = []
    position = len(prompt_ids)
    for _ in range(max_new_tokens):
        scores = np.asarray([b[1] for b in beams])[:, None] + logp  # [beams, V]
        flat = np.argsort(-scores, axis=None)[: 2 * beam_width]
        next_beams, parents = [], []
        for f in flat:
            parent, token = divmod(int(f), scores.shape[1])
            total = float(scores[parent, token])
            if token == DOC:
                finished.append((beams[parent][0], total))
                continue
            next_beams.append((beams[parent][0] + [token], total))
            parents.append(parent)
            if len(next_beams) == beam_width:
                break
        if not next_beams:
            break
        beams = next_beams
        state = {k: np.asarray(v)[parents] for k, v in state.items()}
        tokens = np.asarray([b[0][-1] for b in beams], np.int32)
        logits, state = decoder.step(tokens, position, state)
        position += 1
        logp = _log_softmax(np.asarray(logits, np.float64))
    candidates = finished + beams
    best = max(candidates, key=lambda b: b[1] / max(len(b[0]), 1) ** length_penalty)
    return {"text": tokenizer.decode(best[0]), "tokens": len(best[0]), "log_prob": best[1]}


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


class KerasDecoder:
    """The decoder interface over a Keras model's `step`, compiled once."""

    def __init__(self, model):
        import tensorflow as tf

        self.model = model
        self.context = getattr(model, "context", None) if hasattr(model, "num_heads") else None
        names = model.state_names()
        shapes = model.state_shapes(1)
        spec = {n: tf.TensorSpec([None, *shapes[n][1:]], tf.float32) for n in names}

        @tf.function(
            input_signature=[tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.int32), spec]
        )
        def step(tokens, position, state):
            return model.step(tokens, position, state)

        self._step = step

    def initial_state(self, batch: int) -> dict:
        return {n: np.zeros(s, np.float32) for n, s in self.model.state_shapes(batch).items()}

    def step(self, tokens, position, state):
        # the state stays a TensorFlow tensor between steps (no copy of the KV cache)
        logits, state = self._step(np.asarray(tokens, np.int32), np.int32(position), state)
        return logits.numpy(), state


class SignatureDecoder:
    """The decoder interface over a converted `decode_step` (a LiteRT signature, or any
    callable {input: array} -> {output: array} with the same names): the reference loop
    that drives a .tflite file, batch 1, the state coming back from the model."""

    def __init__(self, run_signature, state_shapes: dict, context):
        self.run, self.shapes, self.context = run_signature, state_shapes, context

    def initial_state(self, batch: int) -> dict:
        if batch != 1:
            raise ValueError("the TFLite decoding step has batch size 1")
        return {n: np.zeros(s, np.float32) for n, s in self.shapes.items()}

    def step(self, tokens, position, state):
        feeds = {
            "token": np.asarray(tokens, np.int32).reshape(1),
            "position": np.asarray([position], np.int32),
            **{n: np.asarray(v, np.float32) for n, v in state.items()},
        }
        out = self.run(feeds)
        return np.asarray(out["logits"], np.float32).reshape(1, -1), {
            n: out[f"next_{n}"] for n in self.shapes
        }
