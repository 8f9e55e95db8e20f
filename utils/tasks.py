"""An offline zero-shot task suite generated from templates: multiple choice by log-likelihood.

Each task is a list of ``MCItem`` (context, choices, index of the right choice). Choices are
continuations of the context (they start with a space where a word follows). Generation is
seeded, so a seed gives the same items on every machine.

* ``factual_recall``: a fact's prompt; the target against three targets of the same relation.
* ``greater_than``: "The war lasted from the year 1732 to the year 17" -> a later vs an earlier year.
* ``ioi``: indirect-object identification, "When Mary and John went to the store, John gave a book to" -> Mary vs John.
* ``agreement``: subject-verb number agreement across an attractor, "The key to the cabinets" -> is vs are.
* ``sequence``: continue a run of weekdays, months or number words, against three other members.

Public names: ``build_tasks`` (the whole suite), ``MCItem``, ``chance_level``, the generators
``factual_recall``, ``greater_than``, ``ioi``, ``agreement``, ``sequence`` and ``GENERATORS``, and
the word lists they draw from (``NAMES``, ``PLACES``, ``OBJECTS``, ``EVENTS``, ``CENTURIES``,
``NOUNS``, ``PREPOSITIONS``, ``SEQUENCES``, ``N_DISTRACTORS``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

__all__ = [
    "CENTURIES",
    "EVENTS",
    "GENERATORS",
    "N_DISTRACTORS",
    "NAMES",
    "NOUNS",
    "OBJECTS",
    "PLACES",
    "PREPOSITIONS",
    "SEQUENCES",
    "MCItem",
    "agreement",
    "build_tasks",
    "chance_level",
    "factual_recall",
    "greater_than",
    "ioi",
    "sequence",
]

NAMES = ["Mary", "John", "Anna", "David", "Sarah", "James", "Laura", "Peter", "Emma", "Thomas", "Alice", "Daniel"]
PLACES = ["store", "park", "school", "beach", "museum", "station", "library", "market"]
OBJECTS = ["book", "drink", "letter", "ball", "gift", "key", "pen", "ticket"]
EVENTS = ["war", "strike", "drought", "expedition", "trial", "festival", "siege", "voyage"]
CENTURIES = ["13", "14", "15", "16", "17", "18"]
# (singular, plural) nouns for the agreement task
NOUNS = [("key", "keys"), ("author", "authors"), ("picture", "pictures"), ("road", "roads"), ("teacher", "teachers"),
         ("bottle", "bottles"), ("report", "reports"), ("door", "doors"), ("dog", "dogs"), ("window", "windows")]
PREPOSITIONS = ["to", "near", "behind", "of", "beside"]
SEQUENCES = [
    ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
    ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
     "November", "December"],
    ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"],
]
N_DISTRACTORS = 3


@dataclass(frozen=True)
class MCItem:
    """One multiple-choice question: the right answer is ``choices[label]``."""

    context: str
    choices: tuple[str, ...]
    label: int


def _shuffled(rng: random.Random, right: str, wrong: list[str]) -> tuple[tuple[str, ...], int]:
    choices = [right, *wrong]
    rng.shuffle(choices)
    return tuple(choices), choices.index(right)


def factual_recall(facts: pd.DataFrame, n: int, rng: random.Random) -> list[MCItem]:
    """Fact prompts; the target against targets of other subjects of the same relation."""
    pools = facts.groupby("relation").target.apply(lambda t: sorted(set(t)))
    usable = facts[facts.relation.map(lambda r: len(pools[r]) > N_DISTRACTORS)]
    rows = usable.sample(n=min(n, len(usable)), random_state=rng.randrange(2**31))
    items = []
    for row in rows.itertuples():
        wrong = rng.sample([t for t in pools[row.relation] if t != row.target], N_DISTRACTORS)
        choices, label = _shuffled(rng, " " + row.target, [" " + w for w in wrong])
        items.append(MCItem(row.prompt, choices, label))
    return items


def greater_than(rng: random.Random) -> MCItem:
    """"... from the year 17YY to the year 17" -> a two-digit ending after YY vs one before it."""
    start = rng.randrange(10, 90)
    later, earlier = rng.randrange(start + 1, 100), rng.randrange(0, start)
    century = rng.choice(CENTURIES)
    context = f"The {rng.choice(EVENTS)} lasted from the year {century}{start:02d} to the year {century}"
    return MCItem(context, *_shuffled(rng, f"{later:02d}", [f"{earlier:02d}"]))


def ioi(rng: random.Random) -> MCItem:
    """Indirect-object identification: the giver is the repeated name; the answer the other one."""
    a, b = rng.sample(NAMES, 2)
    context = f"When {a} and {b} went to the {rng.choice(PLACES)}, {b} gave a {rng.choice(OBJECTS)} to"
    return MCItem(context, *_shuffled(rng, f" {a}", [f" {b}"]))


def agreement(rng: random.Random) -> MCItem:
    """Subject-verb agreement with an attractor noun of the other number in between."""
    (subj_sg, subj_pl), (attr_sg, attr_pl) = rng.sample(NOUNS, 2)
    plural = rng.random() < 0.5
    subject, attractor = (subj_pl, attr_sg) if plural else (subj_sg, attr_pl)
    context = f"The {subject} {rng.choice(PREPOSITIONS)} the {attractor}"
    return MCItem(context, *_shuffled(rng, " are" if plural else " is", [" is" if plural else " are"]))


def sequence(rng: random.Random) -> MCItem:
    """Three consecutive members of a weekday/month/number-word run; continue it."""
    run = rng.choice(SEQUENCES)
    start = rng.randrange(0, len(run) - 3)
    right = run[start + 3]
    wrong = rng.sample([w for w in run if w not in run[start : start + 4]], N_DISTRACTORS)
    return MCItem(", ".join(run[start : start + 3]) + ",", *_shuffled(rng, " " + right, [" " + w for w in wrong]))


# template tasks: each function draws one item from the generator it is given
GENERATORS: dict[str, Callable[[random.Random], MCItem]] = {
    "greater_than": greater_than,
    "ioi": ioi,
    "agreement": agreement,
    "sequence": sequence,
}


def build_tasks(facts: pd.DataFrame, n_items: int, seed: int = 0) -> dict[str, list[MCItem]]:
    """The whole suite, ``n_items`` items per task (fewer for facts if the table is smaller)."""
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    tasks = {"factual_recall": factual_recall(facts, n_items, random.Random(seed))}
    for offset, (name, make) in enumerate(GENERATORS.items(), start=1):
        rng = random.Random(seed + offset)
        tasks[name] = [make(rng) for _ in range(n_items)]
    return tasks


def chance_level(items: list[MCItem]) -> float:
    """Expected accuracy of guessing uniformly among each item's choices."""
    return sum(1 / len(item.choices) for item in items) / len(items)
