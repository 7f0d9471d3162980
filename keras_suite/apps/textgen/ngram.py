"""Interpolated Kneser-Ney character n-gram model (Chen & Goodman 1998, §3.5), the
baseline every run's bits per character is read against.

    P_k(w | h) = max(c_k(hw) - D_k, 0) / c_k(h.) + D_k * N1+(h.) / c_k(h.) * P_{k-1}(w | h')

c_n are raw counts at the highest order n; at lower orders c_k(hw) is the continuation
count N1+(.hw), the number of distinct characters seen before hw. D_k = n1 / (n1 + 2 n2)
from the count-of-counts of order k (0.5 when no count is 1: the estimate would be 0).
The order-1 model interpolates with the uniform distribution over the training alphabet
plus one "unseen character" symbol, so every character of any text, also one training
never had, has a probability above 0, and the distribution sums to one. A context
never seen in training falls back to the next lower order. Documents start with n-1
padding symbols (never predicted).
"""

from __future__ import annotations

import math
from collections import Counter


class KneserNey:
    def __init__(self, order: int = 5):
        if order < 1:
            raise ValueError("order must be >= 1")
        self.order = order

    def fit(self, texts) -> "KneserNey":
        texts = list(texts)
        alphabet = set()
        for t in texts:
            alphabet.update(t)
        self.bos = next(chr(c) for c in range(0xE000, 0xF8FF) if chr(c) not in alphabet)
        self.vocab_size = len(alphabet) + 1  # + one symbol for characters never seen
        self.alphabet = sorted(alphabet)
        n = self.order
        pad = self.bos * (n - 1)
        top: Counter = Counter()
        for t in texts:
            s = pad + t
            top.update(s[i - n + 1 : i + 1] for i in range(n - 1, len(s)))
        counts = {n: top}
        for k in range(n - 1, 0, -1):  # continuation counts: distinct left extensions
            counts[k] = Counter(g[1:] for g in counts[k + 1])
        self.counts, self.context_total, self.context_types, self.discount = counts, {}, {}, {}
        for k, table in counts.items():
            total: Counter = Counter()
            types: Counter = Counter()
            for g, c in table.items():
                total[g[:-1]] += c
                types[g[:-1]] += 1
            self.context_total[k], self.context_types[k] = total, types
            n1 = sum(1 for c in table.values() if c == 1)
            n2 = sum(1 for c in table.values() if c == 2)
            # Chen & Goodman's estimate is 0 when no count is 1, which would leave nothing
            # for the lower orders and give an unseen character probability 0: fall back
            # to 0.5 then (as KenLM's --discount_fallback does)
            self.discount[k] = n1 / (n1 + 2 * n2) if n1 else 0.5
        return self

    def prob(self, context: str, char: str) -> float:
        """P(char | the last order-1 characters of context), context already padded."""
        p = 1.0 / self.vocab_size
        for k in range(1, self.order + 1):  # build up from the lowest order
            h = context[len(context) - (k - 1) :] if k > 1 else ""
            total = self.context_total[k].get(h, 0)
            if not total:
                continue  # unseen context: this order passes the lower one through
            d = self.discount[k]
            c = self.counts[k].get(h + char, 0)
            p = max(c - d, 0.0) / total + d * self.context_types[k][h] / total * p
        return p

    def nats(self, text: str) -> float:
        """-ln P(text), each document started with the padding symbols."""
        s = self.bos * (self.order - 1) + text
        k = self.order - 1
        return -sum(math.log(self.prob(s[i - k : i], s[i])) for i in range(k, len(s)))

    def bits_per_char(self, texts) -> float:
        texts = list(texts)
        chars = sum(len(t) for t in texts)
        return sum(self.nats(t) for t in texts) / max(chars, 1) / math.log(2)
