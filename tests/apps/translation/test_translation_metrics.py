"""BLEU and chrF of apps/translation/metrics.py against sacrebleu (the field's reference)."""

import random

import pytest
import sacrebleu

from keras_suite.apps.translation.metrics import corpus_bleu, corpus_chrf, exact_match, tokenize_13a

WORDS = (
    "le chat est sur la table , il dort . 12-3 3.5 1,000 un deux trois quatre-vingt-dix ! "
    "\"oui\" d'accord (vraiment) &amp; l'homme ? x-y 2-trois"
).split()


def _corpus(rng, n):
    refs = [" ".join(rng.choices(WORDS, k=rng.randint(1, 14))) for _ in range(n)]
    hyps = []
    for ref in refs:
        r = rng.random()
        if r < 0.3:
            hyps.append(ref)
        elif r < 0.6:  # a near miss: one word changed, dropped or added
            words = ref.split()
            i = rng.randrange(len(words))
            op = rng.choice(("swap", "drop", "add"))
            if op == "swap":
                words[i] = rng.choice(WORDS)
            elif op == "drop" and len(words) > 1:
                del words[i]
            else:
                words.insert(i, rng.choice(WORDS))
            hyps.append(" ".join(words))
        else:
            hyps.append(" ".join(rng.choices(WORDS, k=rng.randint(0, 14))))
    return hyps, refs


def test_bleu_and_chrf_equal_sacrebleu_defaults():
    rng = random.Random(3)
    for _ in range(300):
        hyps, refs = _corpus(rng, rng.randint(1, 8))
        ours, theirs = corpus_bleu(hyps, refs)["bleu"], sacrebleu.corpus_bleu(hyps, [refs]).score
        assert abs(ours - theirs) <= 1e-6, (ours, theirs, hyps, refs)
        ours, theirs = corpus_chrf(hyps, refs), sacrebleu.corpus_chrf(hyps, [refs]).score
        assert abs(ours - theirs) <= 1e-6, (ours, theirs, hyps, refs)


def test_13a_tokenisation_matches_sacrebleu():
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    theirs = Tokenizer13a()
    for line in [
        "Hello, world! It's 3.5 o'clock (12-3).",
        "a&amp;b &lt;x&gt; 1,000,000 -- end.",
        "x-y 2-trois",
    ]:
        assert tokenize_13a(line) == theirs(line).split()


def test_edge_cases_of_the_metrics():
    assert corpus_bleu(["a b c d"], ["a b c d"])["bleu"] == pytest.approx(100.0)
    assert (
        corpus_bleu([""], ["a b c"])["bleu"]
        == 0.0
        == sacrebleu.corpus_bleu([""], [["a b c"]]).score
    )
    assert corpus_chrf(["abc"], ["abc"]) == pytest.approx(100.0)
    assert exact_match(["a  b", "c"], ["a b", "d"]) == 0.5
    with pytest.raises(ValueError):
        corpus_bleu(["a"], ["a", "b"])
