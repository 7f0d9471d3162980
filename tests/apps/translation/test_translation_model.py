"""Translation models and decoding: the KV-cached step equals the full forward pass,
greedy/beam search in graph against Python references, the heat-map replay, export."""

import dataclasses
import itertools
import math
import subprocess
import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from keras_suite.apps.translation.config import smoke  # noqa: E402
from keras_suite.apps.translation.decoding import beam_search, greedy_decode, python_loop_decode  # noqa: E402
from keras_suite.apps.translation.model import build_translator  # noqa: E402
from keras_suite.apps.translation.tokenizer import END_ID, PAD_ID, START_ID  # noqa: E402

INFO = dict(source_vocab_size=40, target_vocab_size=30, max_source_tokens=9, max_target_tokens=7)
VARIANTS = [
    dict(arch="transformer"),
    dict(
        arch="transformer",
        normalize_first=True,
        positions="sinusoidal",
        tie_embeddings=True,
        decoder_layers=2,
    ),
    dict(arch="rnn", cell="gru", attention="bahdanau"),
    dict(arch="rnn", cell="lstm", attention="luong_general"),
    dict(arch="rnn", cell="gru", attention="luong_dot"),
]


def _sources(rng, batch=3):
    src = rng.integers(4, INFO["source_vocab_size"], (batch, INFO["max_source_tokens"])).astype(
        np.int32
    )
    src[0, 5:] = PAD_ID  # a padded sentence
    return tf.constant(src)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(str(x) for x in v.values()))
def test_cached_steps_equal_the_teacher_forced_pass(variant):
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(1)
    model = build_translator(dataclasses.replace(smoke().model, **variant), INFO)
    rng = np.random.default_rng(0)
    source = _sources(rng)
    target = tf.constant(rng.integers(4, INFO["target_vocab_size"], (3, 6)).astype(np.int32))
    full = model({"source": source, "target_in": target}).numpy()
    memory = model.encode(source)
    cache = model.initial_cache(memory)
    steps = []
    for i in range(6):
        logits, cache = model.decode_step(target[:, i], tf.constant(i), cache, memory)
        steps.append(logits.numpy())
    np.testing.assert_allclose(np.stack(steps, 1), full, atol=1e-4)
    # in-graph greedy decoding == the keras-io loop (whole prefix, from Python)
    greedy = tf.function(lambda s: greedy_decode(model, s, 8))(source).numpy()
    reference = python_loop_decode(model, source, 8)
    np.testing.assert_array_equal(greedy, reference[:, : greedy.shape[1]])
    beam1, _ = tf.function(lambda s: beam_search(model, s, 8, 1, 0.0))(source)
    np.testing.assert_array_equal(beam1.numpy()[:, : greedy.shape[1]], greedy)
    weights, _ = model.attention_weights(source, target)
    np.testing.assert_allclose(weights.numpy().sum(-1), 1.0, atol=1e-5)
    assert np.abs(weights.numpy()[0, :, 5:]).max() < 1e-6  # no attention on padding


def test_transformer_heat_map_replay_matches_the_decoder_layer():
    """attention_weights replays keras-hub's last decoder layer; finishing the replay by
    hand must give that layer's own output, or the heat map shows something else."""
    for normalize_first in (False, True):
        model = build_translator(
            dataclasses.replace(smoke().model, decoder_layers=2, normalize_first=normalize_first),
            INFO,
        )
        rng = np.random.default_rng(1)
        source = _sources(rng)
        target = tf.constant(rng.integers(4, INFO["target_vocab_size"], (3, 5)).astype(np.int32))
        _, (cross_out, residual) = model.attention_weights(source, target)
        encoded, mask = model.encode_sequence(source)
        x = model.decoder_layers[0](
            model._embed_target(target), encoded, encoder_padding_mask=mask, use_causal_mask=True
        )
        last = model.decoder_layers[1]
        want = last(x, encoded, encoder_padding_mask=mask, use_causal_mask=True)
        y = cross_out + residual
        if not normalize_first:
            y = last._cross_attention_layer_norm(y)
        z = last._feedforward_layer_norm(y) if normalize_first else y
        z = last._feedforward_output_dense(last._feedforward_intermediate_dense(z)) + y
        if not normalize_first:
            z = last._feedforward_layer_norm(z)
        np.testing.assert_allclose(z.numpy(), want.numpy(), atol=1e-5)


class MarkovModel:
    """A fake translator: the next token's log-probabilities depend on the last token only
    (a table), so the best sequence can be found by enumerating all of them."""

    def __init__(self, table):
        self.table = tf.constant(table, tf.float32)

    def encode(self, source):
        return {"source_mask": tf.cast(source != PAD_ID, tf.int32)}

    def initial_cache(self, memory):
        return {"steps": tf.zeros([tf.shape(memory["source_mask"])[0], 1], tf.float32)}

    def decode_step(self, token, index, cache, memory):
        return tf.gather(self.table, token), {"steps": cache["steps"] + 1.0}


def _exhaustive_best(logp, max_len, alpha):
    """Best sequence by log-prob / GNMT penalty over every sequence of allowed tokens."""
    allowed = [t for t in range(logp.shape[0]) if t not in (PAD_ID, START_ID)]
    best, best_score = None, -math.inf
    for length in range(1, max_len + 1):
        for seq in itertools.product(allowed, repeat=length):
            if END_ID in seq[:-1] or (length < max_len and seq[-1] != END_ID):
                continue  # END only last; only sequences of max_len may stop without END
            prev, total = START_ID, 0.0
            for t in seq:
                total += logp[prev, t]
                prev = t
            score = total / ((5 + length) / 6) ** alpha
            if score > best_score:
                best, best_score = list(seq), score
    return best, best_score


def _log_softmax_allowed(logits):
    logits = logits.copy()
    logits[:, [PAD_ID, START_ID]] = -1e9
    return (
        logits
        - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True))
        - logits.max(1, keepdims=True)
    )


def test_beam_search_with_a_wide_beam_finds_the_best_sequence():
    rng = np.random.default_rng(7)
    vocab, max_len, alpha = 6, 4, 0.6  # tokens UNK, END and two words can follow
    for trial in range(5):
        table = rng.normal(0, 2, (vocab, vocab)).astype(np.float32)
        model = MarkovModel(table)
        source = tf.ones([1, 3], tf.int32)
        ids, score = beam_search(model, source, max_len, 4**max_len, alpha)
        want, want_score = _exhaustive_best(_log_softmax_allowed(table), max_len, alpha)
        got = [int(t) for t in ids.numpy()[0] if t != PAD_ID]
        assert got == want, (trial, got, want)
        assert float(score.numpy()[0]) == pytest.approx(want_score, abs=1e-4)


def test_beam_search_beats_greedy_when_greedy_is_myopic():
    # from START: A (4) is likelier than B (5); after A everything is flat, after B END is
    # almost sure: greedy says A ..., a beam of 2 finds B END.
    table = np.full((6, 6), -5.0, np.float32)
    table[START_ID, 4], table[START_ID, 5] = math.log(0.6), math.log(0.4)
    table[4, [1, 3, 4, 5]] = math.log(0.25)
    table[5, END_ID] = math.log(0.97)
    model = MarkovModel(table)
    source = tf.ones([2, 3], tf.int32)
    greedy = greedy_decode(model, source, 5).numpy()
    assert greedy[0, 0] == 4
    beam, _ = beam_search(model, source, 5, tf.constant(2), 0.0)
    assert beam.numpy()[:, :2].tolist() == [[5, END_ID], [5, END_ID]]
    assert (beam.numpy()[:, 2:] == PAD_ID).all()


def test_export_translates_without_the_run_folder(tmp_path):
    """The SavedModel carries its vocabularies (assets) and answers in a process with
    TensorFlow and TF Text only, after the run's artifacts are gone."""
    from keras_suite.apps.translation.app import TranslationApp, make_translator
    from keras_suite.apps.translation.data import SOURCE_VOCAB, TARGET_VOCAB
    from keras_suite.common.app import Artifacts

    artifacts = Artifacts(tmp_path / "artifacts")
    pieces = ["[PAD]", "[UNK]", "[START]", "[END]"] + [f"w{i}" for i in range(26)]
    artifacts.write_text(SOURCE_VOCAB, "\n".join(pieces + [f"s{i}" for i in range(10)]) + "\n")
    artifacts.write_text(TARGET_VOCAB, "\n".join(pieces) + "\n")
    cfg = smoke()
    model = build_translator(cfg.model, INFO)
    from keras_suite.common.training import TrainState

    state = TrainState(models={"model": model})
    archive = TranslationApp().export_archive(state=state, info=INFO, cfg=cfg, artifacts=artifacts)
    archive.write_out(str(tmp_path / "export"), verbose=False)
    sentences = ["w1 w2 s3", "s1", ""]
    translator = make_translator(model, cfg, INFO, artifacts)
    want = [t.decode() for t in translator.greedy(tf.constant(sentences))["translations"].numpy()]
    want_beam = [
        t.decode()
        for t in translator.beam(tf.constant(sentences), tf.constant([3, 3, 3]))[
            "translations"
        ].numpy()
    ]
    for f in (tmp_path / "artifacts").iterdir():
        f.unlink()
    code = (
        "import json, sys, tensorflow as tf, tensorflow_text\n"
        "m = tf.saved_model.load(sys.argv[1])\n"
        f"s = tf.constant({sentences!r})\n"
        "g = m.signatures['serving_default'](sentences=s)['translations'].numpy()\n"
        "b = m.signatures['translate_beam'](sentences=s, beam_width=tf.constant([3, 3, 3]))['translations'].numpy()\n"
        "print(json.dumps([[x.decode() for x in g], [x.decode() for x in b]]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "export")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    import json

    got, got_beam = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == want and got_beam == want_beam

    # `ksuite serve` answers the same strings over REST and gRPC (TF Text ops registered).
    from tests.serving.helpers import start_embedded

    (tmp_path / "models" / "translation").mkdir(parents=True)
    (tmp_path / "export").rename(tmp_path / "models" / "translation" / "1")
    target = start_embedded(
        model_name="translation",
        model_base_path=str(tmp_path / "models" / "translation"),
        file_system_poll_wait_seconds=0,
    )
    try:
        rest = target.rest().predict_raw("translation", {"instances": sentences})["predictions"]
        assert rest == want
        beam = target.rest().predict_raw(
            "translation",
            {
                "signature_name": "translate_beam",
                "inputs": {"sentences": sentences, "beam_width": [3, 3, 3]},
            },
        )["outputs"]["translations"]
        assert beam == want_beam
        grpc = target.grpc().predict(
            "translation", {"sentences": np.array(sentences, dtype=object)}
        )
        assert [t.decode() for t in grpc["translations"]] == want
    finally:
        target.stop()


def test_unrolled_rnn_encoder_for_tflite_is_the_same_function():
    """TFLite targets of the RNN use an unrolled twin of the encoder (int8 calibration of
    a converted while loop crashes); with the same weights it must encode the same."""
    mcfg = dataclasses.replace(smoke().model, arch="rnn", cell="lstm")
    model = build_translator(mcfg, INFO)
    twin = build_translator(mcfg, INFO, unroll=True)
    twin.set_weights(model.get_weights())
    source = _sources(np.random.default_rng(3))
    a, b = model.encode(source), twin.encode(source)
    assert sorted(a) == sorted(b)
    real = (source.numpy() != PAD_ID)[..., None]  # the loops differ only at padded positions,
    for k in a:  # which attention masks out
        x, y = a[k].numpy(), b[k].numpy()
        if x.ndim == 3:
            x, y = x * real, y * real
        np.testing.assert_allclose(x, y, atol=1e-5)
    # and both directions ignore padding: the padded sentence encodes like the bare one
    bare = model.encode(source[:1, :5])
    np.testing.assert_allclose(a["encoded"].numpy()[0, :5], bare["encoded"].numpy()[0], atol=1e-5)
    np.testing.assert_allclose(a["state_0"].numpy()[0], bare["state_0"].numpy()[0], atol=1e-5)
    token = tf.constant([START_ID] * 3)
    la, _ = model.decode_step(token, tf.constant(0), model.initial_cache(a), a)
    lb, _ = twin.decode_step(token, tf.constant(0), twin.initial_cache(b), b)
    np.testing.assert_allclose(la.numpy(), lb.numpy(), atol=1e-5)
