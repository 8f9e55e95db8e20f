"""The greater-than task (Hanna, Liu & Variengien 2023) in both ways a tokenizer can write years.

"The war lasted from the year 17XY to the year 17": a model that understands the task puts its next
token after the start year. What that next token is depends on the tokenizer:

* ``"digits"`` (Llama-family tokenizers such as SmolLM2's split numbers into single digits): the next
  token is the end year's tens digit; the probability difference is p(digits > X) - p(digits < X),
  X the start year's tens digit (the digit equal to X cannot decide yet).
* ``"two_digit"`` (GPT-2 writes "1732" as "17" "32"): the next token is the two-digit YY, as in the
  paper; the probability difference is p(YY > start) - p(YY <= start).

``year_split`` reads which one a tokenizer uses and ``GreaterThan.for_tokenizer`` builds the task
for it, so a notebook never has to be told. Running a model on the task, edited or not, is
``utils.circuits.runs``.

Public names: ``GreaterThan``, ``greater_than_prompts``, ``spread_starts``, ``probability_difference``
(with its two variants ``prob_diff`` and ``year_prob_diff``), ``later_earlier``,
``later_earlier_years``, ``year_split``, ``answer_tokens``, ``GT_TEMPLATE``, ``DIGITS``, ``TWO_DIGITS``,
``YearSplit``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pandas as pd
import torch

__all__ = [
    "DIGITS",
    "GT_TEMPLATE",
    "TWO_DIGITS",
    "GreaterThan",
    "YearSplit",
    "answer_tokens",
    "greater_than_prompts",
    "later_earlier",
    "later_earlier_years",
    "prob_diff",
    "probability_difference",
    "spread_starts",
    "year_prob_diff",
    "year_split",
]

GT_TEMPLATE = "The war lasted from the year 17{start:02d} to the year 17"
DIGITS = "0123456789"
TWO_DIGITS = [f"{n:02d}" for n in range(100)]
YearSplit = Literal["digits", "two_digit"]
PROBE_YEAR = 32  # the start year's last two digits used to see how the tokenizer writes a year


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def year_split(tokenizer) -> YearSplit:
    """How ``tokenizer`` continues "... the year 17" into "... the year 1732": one YY token or two digits."""
    prefix = GT_TEMPLATE.format(start=PROBE_YEAR)
    head, full = _ids(tokenizer, prefix), _ids(tokenizer, prefix + f"{PROBE_YEAR:02d}")
    tail = [tokenizer.decode([t]).strip() for t in full[len(head) :]]
    if full[: len(head)] == head and tail == [f"{PROBE_YEAR:02d}"]:
        return "two_digit"
    if full[: len(head)] == head and tail == list(f"{PROBE_YEAR:02d}"):
        return "digits"
    raise ValueError(
        f"this tokenizer writes the year 17{PROBE_YEAR} after '17' as {tail}: neither one two-digit token "
        "nor single digits, so the greater-than task cannot be read from one next token"
    )


def answer_tokens(tokenizer, split: YearSplit) -> list[int]:
    """Token ids of the next-token answers: '0'..'9' (digits) or '00'..'99' (two_digit), each one token."""
    answers = DIGITS if split == "digits" else TWO_DIGITS
    ids = [_ids(tokenizer, a) for a in answers]
    multi = [a for a, i in zip(answers, ids, strict=True) if len(i) != 1]
    if multi:
        raise ValueError(
            f"the {split} answers {multi[:5]} are not single tokens for this tokenizer"
        )
    return [i[0] for i in ids]


def spread_starts(n: int, low: int = 10, high: int = 89) -> list[int]:
    """``n`` distinct start years (last two digits) spread evenly over ``low``..``high``, so a few
    prompts still cover every decade."""
    if not 1 <= n <= high - low + 1:
        raise ValueError(f"need between 1 and {high - low + 1} start years in {low}..{high}, got {n}")
    return [round(low + i * (high - low) / max(n - 1, 1)) for i in range(n)]


def greater_than_prompts(starts: Sequence[int] = range(10, 90)) -> pd.DataFrame:
    """Prompts 'The war lasted from the year 17XY to the year 17' with the start year's XY and
    its tens digit X (the end year's next token is a digit X or the two digits YY, see year_split)."""
    bad = [s for s in starts if not 0 <= s <= 99]
    if bad:
        raise ValueError(f"start years must be two-digit numbers 00..99, got {bad}")
    return pd.DataFrame(
        {
            "prompt": [GT_TEMPLATE.format(start=s) for s in starts],
            "start": list(starts),
            "tens": [s // 10 for s in starts],
        }
    )


def prob_diff(digit_probs: torch.Tensor, tens: torch.Tensor) -> torch.Tensor:
    """Per prompt: sum of p(digits > X) - sum of p(digits < X), X the start year's tens digit.

    The digit equal to X is left out: with a single-digit token the model cannot yet say whether
    17X? ends later or earlier. ``digit_probs`` is [n, 10] (probabilities of '0'..'9').
    """
    digits = torch.arange(10)
    later = digits[None] > tens[:, None]
    earlier = digits[None] < tens[:, None]
    return (digit_probs * later).sum(-1) - (digit_probs * earlier).sum(-1)


def year_prob_diff(year_probs: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """Per prompt: sum of p(YY > start) - sum of p(YY <= start), as in the paper; ``year_probs`` is [n, 100]."""
    years = torch.arange(100)
    later = years[None] > start[:, None]
    return (year_probs * later).sum(-1) - (year_probs * ~later).sum(-1)


def probability_difference(
    probs: torch.Tensor, prompts: pd.DataFrame, split: YearSplit
) -> torch.Tensor:
    """The task's probability difference per prompt, for answer probabilities in ``split``'s answers."""
    if split == "digits":
        return prob_diff(probs, torch.tensor(prompts.tens.to_numpy()))
    return year_prob_diff(probs, torch.tensor(prompts.start.to_numpy()))


def later_earlier(tens: int) -> tuple[list[int], list[int]]:
    """The digits that make the end year later, and earlier, than a start year with tens digit ``tens``."""
    if not 1 <= tens <= 8:
        raise ValueError(f"need a tens digit in 1..8 so both sides are non-empty, got {tens}")
    return list(range(tens + 1, 10)), list(range(tens))


def later_earlier_years(start: int) -> tuple[list[int], list[int]]:
    """The two-digit answers YY that make the end year later than the start year's ``start``, and
    those that do not (equal counts as not later, as in the paper's probability difference)."""
    if not 0 <= start <= 98:
        raise ValueError(f"need a start year's last two digits in 0..98 so both sides are non-empty, got {start}")
    return list(range(start + 1, 100)), list(range(start + 1))


@dataclass(frozen=True)
class GreaterThan:
    """The greater-than task as one tokenizer writes years: its answer tokens and how they are scored."""

    split: YearSplit
    answer_ids: tuple[int, ...]  # token ids of the answers, in the order of ``labels``

    @classmethod
    def for_tokenizer(cls, tokenizer) -> GreaterThan:
        """The task for ``tokenizer``: single-digit answers or two-digit answers, read from how it writes 1732."""
        split = year_split(tokenizer)
        return cls(split, tuple(answer_tokens(tokenizer, split)))

    @property
    def labels(self) -> list[str]:
        """The answers as text: '0'..'9' or '00'..'99'."""
        return list(DIGITS) if self.split == "digits" else list(TWO_DIGITS)

    @property
    def start_year_tail(self) -> slice:
        """Which of a prompt's number tokens (those whose text is an answer) are the start year's last
        two digits: the 3rd and 4th of "1" "7" "3" "2" ..., or the 2nd of "17" "32" ..."""
        return slice(2, 4) if self.split == "digits" else slice(1, 2)

    def probability_difference(self, probs: torch.Tensor, prompts: pd.DataFrame) -> torch.Tensor:
        """Per prompt, the task's probability difference from ``probs`` [n, answers]."""
        return probability_difference(probs, prompts, self.split)

    def later_earlier(self, start: int) -> tuple[list[int], list[int]]:
        """Answer indices that make the end year later than a start year ending in ``start`` (0..99),
        and those that make it earlier (for digits the start's own tens digit is in neither)."""
        return later_earlier(start // 10) if self.split == "digits" else later_earlier_years(start)
