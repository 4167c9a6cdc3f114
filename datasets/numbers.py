"""`numbers`: the English names of the integers 1 to 9999, generated (no download).

The style of fast.ai's HUMAN_NUMBERS: lowercase words separated by single spaces, no
"and", no hyphens ("nine thousand nine hundred ninety nine", "one hundred five").
Because the language is finite and known exactly, generated text can be checked
exactly: `parse(text)` returns the integer a string names, or None. The metrics use it
for precision (valid names), novelty (valid names outside the training split) and
recall (held-out names produced).
"""

from __future__ import annotations

import functools
import random

LOW = 1
HIGH = 9999
ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
        "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
        "seventeen", "eighteen", "nineteen"]
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]

# fixed split: a seeded permutation of 1..9999, then 80% / 10% / 10%
SPLIT_SEED = 42
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)


def number_name(n: int) -> str:
    """The canonical name of n, for LOW <= n <= HIGH."""
    if not LOW <= n <= HIGH:
        raise ValueError(f"numbers covers {LOW}..{HIGH}, got {n}")
    words = []
    thousands, rest = divmod(n, 1000)
    hundreds, rest = divmod(rest, 100)
    if thousands:
        words += [ONES[thousands], "thousand"]
    if hundreds:
        words += [ONES[hundreds], "hundred"]
    if rest >= 20:
        words.append(TENS[rest // 10])
        if rest % 10:
            words.append(ONES[rest % 10])
    elif rest:
        words.append(ONES[rest])
    return " ".join(words)


@functools.cache
def _name_to_int() -> dict[str, int]:
    return {number_name(n): n for n in range(LOW, HIGH + 1)}


def parse(text: str) -> int | None:
    """The integer that `text` names exactly (canonical form, any whitespace), else None.

    Exact by construction: the table holds the one canonical name of each integer, so
    near-misses ("one hundred and five", "twenty-one", "ten thousand", "zero",
    "one thousand zero", "hundred") are all rejected.
    """
    return _name_to_int().get(" ".join(text.split()))


def splits(seed: int = SPLIT_SEED) -> dict[str, list[str]]:
    """train / val / test lists of names from a fixed seeded permutation (disjoint)."""
    names = [number_name(n) for n in range(LOW, HIGH + 1)]
    random.Random(seed).shuffle(names)  # Python's Mersenne Twister: same order on every platform
    n_train = int(SPLIT_FRACTIONS[0] * len(names))
    n_val = int(SPLIT_FRACTIONS[1] * len(names))
    return {"train": names[:n_train], "val": names[n_train:n_train + n_val], "test": names[n_train + n_val:]}
