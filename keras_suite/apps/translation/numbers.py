"""The built-in task: English number phrases -> French number words (0 - 999,999).

A small language pair with real structure: French counts in twenties from 60 to 99
("soixante-dix-sept" is 60 + 17, "quatre-vingt-onze" is 4 x 20 + 11), adds "et" only for
21, 31, ..., 71, pluralises "vingts"/"cents" only when nothing follows (and never
before "mille"), drops "un" before "cent" and "mille"; the English side varies
("three hundred and five" or "three hundred five"). Held-out (val/test) numbers are
>= 100 and never occur in training; 0-99, the task's vocabulary, are all trained on.
"""

from __future__ import annotations

import numpy as np

_EN_UNITS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_EN_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_FR_UNITS = (
    "zéro un deux trois quatre cinq six sept huit neuf dix onze douze treize "
    "quatorze quinze seize dix-sept dix-huit dix-neuf"
).split()
_FR_TENS = "_ _ vingt trente quarante cinquante soixante".split()


def english(n: int, use_and: bool) -> str:
    def below_100(k):
        if k < 20:
            return _EN_UNITS[k]
        return _EN_TENS[k // 10] + (f"-{_EN_UNITS[k % 10]}" if k % 10 else "")

    def below_1000(k):
        if k < 100:
            return below_100(k)
        head = f"{_EN_UNITS[k // 100]} hundred"
        if k % 100 == 0:
            return head
        return f"{head} {'and ' if use_and else ''}{below_100(k % 100)}"

    if n < 1000:
        return below_1000(n)
    thousands, rest = divmod(n, 1000)
    head = f"{below_1000(thousands)} thousand"
    if rest == 0:
        return head
    joiner = " and " if use_and and rest < 100 else " "
    return head + joiner + below_1000(rest)


def french(n: int) -> str:
    def below_100(k, final):
        if k < 20:
            return _FR_UNITS[k]
        tens, unit = divmod(k, 10)
        if tens in (7, 9):  # 70-79 = 60 + 10..19, 90-99 = 80 + 10..19
            base = "soixante" if tens == 7 else "quatre-vingt"
            if k == 71:
                return "soixante et onze"
            return f"{base}-{_FR_UNITS[10 + unit]}"
        if tens == 8:
            return "quatre-vingt" + (f"-{_FR_UNITS[unit]}" if unit else ("s" if final else ""))
        if unit == 0:
            return _FR_TENS[tens]
        if unit == 1:
            return f"{_FR_TENS[tens]} et un"
        return f"{_FR_TENS[tens]}-{_FR_UNITS[unit]}"

    def below_1000(k, final):
        hundreds, rest = divmod(k, 100)
        if hundreds == 0:
            return below_100(rest, final)
        head = "cent" if hundreds == 1 else f"{_FR_UNITS[hundreds]} cent"
        if rest == 0:
            return head + ("s" if hundreds > 1 and final else "")
        return f"{head} {below_100(rest, final)}"

    if n < 1000:
        return below_1000(n, True)
    thousands, rest = divmod(n, 1000)
    head = "mille" if thousands == 1 else f"{below_1000(thousands, False)} mille"
    return head if rest == 0 else f"{head} {below_1000(rest, True)}"


def number_pairs(
    count: int, seed: int, min_value: int = 0, max_value: int = 999_999
) -> tuple[list[int], list[tuple[str, str]]]:
    """`count` distinct numbers in [min_value, max_value] (magnitudes drawn evenly: as many
    3-digit as 6-digit ones where there are enough) and their (English, French) pairs, in
    a seeded order."""
    rng = np.random.default_rng(seed)
    first, last = len(str(min_value)), len(str(max_value))
    chosen: set[int] = set()
    out: list[int] = []
    limit = min(count, max_value - min_value + 1)
    while len(out) < limit:
        d = int(rng.integers(first, last + 1))
        low, high = max(0 if d == 1 else 10 ** (d - 1), min_value), min(10**d - 1, max_value)
        n = int(rng.integers(low, high + 1))
        if n not in chosen:
            chosen.add(n)
            out.append(n)
    pairs = [(english(n, bool(rng.integers(0, 2))), french(n)) for n in out]
    return out, pairs
