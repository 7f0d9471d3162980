"""textgen end to end on `smoke`: a trained GPT and a stateful char-RNN, their metrics,
the SavedModel's in-graph generation against the Python sampler, the TFLite decoding
step against the Keras step, `ksuite generate`, and stateful training under
MirroredStrategy (2 logical CPUs, in a subprocess)."""

import json
import math

import numpy as np
import pytest

from keras_suite import common
from tests.helpers import run_ksuite

tf = common.quiet_import_tensorflow()

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory):
    from keras_suite.common.run import train_run

    run_dir = tmp_path_factory.mktemp("textgen") / "gpt"
    train_run("textgen", "smoke", run_dir=run_dir, strategy_name="default")
    return run_dir


@pytest.fixture(scope="module")
def rnn_run(tmp_path_factory):
    from keras_suite.common.run import train_run

    run_dir = tmp_path_factory.mktemp("textgen") / "rnn"
    train_run(
        "textgen",
        "smoke",
        run_dir=run_dir,
        strategy_name="default",
        overrides=[
            "model.arch=rnn",
            "model.stateful=true",
            "data.tokenizer=byte",
            "train.steps_per_epoch=20",
        ],
    )
    return run_dir


# ---- an independent scorer: the models written out in numpy, one target at a time -------


def _layer_norm(x, layer):
    gamma, beta = (np.asarray(w, np.float64) for w in layer.get_weights())
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5) * gamma + beta


def _dense(x, layer):
    kernel, bias = (np.asarray(w, np.float64) for w in layer.get_weights())
    return x @ kernel + bias


_erf = np.vectorize(math.erf)


def _numpy_gpt_log_probs(model, tokens):
    """log P(next token) after the last of `tokens`, the GPT computed in float64 numpy."""
    emb = np.asarray(model.tok_emb.embeddings, np.float64)
    pos = np.asarray(model.pos_emb.embeddings, np.float64)
    t = len(tokens)
    x = emb[tokens] + pos[:t]
    heads, hd = model.num_heads, model.head_dim
    for block in model.blocks:
        h = _layer_norm(x, block.ln1)
        q, k, v = np.split(_dense(h, block.attn.qkv), 3, axis=-1)
        out = np.zeros_like(x)
        for head in range(heads):
            cols = slice(head * hd, (head + 1) * hd)
            scores = q[:, cols] @ k[:, cols].T / math.sqrt(hd)
            scores = np.where(np.tril(np.ones([t, t])) > 0, scores, -np.inf)
            weights = np.exp(scores - scores.max(-1, keepdims=True))
            out[:, cols] = weights / weights.sum(-1, keepdims=True) @ v[:, cols]
        x = x + _dense(out, block.attn.proj)
        h = _dense(_layer_norm(x, block.ln2), block.fc)
        h = 0.5 * h * (1 + _erf(h / math.sqrt(2)))  # exact GELU
        x = x + _dense(h, block.out)
    logits = _layer_norm(x, model.ln_f)[-1] @ emb.T
    return logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())


def _numpy_gru_document_nats(model, ids):
    """-ln P of every token after the first, the GRU stack read from a zero state in numpy
    (Keras' GRU: gates z, r, h; reset applied after the recurrent matmul)."""
    emb = np.asarray(model.embedding.embeddings, np.float64)
    cells = [[np.asarray(w, np.float64) for w in rnn.cell.get_weights()] for rnn in model.rnns]
    states = [np.zeros(model.units) for _ in cells]
    nats = 0.0
    for position in range(len(ids) - 1):
        x = emb[ids[position]]
        for i, (kernel, recurrent, bias) in enumerate(cells):
            u = model.units
            xz, xr, xh = np.split(x @ kernel + bias[0], 3)
            hz, hr, hh = np.split(states[i] @ recurrent + bias[1], 3)
            z, r = 1 / (1 + np.exp(-(xz + hz))), 1 / (1 + np.exp(-(xr + hr)))
            states[i] = z * states[i] + (1 - z) * np.tanh(xh + r * hh)
            x = states[i]
            assert len(x) == u
        logits = _dense(x, model.head)
        logits = logits - logits.max()
        nats -= logits[ids[position + 1]] - np.log(np.exp(logits).sum())
    return nats


def test_gpt_bits_per_char_equals_a_brute_force_scorer(gpt_run):
    """metrics.json's bits/char against every test target scored one at a time in numpy:
    target j of the test stream is predicted from the window the protocol gives it (from
    the start, then windows every context/2 tokens: the first one holding j), and the
    total is divided by the characters of the test documents counted here."""
    from keras_suite.common.run import load_run

    m = json.loads((gpt_run / "metrics.json").read_text())
    info = json.loads((gpt_run / "info.json").read_text())
    assert info["evaluation_split"]["split"] == "test" == m["evaluation_split"]["split"]
    run = load_run(gpt_run)
    texts = run.datasets().extras["test_texts"]
    chars = json.loads((gpt_run / "artifacts" / "tokenizer.json").read_text())["chars"]
    ids = {c: 3 + i for i, c in enumerate(chars)}  # PAD, DOC, UNK, then the characters
    stream = []
    for text in texts:
        stream += [1] + [ids.get(c, 2) for c in text]
    model, context = run.state.model, run.state.model.context
    stride = context // 2
    nats = 0.0
    for j in range(1, len(stream)):
        if stream[j] == 1:
            continue  # document separators are inputs only
        start = 0 if j <= context else -(-(j - context) // stride) * stride
        nats -= _numpy_gpt_log_probs(model, stream[start:j])[stream[j]]
    n_chars = sum(len(t) for t in texts)
    assert m["test_chars"] == n_chars and m["test_documents"] == len(texts)
    assert m["bits_per_char"] == pytest.approx(nats / n_chars / math.log(2), rel=2e-5)
    low, high = m["bits_per_char_ci95"]
    assert low < m["bits_per_char"] < high
    assert 0.5 < m["ngram_bits_per_char"] < 6 and m["generation_tokens_per_sec"] > 0
    assert m["train_tokens_per_sec"] > 0
    assert (gpt_run / "samples.txt").read_text().startswith("--- prompt 'def '")
    assert (gpt_run / "plots" / "bits_per_char.png").exists()


def test_stateful_rnn_bits_per_char_equals_a_brute_force_scorer(rnn_run):
    """The RNN reads every test document from its start, from a zero state: here the GRU
    written out in numpy does that over the documents' UTF-8 bytes, one at a time."""
    from keras_suite.common.run import load_run

    m = json.loads((rnn_run / "metrics.json").read_text())
    assert m["arch"] == "rnn-gru-stateful" and m["tokenizer"] == "byte"
    run = load_run(rnn_run)
    texts = run.datasets().extras["test_texts"]
    nats = 0.0
    for text in texts:
        nats += _numpy_gru_document_nats(run.state.model, [1] + [3 + b for b in text.encode()])
    n_chars = sum(len(t) for t in texts)
    assert m["bits_per_char"] == pytest.approx(nats / n_chars / math.log(2), rel=2e-5)
    ckpt = tf.train.latest_checkpoint(str(rnn_run / "checkpoints"))
    names = [n for n, _ in tf.train.list_variables(ckpt) if n.startswith("carry_state0_h")]
    assert names, "the carried state is checkpointed"
    carried = tf.train.load_variable(ckpt, names[0])
    assert carried.shape == (16, 32) and np.abs(carried).max() > 0.0
    assert run.state.model.cell_type == "gru"


def test_predict_prints_the_generated_text(gpt_run, tmp_path, capsys):
    from keras_suite.cli import main

    out_dir = tmp_path / "predictions"
    assert main(["predict", str(gpt_run), "def ", "import", "--out", str(out_dir)]) == 0
    printed = capsys.readouterr().out
    texts = json.loads((out_dir / "predictions.json").read_text())["outputs"]["text"]
    for prompt, text in zip(["def ", "import"], texts):
        assert f"--- prompt {prompt!r}\n{prompt}{text}\n" in printed
    assert len(texts[0]) > 0


def test_rnn_byte_export_generates_like_python(rnn_run, tmp_path):
    """The RNN's in-graph loop (cell states instead of a KV cache) and the byte tokenizer."""
    from keras_suite.apps.textgen.sampling import KerasDecoder, generate
    from keras_suite.apps.textgen.tokenizers import Tokenizer
    from keras_suite.common.run import load_run

    run = load_run(rnn_run)
    run.app.export_archive(
        state=run.state, info=run.info, cfg=run.cfg, artifacts=run.artifacts
    ).write_out(str(tmp_path / "m"), verbose=False)
    gen = tf.saved_model.load(str(tmp_path / "m")).signatures["generate"]
    prompts = ["héllo ", "def"]
    out = gen(
        prompts=tf.constant(prompts),
        max_new_tokens=tf.constant([7, 12]),
        temperature=tf.zeros([2]),
        top_k=tf.zeros([2], tf.int32),
        top_p=tf.ones([2]),
        seed=tf.constant([0, 0], tf.int64),
    )
    tok, decoder = Tokenizer.load(run.artifacts), KerasDecoder(run.state.model)
    for i, (p, n) in enumerate(zip(prompts, [7, 12])):
        want = generate(decoder, tok, p, n, temperature=0.0)
        assert (
            out["text"][i].numpy().decode("utf-8", "replace") == want["text"]
        )  # raw bytes in graph
        assert int(out["num_tokens"][i]) == want["tokens"]


def test_stateless_rnn_step_learns():
    """The stateless switch: the same train_step with zero states on random windows."""
    import tempfile

    from keras_suite.apps.textgen import APP
    from keras_suite.common import config
    from keras_suite.common.app import Artifacts, StepContext

    cfg = config.resolve(APP.presets, "smoke", overrides=["model.arch=rnn", "model.cell=lstm"])
    with tempfile.TemporaryDirectory() as tmp:
        data = APP.datasets(cfg=cfg, artifacts=Artifacts(tmp))
    state = APP.build_state(cfg=cfg, info=data.info)
    assert not state.variables  # nothing carried
    batches = list(data.train_epoch(0).take(12))
    step = tf.function(lambda b: APP.train_step(state, b, StepContext(cfg, cfg.train.batch_size)))
    losses = [float(step(b)["loss"]) for b in batches]
    assert losses[-1] < losses[0] - 0.3


@pytest.fixture(scope="module")
def gpt_export(gpt_run, tmp_path_factory):
    from keras_suite.common.run import load_run

    run = load_run(gpt_run)
    path = tmp_path_factory.mktemp("export") / "1"
    run.app.export_archive(
        state=run.state, info=run.info, cfg=run.cfg, artifacts=run.artifacts
    ).write_out(str(path), verbose=False)
    return run, tf.saved_model.load(str(path))


def test_serving_default_scores_like_the_model(gpt_export):
    from keras_suite.apps.textgen.tokenizers import DOC, Tokenizer

    run, loaded = gpt_export
    tok = Tokenizer.load(run.artifacts)
    texts = ["def main(x):", "import os"]
    out = loaded.signatures["serving_default"](text=tf.constant(texts))
    for i, text in enumerate(texts):
        ids = np.concatenate([[DOC], tok.encode(text)]).astype(np.int32)
        logp = tf.nn.log_softmax(run.state.model(ids[None])[0]).numpy()
        want = logp[np.arange(len(ids) - 1), ids[1:]].sum()
        assert float(out["log_likelihood"][i]) == pytest.approx(want, abs=1e-3)
        np.testing.assert_allclose(out["next_token_log_probs"][i], logp[-1], atol=1e-4)
        assert int(out["num_chars"][i]) == len(text)


def test_in_graph_generation_matches_python_loop(gpt_export):
    from keras_suite.apps.textgen.sampling import KerasDecoder, generate
    from keras_suite.apps.textgen.tokenizers import Tokenizer

    run, loaded = gpt_export
    tok = Tokenizer.load(run.artifacts)
    gen = loaded.signatures["generate"]
    prompts = ["def ", "import o", "x"]
    out = gen(
        prompts=tf.constant(prompts),
        max_new_tokens=tf.constant([6, 9, 4]),
        temperature=tf.zeros([3]),
        top_k=tf.zeros([3], tf.int32),
        top_p=tf.ones([3]),
        seed=tf.constant([1, 2, 3], tf.int64),
    )
    decoder = KerasDecoder(run.state.model)
    for i, (p, n) in enumerate(zip(prompts, [6, 9, 4])):
        want = generate(decoder, tok, p, n, temperature=0.0)
        assert out["text"][i].numpy().decode() == want["text"]
    sampled = dict(
        temperature=tf.fill([3], 1.0),
        top_k=tf.fill([3], 5),
        top_p=tf.fill([3], 0.9),
        seed=tf.constant([4, 5, 6], tf.int64),
        max_new_tokens=tf.fill([3], 8),
    )
    a = gen(prompts=tf.constant(prompts), **sampled)["text"].numpy()
    b = gen(prompts=tf.constant(prompts), **sampled)["text"].numpy()
    alone = gen(prompts=tf.constant(prompts[1:2]), **{k: v[1:2] for k, v in sampled.items()})[
        "text"
    ].numpy()
    assert list(a) == list(b) and a[1] == alone[0]


def test_tflite_decode_step_matches_keras_step(gpt_run, tmp_path):
    from keras_suite.apps.textgen.sampling import KerasDecoder
    from keras_suite.common.run import load_run
    from keras_suite.tflite.convert import convert
    from keras_suite.tflite.runtime import LiteRTSignature

    run = load_run(gpt_run)
    data = run.datasets()
    (target,) = run.app.tflite_targets(state=run.state, data=data, cfg=run.cfg, workdir=tmp_path)
    conversion = convert(
        target.saved_model_dir, target.signature, "float32", "float32", None, False, 0
    )
    assert not conversion.flex_ops
    lite = LiteRTSignature(conversion.model, target.signature, num_threads=1)
    decoder = KerasDecoder(run.state.model)
    state = decoder.initial_state(1)
    lite_state = {k: v for k, v in state.items()}
    for pos, token in enumerate(data.extras["val_stream"][:10]):
        want, state = decoder.step([token], pos, state)
        got = lite(
            {
                "token": np.asarray([token], np.int32),
                "position": np.asarray([pos], np.int32),
                **lite_state,
            }
        )
        lite_state = {k: got[f"next_{k}"] for k in state}
        np.testing.assert_allclose(got["logits"], want, atol=1e-4)
    # the reference loop over the .tflite step generates what the Keras model generates
    from keras_suite.apps.textgen.sampling import SignatureDecoder, generate
    from keras_suite.apps.textgen.tokenizers import Tokenizer

    tok = Tokenizer.load(run.artifacts)
    lite_decoder = SignatureDecoder(lite, run.state.model.state_shapes(1), run.state.model.context)
    for prompt in ("def ", "import "):
        assert (
            generate(lite_decoder, tok, prompt, 40, temperature=0.0)["text"]
            == generate(decoder, tok, prompt, 40, temperature=0.0)["text"]
        )  # 40 > context: slides


def test_generate_command_streams_seeded_text(gpt_run, capsys):
    from keras_suite.cli import main

    args = ["generate", str(gpt_run), "--prompt", "def ", "--max-new-tokens", "12", "--seed", "3"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == first and first.startswith("def ")
    assert (
        main(["generate", str(gpt_run), "--prompt", "def ", "--beam", "3", "--max-new-tokens", "5"])
        == 0
    )
    assert main(["generate", str(gpt_run), "--top-p", "0"]) == 2  # one clear error line


def test_stateful_rnn_under_mirrored_strategy(tmp_path):
    """Each replica carries its own half of the streams (SyncOnRead state variables)."""
    out = run_ksuite(
        "train",
        "textgen",
        "--preset",
        "smoke",
        "--strategy",
        "mirrored",
        "--cpu-devices",
        "2",
        "--run-dir",
        str(tmp_path / "run"),
        "--set",
        "model.arch=rnn",
        "--set",
        "model.stateful=true",
        "--set",
        "train.steps_per_epoch=6",
        "--set",
        "train.epochs=1",
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "2 replica" in out.stderr
    ckpt = tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints"))
    names = [n for n, _ in tf.train.list_variables(ckpt) if n.startswith("carry_state0_h")]
    assert tf.train.load_variable(ckpt, names[0]).shape == (8, 32)  # 16 rows / 2 replicas
