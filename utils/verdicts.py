"""The verdict vocabulary of every "paper vs here" table, defined once.

A claim of a paper gets exactly one of five words:

* **holds** — the effect goes the paper's way and its interval excludes the null;
* **opposite** — the effect goes the other way and its interval excludes the null;
* **within noise** — the interval contains the null;
* **not testable here** — a precondition of the test fails (the reason is stated);
* **too few** — n is below the stated minimum.

The rule, n and interval go in their own columns of the row (``claim_row``), never into the word.
Effects are named by direction ("rise", "fall"), with the sign stated once: ``effect = after -
before``, so a fall is negative. A check that holds by construction (an identity, a repository
contract) is not a claim: it goes into a separate "checks" table (``check_row``) with *passes* /
*fails*, and is never counted among the papers' claims.

Public names: ``HOLDS``, ``OPPOSITE``, ``WITHIN_NOISE``, ``NOT_TESTABLE``, ``TOO_FEW``, ``WORDS``,
``PASSES``, ``FAILS``, ``Verdict``, ``from_interval``, ``from_test``, ``not_testable``, ``too_few``,
``direction``, ``claim_row``, ``check_row``, ``CLAIM_COLUMNS``, ``CHECK_COLUMNS``, ``count_words``,
``summary_sentences``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from utils.stats import ALPHA, Interval

__all__ = [
    "CHECK_COLUMNS",
    "CLAIM_COLUMNS",
    "FAILS",
    "HOLDS",
    "NOT_TESTABLE",
    "OPPOSITE",
    "PASSES",
    "TOO_FEW",
    "WITHIN_NOISE",
    "WORDS",
    "Verdict",
    "check_row",
    "claim_row",
    "count_words",
    "direction",
    "from_interval",
    "from_test",
    "not_testable",
    "summary_sentences",
    "too_few",
]

HOLDS, OPPOSITE, WITHIN_NOISE = "holds", "opposite", "within noise"
NOT_TESTABLE, TOO_FEW = "not testable here", "too few"
WORDS = (HOLDS, OPPOSITE, WITHIN_NOISE, NOT_TESTABLE, TOO_FEW)
PASSES, FAILS = "passes", "fails"  # the checks table's two words
CLAIM_COLUMNS = ["claim", "paper", "here", "verdict", "rule", "n", "interval"]
CHECK_COLUMNS = ["check", "expected", "here", "result"]
Expected = Literal["rise", "fall"]


@dataclass(frozen=True)
class Verdict:
    """One verdict word, the n it rests on, the interval it read, and why (for the two refusals)."""

    word: str
    n: int | None = None
    interval: Interval | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        if self.word not in WORDS:
            raise ValueError(f"verdict must be one of {WORDS}, got {self.word!r}")


def _sign(expected: Expected) -> int:
    if expected not in ("rise", "fall"):
        raise ValueError(f"expected must be 'rise' or 'fall' (the paper's direction), got {expected!r}")
    return 1 if expected == "rise" else -1


def too_few(n: int, min_n: int) -> Verdict | None:
    """*too few* when ``n`` is below the stated minimum, else None."""
    return Verdict(TOO_FEW, n, reason=f"n={n} < minimum {min_n}") if n < min_n else None


def not_testable(reason: str, n: int | None = None) -> Verdict:
    """*not testable here*, with the precondition that failed."""
    if not reason.strip():
        raise ValueError("say which precondition failed: a 'not testable here' needs its reason")
    return Verdict(NOT_TESTABLE, n, reason=reason)


def from_interval(interval: Interval, expected: Expected, min_n: int, null: float = 0.0) -> Verdict:
    """The verdict an interval of ``effect`` gives against ``null``, for a paper that expects a
    ``expected`` ('rise': effect > null, 'fall': effect < null)."""
    sign = _sign(expected)
    refused = too_few(interval.n, min_n)
    if refused:
        return Verdict(refused.word, interval.n, interval, refused.reason)
    if interval.low > null or interval.high < null:
        paper_way = (interval.estimate - null) * sign > 0
        return Verdict(HOLDS if paper_way else OPPOSITE, interval.n, interval)
    return Verdict(WITHIN_NOISE, interval.n, interval)


def from_test(
    effect: float, p_value: float, n: int, expected: Expected, min_n: int, alpha: float = ALPHA
) -> Verdict:
    """The verdict of a test: *holds*/*opposite* when p < alpha (by the effect's direction), else
    *within noise*. Pass Holm-adjusted p-values for several variants of one claim."""
    sign = _sign(expected)
    refused = too_few(n, min_n)
    if refused:
        return refused
    if p_value < alpha and effect != 0:
        return Verdict(HOLDS if effect * sign > 0 else OPPOSITE, n, reason=f"p={p_value:.3g}")
    return Verdict(WITHIN_NOISE, n, reason=f"p={p_value:.3g}")


def direction(effect: float, tolerance: float = 0.0) -> str:
    """'rise', 'fall' or 'no change': how an effect (after - before) is named in prose and titles."""
    if effect > tolerance:
        return "rise"
    if effect < -tolerance:
        return "fall"
    return "no change"


def claim_row(
    claim: str,
    paper: str,
    here: str,
    verdict: Verdict,
    rule: str,
    interval_text: str | None = None,
) -> dict[str, Any]:
    """One row of a "paper vs here" table; ``interval_text`` overrides the interval's default format."""
    interval = interval_text
    if interval is None:
        interval = verdict.interval.format() if verdict.interval is not None else verdict.reason
    return {
        "claim": claim,
        "paper": paper,
        "here": here,
        "verdict": verdict.word,
        "rule": rule,
        "n": verdict.n,
        "interval": interval,
    }


def check_row(check: str, expected: str, here: str, ok: bool) -> dict[str, Any]:
    """One row of a notebook's "checks" table: an identity or contract, never counted as a claim."""
    return {"check": check, "expected": expected, "here": here, "result": PASSES if ok else FAILS}


def count_words(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """How many claims got each verdict word (every word present, zeros included)."""
    counts = dict.fromkeys(WORDS, 0)
    for row in rows:
        word = row.get("verdict")
        if word not in counts:
            raise ValueError(f"verdict {word!r} is not one of {WORDS}; build rows with claim_row")
        counts[word] += 1
    return counts


def _listed(claims: list[str]) -> str:
    quoted = [f"“{c}”" for c in claims]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def summary_sentences(rows: Iterable[Mapping[str, Any]], model: str) -> str:
    """Two or three sentences computed from the verdicts: what reproduces on ``model``, what does
    not, and what cannot be tested here."""
    rows = list(rows)
    count_words(rows)  # rejects a word outside the vocabulary
    by_word: dict[str, list[str]] = {w: [] for w in WORDS}
    for row in rows:
        by_word[row["verdict"]].append(str(row["claim"]))
    sentences = []
    untested = by_word[NOT_TESTABLE] + by_word[TOO_FEW]
    if len(untested) == sum(len(claims) for claims in by_word.values()):
        return f"On {model}, no claim could be tested here (a precondition failed or n was too small)."
    if by_word[HOLDS]:
        sentences.append(f"On {model}, {_listed(by_word[HOLDS])} reproduce{'s' if len(by_word[HOLDS]) == 1 else ''}.")
    else:
        sentences.append(f"On {model}, none of the tested claims reproduces.")
    against = [f"{_listed(by_word[OPPOSITE])} come{'s' if len(by_word[OPPOSITE]) == 1 else ''} out the other way"] if by_word[OPPOSITE] else []
    if by_word[WITHIN_NOISE]:
        against.append(f"{_listed(by_word[WITHIN_NOISE])} {'is' if len(by_word[WITHIN_NOISE]) == 1 else 'are'} within noise")
    if against:
        text = " and ".join(against)
        sentences.append(text[0].upper() + text[1:] + ".")
    if untested:
        sentences.append(f"Not tested here (a precondition failed or n was too small): {_listed(untested)}.")
    return " ".join(sentences)
