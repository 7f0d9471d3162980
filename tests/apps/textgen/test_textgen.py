"""textgen pieces: the Kneser-Ney baseline by hand, tokenizers (Python and in-graph),
the leak-free split, stateful stream layout, KV-cache/cell steps vs the full forward
pass, and the samplers."""

import math

import numpy as np
import pytest

from keras_suite import common
from keras_suite.apps.textgen import data as data_lib
from keras_suite.apps.textgen.corpus import load_corpus, make_split
from keras_suite.apps.textgen.export import graph_sample
from keras_suite.apps.textgen.model import build_model
from keras_suite.apps.textgen.ngram import KneserNey
from keras_suite.apps.textgen.sampling import beam_search, filter_logits, generate, sample
from keras_suite.apps.textgen.tokenizers import DOC, OFFSET, UNK, Tokenizer
from keras_suite.common.errors import UserError

tf = common.quiet_import_tensorflow()

TEXT = "def f(x):\n    return x + 1  # héllo ∑ 🙂\n\nclass A:\n    pass\n"


# ---- Kneser-Ney -----------------------------------------------------------------------


def test_kneser_ney_bigram_by_hand():
    # "abab" with one padding symbol ^: bigrams ^a:1 ab:2 ba:1 -> D2 = n1/(n1+2n2) = 2/4.
    # Continuation counts: a <- {^, b} = 2, b <- {a} = 1 -> D1 = 1/3, total 3, 2 types,
    # uniform over {a, b, unseen} = 1/3.
    lm = KneserNey(order=2).fit(["abab"])
    assert lm.discount[2] == pytest.approx(0.5) and lm.discount[1] == pytest.approx(1 / 3)
    p1a = (2 - 1 / 3) / 3 + (1 / 3) * 2 / 3 * (1 / 3)
    p1b = (1 - 1 / 3) / 3 + (1 / 3) * 2 / 3 * (1 / 3)
    assert p1a == pytest.approx(17 / 27) and p1b == pytest.approx(8 / 27)
    assert lm.prob("a", "b") == pytest.approx((2 - 0.5) / 2 + 0.5 * 1 / 2 * p1b)
    assert lm.prob("b", "a") == pytest.approx((1 - 0.5) / 1 + 0.5 * 1 / 1 * p1a)
    # "b" after "b" was never seen: only the lower-order share of context "b"
    assert lm.prob("b", "b") == pytest.approx(0.5 * 1 / 1 * p1b)
    # a context never seen at all backs off entirely to the unigram level
    assert lm.prob("z", "a") == pytest.approx(p1a)
    # the whole text: P(a|^) P(b|a) P(a|b) P(b|a)
    pa_start = (1 - 0.5) / 1 + 0.5 * 1 / 1 * p1a
    want = -(math.log(pa_start) + 2 * math.log(lm.prob("a", "b")) + math.log(lm.prob("b", "a")))
    assert lm.nats("abab") == pytest.approx(want)
    assert lm.bits_per_char(["abab"]) == pytest.approx(want / 4 / math.log(2))


@pytest.mark.parametrize("context", ["", "de", "ret", "xyzq", "    r", "Q!"])
def test_kneser_ney_five_gram_is_a_distribution(context):
    lm = KneserNey(order=5).fit([TEXT * 3, "import os\nimport sys\n"])
    ctx = lm.bos * 4 + context
    unseen = lm.prob(ctx, "\U0010fffd")
    assert unseen > 0
    assert sum(lm.prob(ctx, c) for c in lm.alphabet) + unseen == pytest.approx(1.0, abs=1e-9)


def test_kneser_ney_beats_unigram_on_repetitive_text():
    train = ["the cat sat on the mat. " * 20]
    lm5, lm1 = KneserNey(5).fit(train), KneserNey(1).fit(train)
    assert lm5.bits_per_char(["the cat sat on the mat. "]) < 0.5 * lm1.bits_per_char(
        ["the cat sat on the mat. "]
    )


def reference_kneser_ney_bits(train_texts, test_texts, order):
    """Interpolated Kneser-Ney written out the slow way, from the definition: raw counts
    at the top order, continuation counts (distinct left neighbours) below it, found by
    scanning every position of the padded training text; discounts n1 / (n1 + 2 n2) per
    order (0.5 when no count is 1); the lowest order mixes in a uniform distribution over
    the training alphabet plus one symbol for every unseen character."""
    pad = "\ue000"
    padded = [pad * (order - 1) + t for t in train_texts]
    alphabet = set("".join(train_texts))
    uniform = 1.0 / (len(alphabet) + 1)
    ends = [(s, i) for s in padded for i in range(order - 1, len(s))]  # predicted positions
    tables = {}
    for k in range(1, order + 1):
        table = {}
        if k == order:
            for s, i in ends:
                gram = s[i - k + 1 : i + 1]
                table[gram] = table.get(gram, 0) + 1
        else:
            lefts = {}
            for s, i in ends:
                lefts.setdefault(s[i - k + 1 : i + 1], set()).add(s[i - k])
            table = {gram: len(left) for gram, left in lefts.items()}
        n1 = sum(1 for c in table.values() if c == 1)
        n2 = sum(1 for c in table.values() if c == 2)
        tables[k] = (table, n1 / (n1 + 2 * n2) if n1 else 0.5)

    def prob(history, char, k):
        if k == 0:
            return uniform
        table, discount = tables[k]
        context = history[len(history) - (k - 1) :] if k > 1 else ""
        lower = prob(history, char, k - 1)
        matching = {g: c for g, c in table.items() if g[:-1] == context}
        total = sum(matching.values())
        if total == 0:
            return lower
        seen = max(matching.get(context + char, 0) - discount, 0) / total
        return seen + discount * len(matching) / total * lower

    bits, chars = 0.0, 0
    for text in test_texts:
        s = pad * (order - 1) + text
        for i in range(order - 1, len(s)):
            bits -= math.log2(prob(s[:i], s[i], order))
        chars += len(text)
    return bits / chars


@pytest.mark.parametrize(
    "train,test",
    [
        (["aabb"], ["c"]),  # no count of 1 at the top order, an unseen character
        (["aabbaabb"], ["xyz", "ab"]),  # three characters training never had
        (["abab"], ["abc"]),
        (["the cat sat. ", "a hat, the mat"], ["the bat sat on a mat!"]),
    ],
)
@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_kneser_ney_equals_brute_force_reference_also_on_unseen_characters(train, test, order):
    """Used to give an unseen character probability 0 (ValueError in log) when an order
    had no count of 1; now every text has a finite score, equal to the reference."""
    lm = KneserNey(order).fit(train)
    want = reference_kneser_ney_bits(train, test, order)
    assert math.isfinite(want)
    assert lm.bits_per_char(test) == pytest.approx(want, rel=1e-9)
    ctx = lm.bos * (order - 1) + test[0][: order - 1]
    unseen = lm.prob(ctx, "\U0010fffd")
    assert unseen > 0
    assert sum(lm.prob(ctx, c) for c in lm.alphabet) + unseen == pytest.approx(1.0, abs=1e-12)


# ---- tokenizers -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizers():
    texts = [TEXT * 20, "import os\nprint('ok')\n" * 30]
    return {k: Tokenizer.learn(k, texts, 320) for k in ("char", "byte", "bpe")}


@pytest.mark.parametrize("kind", ["char", "byte", "bpe"])
def test_tokenizer_round_trip_and_graph_matches_python(tokenizers, kind, tmp_path):
    from keras_suite.common.app import Artifacts

    tok = tokenizers[kind]
    arts = Artifacts(tmp_path)
    tok.save(arts)
    tok = Tokenizer.load(arts)  # what later hooks see
    ids = tok.encode(TEXT)
    assert ids.min() >= UNK and tok.decode(ids) == TEXT
    g = tok.graph()
    texts = [TEXT, "x + 1", ""]
    ragged = g.tokenize(tf.constant(texts))
    for row, text in zip(ragged.to_list(), texts):
        assert row == tok.encode(text).tolist()
    dense = ragged.to_tensor(0)
    mask = tf.ones_like(dense, tf.bool)
    out = g.detokenize(dense, mask).numpy()
    assert [o.decode() for o in out] == texts


def test_char_tokenizer_unknown_characters(tokenizers):
    tok = tokenizers["char"]
    ids = tok.encode("aé€")  # € never seen in training
    assert ids[-1] == UNK and tok.decode(ids) == "aé\ufffd"
    assert tokenizers["byte"].vocab_size == OFFSET + 256


# ---- corpus and split -----------------------------------------------------------------


def test_stdlib_corpus_is_deterministic_and_split_never_leaks():
    from keras_suite.apps.textgen.config import DataConfig

    cfg = DataConfig(max_chars=300_000)
    a, b = load_corpus(cfg), load_corpus(cfg)
    assert [n for n, _ in a.documents] == [n for n, _ in b.documents] and len(a.documents) >= 10
    assert sum(len(t) for _, t in a.documents) == 300_000
    split = make_split(a.documents, {"test": 0.1, "val": 0.1}, seed=1, mode="document")
    names = [{n for n, _ in getattr(split, s)} for s in ("train", "val", "test")]
    assert all(names) and sum(map(len, names)) == len(set().union(*names)) == len(a.documents)
    one = [("book", "".join(f"line {i} of a long book\n" for i in range(8_000)))]
    split = make_split(one, {"test": 0.1, "val": 0.1}, seed=0, block_chars=10_000)
    assert split.mode == "block" and split.block_chars <= 10_000
    assert all(n.startswith("block") for n, _ in split.train + split.val + split.test)
    whole = one[0][1]
    for name in ("val", "test"):  # each block is a contiguous piece of the text
        chars = sum(len(t) for _, t in getattr(split, name))
        assert all(t in whole for _, t in getattr(split, name))
        assert 0.05 <= chars / len(whole) <= 0.15


@pytest.fixture(scope="module")
def builtin_split():
    """The whole built-in corpus and its default split (about 10 s)."""
    from keras_suite.apps.textgen.config import default

    d = default().data
    corpus = load_corpus(d)
    fractions = {"test": d.test_fraction, "val": d.val_fraction}
    return corpus, make_split(corpus.documents, fractions, 42, d.split, d.block_chars)


def _long_lines(texts, min_chars=30):
    return {
        " ".join(line.split())
        for text in texts
        for line in text.split("\n")
        if len(" ".join(line.split())) >= min_chars
    }


def test_builtin_test_split_shares_no_line_with_training_and_has_no_tables(builtin_split):
    """The audit found 34% of validation characters in 30+-character lines training had,
    and three codec tables holding 39% of validation; neither is left, and the test split
    is a separate set of enough documents."""
    import sysconfig
    from pathlib import Path

    from keras_suite.apps.textgen.corpus import looks_generated

    corpus, split = builtin_split
    root = Path(sysconfig.get_paths()["stdlib"])
    for table in ("encodings/cp866.py", "encodings/cp852.py", "encodings/mac_latin2.py"):
        assert looks_generated((root / table).read_text())
        assert table in corpus.generated
    for code in ("argparse.py", "xml/dom/NodeFilter.py", "json/encoder.py"):
        assert not looks_generated((root / code).read_text())
    names = {s: {n for n, _ in getattr(split, s)} for s in ("train", "val", "test")}
    assert not names["train"] & names["test"] and not names["val"] & names["test"]
    assert not names["train"] & names["val"] and len(names["test"]) >= 40
    assert not any(looks_generated(t) for _, t in corpus.documents)
    train_lines = _long_lines(t for _, t in split.train)
    for name in ("val", "test"):
        assert not train_lines & _long_lines(t for _, t in getattr(split, name))
        assert split.removed[name]["lines"] > 0  # and the log and info say how many
    chars = {s: sum(len(t) for _, t in getattr(split, s)) for s in ("train", "val", "test")}
    total = sum(chars.values())
    assert 0.07 < chars["test"] / total < 0.13 and 0.03 < chars["val"] / total < 0.07


def test_remove_training_lines_counts_what_it_cuts():
    from keras_suite.apps.textgen.corpus import remove_training_lines

    shared = "    return self._compute_something_long(value, other)"
    train = [("a", f"def f():\n{shared}\n")]
    held = [("b", f"x = 1\n  {shared.strip()}  \nshort line\n"), ("c", shared)]
    kept, removed = remove_training_lines(train, held)
    assert kept == [("b", "x = 1\nshort line\n")]
    assert removed == {
        "lines": 2,
        "chars": len(f"  {shared.strip()}  ") + 1 + len(shared) + 1,
        "documents": 1,
    }


def test_small_file_holds_out_what_the_fractions_say_and_logs_it(tmp_path, caplog):
    """A 22k-character file used to lose a third of itself to validation, silently; a
    larger file was cut to data.max_chars without a word."""
    from keras_suite.apps.textgen import APP
    from keras_suite.common import config
    from keras_suite.common.app import Artifacts

    book = tmp_path / "book.txt"
    book.write_text("".join(f"Sentence number {i} of a small book.\n" for i in range(600)))
    size = len(book.read_text())
    assert 20_000 < size < 24_000
    cfg = config.resolve(APP.presets, "smoke", overrides=["data.source=files", f"data.path={book}"])
    with caplog.at_level("INFO", logger="ksuite"):
        data = APP.datasets(cfg=cfg, artifacts=Artifacts(tmp_path / "a1"))
    info = data.info
    held = info["val_chars"] + info["test_chars"]
    assert info["train_chars"] + held == size
    assert info["val_chars"] / size < 0.12 and info["test_chars"] / size < 0.15
    assert f"of {size:,} characters" in caplog.text  # the sizes, with numbers
    assert "data.val_fraction=0.05" in caplog.text and "data.test_fraction=0.1" in caplog.text
    caplog.clear()
    cut = config.resolve(
        APP.presets,
        "smoke",
        overrides=["data.source=files", f"data.path={book}", "data.max_chars=15000"],
    )
    with caplog.at_level("WARNING", logger="ksuite"):
        data = APP.datasets(cfg=cut, artifacts=Artifacts(tmp_path / "a2"))
    assert "data.max_chars=15,000" in caplog.text and f"of its {size:,} characters" in caplog.text
    assert data.info["truncation"]["cut_file_kept"] == 15_000


@pytest.mark.parametrize("stateful", [False, True])
def test_preset_budget_is_steps_not_corpus_size(tmp_path, stateful):
    """`default` trained 3 epochs of a corpus-sized epoch: a smaller text got a fraction of
    the budget. Now train.steps_per_epoch is what an epoch is, whatever the text."""
    from keras_suite.apps.textgen import APP
    from keras_suite.common import config
    from keras_suite.common.app import Artifacts

    book = tmp_path / "book.txt"
    book.write_text("".join(f"Line {i}: a short text to train on.\n" for i in range(800)))
    overrides = [
        "data.source=files",
        f"data.path={book}",
        "data.windows_per_epoch=0",
        "train.steps_per_epoch=90",
        f"model.arch={'rnn' if stateful else 'gpt'}",
        f"model.stateful={str(stateful).lower()}",
    ]
    cfg = config.resolve(APP.presets, "smoke", overrides=overrides)
    data = APP.datasets(cfg=cfg, artifacts=Artifacts(tmp_path / "a"))
    one_pass = data.info["train_tokens"] // cfg.data.seq_len // cfg.train.batch_size
    assert one_pass < 90 and data.steps_per_epoch == 90
    assert data.info["train_steps_per_epoch"] == 90
    batches = list(data.train_epoch(0))
    assert len(batches) == 90
    if stateful:  # every step trains on real text, none is padding
        assert min(float(tf.reduce_sum(b["weights"])) for b in batches) > 0
    for preset in ("default", "char-rnn"):
        train = APP.presets[preset]().train
        assert train.epochs * train.steps_per_epoch >= 2_000


def test_data_check_names_the_file_or_folder(tmp_path, capsys):
    from keras_suite.common.datacheck import check_data, print_report

    book = tmp_path / "book.txt"
    book.write_text("".join(f"Sentence number {i} of a small book.\n" for i in range(600)))
    print_report(
        "textgen",
        check_data("textgen", "smoke", None, ["data.source=files", f"data.path={book}"]),
    )
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"textgen data (file {book.resolve()})"
    assert "test: 1 block(s)" in out


def test_user_folder_skips_bad_encodings_by_name(tmp_path, caplog):
    from keras_suite.apps.textgen import APP
    from keras_suite.common import config
    from keras_suite.common.app import Artifacts

    folder = tmp_path / "texts"
    folder.mkdir()
    for i in range(12):
        (folder / f"doc{i}.txt").write_text(f"document {i}: " + "the quick brown fox jumps. " * 40)
    (folder / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (folder / "copy.txt").write_text(
        (folder / "doc3.txt").read_text()
    )  # would leak across the split
    cfg = config.resolve(
        APP.presets,
        "smoke",
        overrides=["data.source=files", f"data.path={folder}", "data.split=document"],
    )
    with caplog.at_level("WARNING", logger="ksuite"):
        data = APP.datasets(cfg=cfg, artifacts=Artifacts(tmp_path / "arts"))
    assert "latin1.txt" in caplog.text and "skipped 1 file" in caplog.text
    assert data.info["skipped_files"] == 1 and data.info["skipped_examples"] == ["latin1.txt"]
    assert data.info["duplicate_files"] == 1
    split_sizes = data.info["split_sizes"]
    assert split_sizes["train"] + split_sizes["val"] + split_sizes["test"] == 12
    with pytest.raises(UserError, match="neither a file nor a folder"):
        APP.datasets(
            cfg=config.resolve(
                APP.presets,
                "smoke",
                overrides=["data.source=files", f"data.path={tmp_path / 'missing'}"],
            ),
            artifacts=Artifacts(tmp_path / "a2"),
        )


def test_stateful_batches_carry_contiguous_text_and_reset_at_documents():
    tok = Tokenizer("char", list("abcdefghij"))
    texts = ["abcdefghij" * 3, "jihgfedcba" * 5, "aabbccdd", "abc" * 13]
    pieces = data_lib.document_pieces(tok, texts, seq_len=4, doc_chunks=3)
    assert all(len(p) <= 4 * 3 + 1 for p in pieces)
    steps = data_lib.stateful_steps(pieces, batch=2, seq_len=4)
    tokens, targets, weights, reset = data_lib.stateful_epoch_arrays(
        pieces, 2, 4, steps, seed=0, epoch=0
    )
    assert tokens.shape == (steps, 2, 4) and reset.shape == (steps, 2)
    stream = np.concatenate([np.concatenate([[DOC], tok.encode(t)]) for t in texts])
    for row in range(2):
        run = []
        for s in range(steps):
            n = int(weights[s, row].sum())
            if reset[s, row]:
                run = []
                if n:  # a reset window is the start of a piece (or padding, weight 0)
                    assert any(np.array_equal(p[:n], tokens[s, row, :n]) for p in pieces)
            else:
                assert n > 0  # padding only ever follows the end of a row's pieces, with a reset
            np.testing.assert_array_equal(
                targets[s, row, : n - 1], tokens[s, row, 1:n]
            )  # shifted by one
            run += tokens[s, row, :n].tolist()
            # what a row has seen since its last reset is contiguous text of one document
            assert any(
                np.array_equal(stream[i : i + len(run)], run)
                for i in range(len(stream) - len(run) + 1)
            )
    # different epochs deal the pieces differently
    other = data_lib.stateful_epoch_arrays(pieces, 2, 4, steps, seed=0, epoch=1)[0]
    assert not np.array_equal(other, tokens)


def test_validation_windows_score_every_target_once():
    from keras_suite.apps.textgen.evaluate import gpt_windows

    stream = np.arange(3, 3 + 50, dtype=np.int32)
    tokens, targets, weights = data_lib.window_arrays(stream, 8)
    assert weights.sum() == 49
    tokens, targets, weights = gpt_windows(stream, context=8, stride=4)
    scored = sorted(targets[weights > 0].tolist())
    assert scored == stream[1:].tolist()


# ---- models: the one-token step is the full forward pass --------------------------------


@pytest.mark.parametrize("arch,cell", [("gpt", "gru"), ("rnn", "gru"), ("rnn", "lstm")])
def test_step_with_cache_equals_full_forward(arch, cell):
    from keras_suite.apps.textgen.config import smoke

    m = smoke().model
    m.arch, m.cell, m.num_layers, m.rnn_layers = arch, cell, 2, 2
    model = build_model(m, 30, 12)
    tokens = tf.constant(np.random.default_rng(0).integers(0, 30, (3, 12)), tf.int32)
    full = model(tokens).numpy()
    state = model.initial_state(3)
    for t in range(12):
        logits, state = model.step(tokens[:, t], tf.constant(t), state)
        np.testing.assert_allclose(logits.numpy(), full[:, t], atol=2e-5)
    if arch == "rnn":  # forward() with explicit states continues where it left off
        first, mid = model.forward(tokens[:, :5], None)
        second, _ = model.forward(tokens[:, 5:], mid)
        np.testing.assert_allclose(np.concatenate([first, second], 1), full, atol=2e-5)


# ---- samplers -------------------------------------------------------------------------


def test_filter_logits_top_k_top_p_and_greedy():
    logits = np.log([0.5, 0.3, 0.15, 0.05])
    np.testing.assert_allclose(filter_logits(logits, 1.0, top_k=2), [0.625, 0.375, 0, 0])
    np.testing.assert_allclose(filter_logits(logits, 1.0, top_p=0.79), [0.625, 0.375, 0, 0])
    np.testing.assert_allclose(
        filter_logits(logits, 1.0, top_p=0.81), np.array([0.5, 0.3, 0.15, 0]) / 0.95
    )
    np.testing.assert_allclose(filter_logits(logits, 0.0), [1, 0, 0, 0])
    hot = filter_logits(logits, 2.0)
    np.testing.assert_allclose(
        hot, np.sqrt([0.5, 0.3, 0.15, 0.05]) / np.sqrt([0.5, 0.3, 0.15, 0.05]).sum()
    )
    draws = [sample(filter_logits(logits, 1.0), np.random.default_rng(s))[()] for s in range(2000)]
    assert abs(np.mean(np.asarray(draws) == 0) - 0.5) < 0.05


class _ToyDecoder:
    """Next-token distributions by the last token (ids: a=3, b=4): greedy takes a (0.6)
    then 0.35; the best two-token sequence is b a (0.4 * 0.9)."""

    context = None
    table = {3: [0, 0, 0.3, 0.35, 0.35], 4: [0, 0, 0.05, 0.9, 0.05]}

    def initial_state(self, batch):
        return {"last": np.zeros([batch], np.int32)}

    def step(self, tokens, position, state):
        rows = [self.table.get(int(t), [0, 0, 0, 0.6, 0.4]) for t in tokens]
        return np.log(np.asarray(rows) + 1e-12), {"last": np.asarray(tokens)}


def test_beam_search_finds_what_greedy_misses():
    tok = Tokenizer("char", ["a", "b"])
    greedy = generate(_ToyDecoder(), tok, "", max_new_tokens=2, temperature=0.0)
    assert greedy["text"] == "aa"
    beam = beam_search(_ToyDecoder(), tok, "", max_new_tokens=2, beam_width=2)
    assert beam["text"] == "ba" and beam["log_prob"] == pytest.approx(math.log(0.36), abs=1e-6)


def test_sampling_is_seeded_and_stops_at_stop_strings():
    tok = Tokenizer("char", ["a", "b"])
    runs = [
        generate(_ToyDecoder(), tok, "b", 40, temperature=1.0, seed=s)["text"] for s in (7, 7, 8)
    ]
    assert runs[0] == runs[1] and runs[0] != runs[2]
    shown = []
    out = generate(
        _ToyDecoder(), tok, "", 40, temperature=1.0, seed=7, stop=("ba",), on_text=shown.append
    )
    assert (
        out["stopped"] == "stop_string"
        and "ba" not in out["text"]
        and "".join(shown) == out["text"]
    )
    assert "ba" in runs[0]  # so the stop string did occur in the unstopped sample


def test_graph_sampler_rows_are_independent_and_filters_hold():
    rng = np.random.default_rng(0)
    logits = tf.constant(rng.normal(size=(4, 50)), tf.float32)
    ones = tf.ones([4], tf.float32)
    seeds = tf.constant([[1, 5], [2, 5], [3, 5], [4, 5]], tf.int64)
    greedy = graph_sample(logits, tf.zeros([4]), tf.zeros([4], tf.int32), ones, seeds)
    np.testing.assert_array_equal(greedy, tf.argmax(logits, -1))
    np.testing.assert_array_equal(
        graph_sample(logits, ones, tf.ones([4], tf.int32), ones, seeds), greedy
    )
    top3 = tf.math.top_k(logits, 3).indices.numpy()
    for s in range(20):
        seeds_s = tf.constant([[s, 1]] * 4, tf.int64)
        got = graph_sample(logits, ones, tf.fill([4], 3), ones, seeds_s).numpy()
        assert all(g in t for g, t in zip(got, top3))
        nucleus = graph_sample(
            logits, ones, tf.zeros([4], tf.int32), tf.fill([4], 1e-6), seeds_s
        ).numpy()
        np.testing.assert_array_equal(nucleus, greedy)  # a tiny top_p keeps only the best token
    both = graph_sample(logits, ones * 1.5, tf.zeros([4], tf.int32), ones * 0.9, seeds).numpy()
    alone = graph_sample(
        logits[2:3], ones[:1] * 1.5, tf.zeros([1], tf.int32), ones[:1] * 0.9, seeds[2:3]
    ).numpy()
    assert both[2] == alone[0]
