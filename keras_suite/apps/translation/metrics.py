"""Corpus BLEU and chrF as sacrebleu computes them with its defaults, and exact match.

Written from the definitions (Papineni et al. 2002 with mteval-v13a tokenisation and the
"exp" smoothing of mteval; Popović 2015 chrF with beta=2, character 6-grams, whitespace
ignored); tests/apps/translation/test_translation_metrics.py holds both equal to sacrebleu
within 1e-6 on the same outputs. sacrebleu itself (a runtime dependency) gives the
signature written next to the scores in metrics.json.
"""

from __future__ import annotations

import math
import re
from collections import Counter

# mteval-v13a: split off most punctuation, periods/commas unless between digits, and a
# dash that follows a digit.
_13A_RULES = [
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),
]


def tokenize_13a(line: str) -> list[str]:
    line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        line = (
            line.replace("&quot;", '"')
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
        )
    line = f" {line} "
    for pattern, repl in _13A_RULES:
        line = pattern.sub(repl, line)
    return line.split()


def _ngrams(tokens, n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def corpus_bleu(hypotheses: list[str], references: list[str], max_order: int = 4) -> dict:
    """BLEU (0-100) of a corpus with one reference per sentence, sacrebleu's defaults."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    correct = [0] * max_order
    total = [0] * max_order
    hyp_len = ref_len = 0
    for hyp, ref in zip(hypotheses, references):
        h, r = tokenize_13a(hyp), tokenize_13a(ref)
        hyp_len += len(h)
        ref_len += len(r)
        for n in range(1, max_order + 1):
            hc, rc = _ngrams(h, n), _ngrams(r, n)
            correct[n - 1] += sum(min(c, rc[g]) for g, c in hc.items())
            total[n - 1] += max(len(h) - n + 1, 0)
    precisions = [0.0] * max_order
    smooth = 1.0
    for n in range(max_order if any(correct) else 0):  # no match at all: BLEU 0
        if total[n] == 0:
            break
        if correct[n] == 0:  # mteval's "exp" smoothing: halve the pseudo-count each time
            smooth *= 2
            precisions[n] = 100.0 / (smooth * total[n])
        else:
            precisions[n] = 100.0 * correct[n] / total[n]
    if hyp_len == 0:
        bp = 0.0
    else:
        bp = 1.0 if hyp_len >= ref_len else math.exp(1 - ref_len / hyp_len)
    logs = [math.log(p) if p > 0 else -9999999999 for p in precisions]
    score = bp * math.exp(sum(logs) / max_order) if any(correct) else 0.0
    return {
        "bleu": score,
        "precisions": precisions,
        "brevity_penalty": bp,
        "hyp_len": hyp_len,
        "ref_len": ref_len,
    }


def _char_ngrams(text: str, n: int) -> Counter:
    text = "".join(text.split())  # chrF ignores whitespace by default
    return Counter(text[i : i + n] for i in range(len(text) - n + 1))


def corpus_chrf(
    hypotheses: list[str], references: list[str], char_order: int = 6, beta: float = 2.0
) -> float:
    """chrF (0-100): statistics summed over the corpus, then the F-beta of the precision
    and recall averaged over the n-gram orders that both sides have."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    stats = [[0, 0, 0] for _ in range(char_order)]  # hyp n-grams, ref n-grams, matches
    for hyp, ref in zip(hypotheses, references):
        for n in range(1, char_order + 1):
            hc, rc = _char_ngrams(hyp, n), _char_ngrams(ref, n)
            # a reference too short to have n-grams of this order counts no hypothesis
            # n-grams either (as sacrebleu does)
            stats[n - 1][0] += sum(hc.values()) if rc else 0
            stats[n - 1][1] += sum(rc.values())
            stats[n - 1][2] += sum(min(c, rc[g]) for g, c in hc.items())
    precision = recall = 0.0
    orders = 0
    for n_hyp, n_ref, n_match in stats:
        if n_hyp > 0 and n_ref > 0:
            precision += n_match / n_hyp
            recall += n_match / n_ref
            orders += 1
    if orders == 0:
        return 0.0
    precision, recall = precision / orders, recall / orders
    b2 = beta**2
    if precision + recall == 0:
        return 0.0
    return 100.0 * (1 + b2) * precision * recall / (b2 * precision + recall)


def exact_match(hypotheses: list[str], references: list[str]) -> float:
    """Share of sentences translated exactly (whitespace runs collapsed)."""
    if not references:
        return 0.0
    same = sum(" ".join(h.split()) == " ".join(r.split()) for h, r in zip(hypotheses, references))
    return same / len(references)


def translation_metrics(hypotheses: list[str], references: list[str]) -> dict:
    bleu = corpus_bleu(hypotheses, references)
    return {
        "bleu": bleu["bleu"],
        "chrf": corpus_chrf(hypotheses, references),
        "exact_match": exact_match(hypotheses, references),
        "bleu_precisions": bleu["precisions"],
        "brevity_penalty": bleu["brevity_penalty"],
        "num_sentences": len(references),
    }


def sacrebleu_signatures(hypotheses, references, bleu: float, chrf: float) -> dict:
    """sacrebleu's signatures for BLEU and chrF with its defaults (what a reader needs to
    compare a score with published ones), taken from sacrebleu scoring the same outputs.
    Our scores equal its scores (tests/apps/translation/test_translation_metrics.py, 1e-6);
    a difference here is logged, never hidden."""
    from sacrebleu.metrics import BLEU, CHRF

    from keras_suite.common.runlog import log

    bleu_metric, chrf_metric = BLEU(), CHRF()
    theirs = (
        bleu_metric.corpus_score(hypotheses, [references]).score,
        chrf_metric.corpus_score(hypotheses, [references]).score,
    )
    if abs(theirs[0] - bleu) > 1e-6 or abs(theirs[1] - chrf) > 1e-6:
        log.warning(
            "BLEU/chrF %.6f / %.6f differ from sacrebleu's %.6f / %.6f on these outputs",
            bleu,
            chrf,
            *theirs,
        )
    return {
        "bleu_signature": str(bleu_metric.get_signature()),
        "chrf_signature": str(chrf_metric.get_signature()),
    }
