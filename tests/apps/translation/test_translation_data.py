"""Translation data: the built-in number task, TSV reading with counted skips, splits,
WordPiece round trips."""

import numpy as np
import pytest

from keras_suite.apps.translation import config as cfg_lib
from keras_suite.apps.translation.data import (
    SkipCounter,
    batches_per_epoch,
    drop_long_pairs,
    load_pairs,
    read_tsv,
)
from keras_suite.apps.translation.numbers import english, french, number_pairs
from keras_suite.common.errors import UserError


@pytest.mark.parametrize(
    "n,fr",
    [
        (0, "zéro"),
        (17, "dix-sept"),
        (21, "vingt et un"),
        (71, "soixante et onze"),
        (77, "soixante-dix-sept"),
        (80, "quatre-vingts"),
        (81, "quatre-vingt-un"),
        (91, "quatre-vingt-onze"),
        (100, "cent"),
        (200, "deux cents"),
        (201, "deux cent un"),
        (280, "deux cent quatre-vingts"),
        (1000, "mille"),
        (80000, "quatre-vingt mille"),
        (200000, "deux cent mille"),
        (300080, "trois cent mille quatre-vingts"),
        (999999, "neuf cent quatre-vingt-dix-neuf mille neuf cent quatre-vingt-dix-neuf"),
    ],
)
def test_french_number_words(n, fr):
    assert french(n) == fr


def test_english_number_phrases():
    assert english(305, True) == "three hundred and five"
    assert english(305, False) == "three hundred five"
    assert english(21042, True) == "twenty-one thousand and forty-two"
    assert english(100000, False) == "one hundred thousand"


def test_built_in_splits_are_seeded_and_held_out():
    cfg = cfg_lib.smoke()
    a, _ = load_pairs(cfg)
    b, _ = load_pairs(cfg)
    assert a == b
    train_numbers = {p[1] for p in a["train"]}
    assert not train_numbers & {p[1] for p in a["test"]}  # no test number is seen in training
    assert not train_numbers & {p[1] for p in a["val"]}
    # the words of 0-99 are the task's vocabulary: all trained on, none held out
    assert {french(n) for n in range(100)} <= train_numbers
    assert len(a["train"]) == cfg.data.num_train and len(a["test"]) == cfg.data.num_test
    numbers, _ = number_pairs(500, seed=1, min_value=100)
    assert len(set(numbers)) == 500 and min(numbers) >= 100
    assert sum(n < 1000 for n in numbers) > 50  # magnitudes drawn evenly, not uniformly


def _tsv_cfg(path, **data):
    cfg = cfg_lib.smoke()
    cfg.data.source, cfg.data.path = "tsv", str(path)
    for k, v in data.items():
        setattr(cfg.data, k, v)
    return cfg


def test_tsv_lines_are_skipped_and_counted_by_reason(tmp_path):
    path = tmp_path / "fra.txt"
    lines = [
        b"Go.\tVa !\tCC-BY 2.0 (France) Attribution: tatoeba.org #2877272",
        b"no tab here",
        b"\tempty source",
        b"Hi.\t  ",
        b"bad \xff\xfe bytes\tmauvais",
        b"one two three four five six\tun",
        b"",
        b"Run!\tCours\xc2\xa0!",
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    skipped = SkipCounter()
    pairs, total = read_tsv(path, skipped)
    long_pair = ("one two three four five six", "un")
    assert pairs == [("Go.", "Va !"), long_pair, ("Run!", "Cours !")]
    assert total == 7  # the blank line is not counted
    assert dict(skipped.counts) == {"no tab": 1, "empty side": 2, "bad encoding": 1}
    assert skipped.report()["no tab"]["first"] == ["fra.txt:2"]
    # the word limit applies to training and validation pairs, after the split
    assert drop_long_pairs(pairs, 5, 5, skipped, "train") == [pairs[0], pairs[2]]
    assert skipped.counts["too long (words)"] == 1


def test_tsv_split_is_seeded_and_files_named_test_are_the_test_split(tmp_path):
    rows = [f"sentence {i}\tphrase {i}" for i in range(200)]
    (tmp_path / "corpus.tsv").write_text("\n".join(rows), encoding="utf-8")
    cfg = _tsv_cfg(tmp_path / "corpus.tsv", val_fraction=0.1, test_fraction=0.1)
    splits, report = load_pairs(cfg)
    assert (len(splits["train"]), len(splits["val"]), len(splits["test"])) == (160, 20, 20)
    assert load_pairs(cfg)[0] == splits
    (tmp_path / "test.tsv").write_text("held out\tmis de côté\n", encoding="utf-8")
    splits, _ = load_pairs(_tsv_cfg(tmp_path))
    assert splits["test"] == [("held out", "mis de côté")]


def test_bad_tsv_input_gives_one_clear_line(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_pairs(_tsv_cfg(tmp_path / "missing.tsv"))
    (tmp_path / "x.tsv").write_text("no tabs\nat all\n", encoding="utf-8")
    with pytest.raises(UserError, match="no usable sentence pairs"):
        load_pairs(_tsv_cfg(tmp_path / "x.tsv"))
    with pytest.raises(UserError, match="data.path"):
        cfg_lib.DataConfig(source="tsv").validate()


def test_batches_per_epoch_counts_what_bucketing_yields():
    import tensorflow as tf

    lengths = np.array([3, 4, 9, 12, 5, 6, 20, 2, 3, 15, 7, 8, 8, 30])
    ds = tf.data.Dataset.from_tensor_slices(lengths).map(lambda n: tf.zeros([n], tf.int32))
    boundaries = [9, 17]
    ds = ds.bucket_by_sequence_length(
        lambda x: tf.shape(x)[0], boundaries, [3, 3, 3], drop_remainder=True
    )
    assert sum(1 for _ in ds) == batches_per_epoch(lengths, boundaries, 3)


def test_wordpiece_round_trip_in_graph_and_in_python(tmp_path):
    import tensorflow as tf

    from keras_suite.apps.translation.tokenizer import (
        SubwordTokenizer,
        detokenize_python,
        learn_vocabulary,
    )

    sentences = [
        "Hello, world! How are you?",
        "I'm fine, thanks.",
        "Vingt et un (21) : d'accord ?",
        "quatre-vingt-dix-neuf mille",
    ] * 20
    vocab = learn_vocabulary(sentences, 120, lowercase=False)
    assert vocab[:4] == ["[PAD]", "[UNK]", "[START]", "[END]"]
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tok = SubwordTokenizer(str(path))
    ids = tok.tokenize(tf.constant(sentences[:4]))
    back = [s.decode() for s in tok.detokenize(ids).numpy()]
    assert back == sentences[:4]  # exact: spaces around punctuation come back as they were
    assert [detokenize_python(row, vocab) for row in ids.to_list()] == back
    padded = ids.to_tensor()  # PAD after the end, as a decoder's output has
    with_end = tf.concat(
        [padded, tf.fill([4, 1], 3), tf.fill([4, 2], 10)], 1
    )  # pieces after END are dropped
    assert [s.decode() for s in tok.detokenize(with_end).numpy()] == back
    unknown = tok.tokenize(tf.constant(["Zebra ünïcode"])).to_list()[0]
    assert 1 in unknown  # pieces the vocabulary lacks become [UNK]


@pytest.mark.parametrize("shared", [False, True])
def test_vocabularies_per_side_or_shared(tmp_path, shared):
    from keras_suite.apps.translation.data import SOURCE_VOCAB, TARGET_VOCAB, vocabularies
    from keras_suite.common.app import Artifacts

    cfg = cfg_lib.smoke()
    cfg.data.shared_vocabulary = shared
    pairs = [("the red house", "la maison rouge"), ("Paris in May", "Paris en mai")] * 30
    src, tgt = vocabularies(cfg, Artifacts(tmp_path), pairs)
    assert (src == tgt) is shared
    assert ("maison" in src) is shared and ("house" in tgt) is shared  # the other side's words
    assert "house" in src and "maison" in tgt
    assert (tmp_path / SOURCE_VOCAB).read_text().splitlines() == src
    assert (tmp_path / TARGET_VOCAB).read_text().splitlines() == tgt
