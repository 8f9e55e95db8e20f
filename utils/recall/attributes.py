"""What counts as an attribute of a subject: the token sets the attributes rate scores against.

Geva et al. (2023), "Intermediate Subject Representations": an attribute of a subject is a token of
a text about it (the paper: Wikipedia paragraphs about the subject), compared as a word, leaving
out stopwords and tokens of two characters or fewer. Here a vocabulary token counts as a
lower-cased, stripped word (``token_keys``), the stopword and length filter gives the ``eligible``
tokens, and each subject's texts give a [V] bool set of the tokens they contain, minus the
subject's own tokens.

* ``token_keys`` / ``eligible_tokens``: the vocabulary as words, and which words may count.
* ``attribute_texts``: texts about each subject from one of ``ATTRIBUTE_SOURCES`` — derived from
  the facts table (``fact_attribute_texts``, our default: not in the paper), the shipped corpus,
  Wikipedia (online, the paper's source), or a JSON/JSONL file.
* ``AttributeSets`` / ``attribute_masks``: texts -> [F, V] bool attribute set of each fact's subject.
* ``other_subject_masks``: the control (not in the paper) that scores each fact against another
  subject's set, so that generic words cancel out.

Public names: ``ATTRIBUTE_SOURCES``, ``MIN_TOKEN_CHARS``, ``WIKIPEDIA``, ``token_keys``,
``eligible_tokens``, ``AttributeSets``, ``fact_attribute_texts``, ``attribute_texts``,
``attribute_masks``, ``other_subject_masks``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import torch
from datasets import load_dataset
from transformer_lens import HookedTransformer
from transformers import PreTrainedTokenizerBase

from utils.data import DataUnavailableError, corpus_paragraphs

__all__ = [
    "ATTRIBUTE_SOURCES",
    "AttributeSets",
    "MIN_TOKEN_CHARS",
    "WIKIPEDIA",
    "attribute_masks",
    "attribute_texts",
    "eligible_tokens",
    "fact_attribute_texts",
    "other_subject_masks",
    "token_keys",
]

ATTRIBUTE_SOURCES = ("facts", "shipped", "wikipedia")  # or the path of a JSON/JSONL file
MIN_TOKEN_CHARS = 3  # the paper drops tokens of <= 2 characters
WIKIPEDIA = ("wikimedia/wikipedia", "20231101.en")


def token_keys(tokenizer: PreTrainedTokenizerBase, d_vocab: int) -> list[str]:
    """Each vocabulary token as a comparable word: decoded, stripped of spaces, lower-cased."""
    return [text.strip().lower() for text in tokenizer.batch_decode([[i] for i in range(d_vocab)])]


def eligible_tokens(keys: Sequence[str], stopwords: frozenset[str] | None = None) -> torch.Tensor:
    """[V] bool: tokens that count in the attributes rate (not a stopword, more than 2 characters)."""
    if stopwords is None:
        # scikit-learn takes seconds to import and only its stopword list is needed: load it on use
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS as stopwords
    return torch.tensor([len(k) >= MIN_TOKEN_CHARS and k not in stopwords for k in keys])


class AttributeSets:
    """Turns texts about a subject into a [V] bool mask of the vocabulary tokens they contain."""

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, keys: Sequence[str], eligible: torch.Tensor
    ):
        self.tokenizer, self.eligible = tokenizer, eligible
        self.ids_of: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            if eligible[i]:
                self.ids_of.setdefault(key, []).append(i)

    def words(self, text: str) -> set[str]:
        """The eligible token keys of ``text``."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return {
            k
            for k in (t.strip().lower() for t in self.tokenizer.batch_decode([[i] for i in ids]))
            if k in self.ids_of
        }

    def mask(self, texts: Sequence[str], subject: str = "") -> torch.Tensor:
        """[V] bool: tokens whose key occurs in ``texts``, minus the subject's own tokens."""
        words = (
            set().union(*(self.words(t) for t in texts)) - self.words(subject) if texts else set()
        )
        mask = torch.zeros(len(self.eligible), dtype=torch.bool)
        for word in words:
            mask[self.ids_of[word]] = True
        return mask


def fact_attribute_texts(table: pd.DataFrame, subjects: Sequence[str]) -> dict[str, list[str]]:
    """Attributes of each subject derived from a facts table: the targets of its facts, the targets
    of the facts about those targets, and the subjects of the facts whose target it is.

    France gets Paris, Europe, French, euro (its facts) and the Eiffel Tower, Lyon ... (facts that
    point to it); the Eiffel Tower gets Paris and, through Paris, France.
    """
    forward = table.groupby("subject").target.agg(list).to_dict()
    backward = table.groupby("target").subject.agg(list).to_dict()
    texts = {}
    for subject in subjects:
        near = set(forward.get(subject, []))
        near |= {t for hop in near for t in forward.get(hop, [])}
        near |= set(backward.get(subject, []))
        near.discard(subject)
        texts[subject] = sorted(near)
    return texts


def attribute_texts(
    subjects: Sequence[str], source: str = "facts", facts_table: pd.DataFrame | None = None
) -> dict[str, list[str]]:
    """Texts about each subject: ``"facts"`` (derived from ``facts_table``, see
    ``fact_attribute_texts``), ``"shipped"`` corpus paragraphs, a JSON/JSONL file, or ``"wikipedia"``.

    A file maps subjects to texts: a JSON object ``{subject: text or [texts]}`` or JSON lines with
    ``subject`` (or ``title``) and ``text``. ``"wikipedia"`` reads the English Wikipedia through
    ``datasets`` (a large download; needs the network once).
    """
    if source == "facts":
        if facts_table is None:
            raise ValueError("attribute source 'facts' needs the facts table: pass facts_table=")
        return fact_attribute_texts(facts_table, subjects)
    if source == "shipped":
        return {s: corpus_paragraphs(s) for s in subjects}
    if source == "wikipedia":
        return _wikipedia_texts(subjects)
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(
            f"attribute source {source!r} is none of {ATTRIBUTE_SOURCES} nor an existing file"
        )
    if path.suffix == ".jsonl":
        table: dict[str, list[str]] = {}
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                table.setdefault(record.get("subject", record.get("title")), []).append(
                    record["text"]
                )
    else:
        table = {
            k: [v] if isinstance(v, str) else list(v)
            for k, v in json.loads(path.read_text()).items()
        }
    return {s: table.get(s, []) for s in subjects}


def _wikipedia_texts(subjects: Sequence[str]) -> dict[str, list[str]]:
    """The English Wikipedia pages titled by ``subjects``, read through ``datasets`` (online)."""
    wanted = set(subjects)
    try:
        pages = load_dataset(*WIKIPEDIA, split="train").filter(
            lambda title: title in wanted, input_columns="title"
        )
    except Exception as err:
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        raise DataUnavailableError(
            f"cannot read Wikipedia ({'/'.join(WIKIPEDIA)}) through `datasets`: {err}. It needs network access "
            f"once{' (HF_HUB_OFFLINE is set)' if offline else ''}; otherwise pass attribute_source='shipped' or "
            "the path of a JSON file {subject: text}."
        ) from err
    texts: dict[str, list[str]] = {s: [] for s in subjects}
    for page in pages:
        texts[page["title"]].append(page["text"])
    return texts


def attribute_masks(
    model: HookedTransformer,
    facts: pd.DataFrame,
    texts: Mapping[str, Sequence[str]],
    eligible: torch.Tensor,
    keys: Sequence[str],
) -> torch.Tensor:
    """[F, V] bool attribute set of each fact's subject (all False when it has no text)."""
    sets = AttributeSets(model.tokenizer, keys, eligible)
    by_subject = {s: sets.mask(texts.get(s, []), s) for s in facts.subject.unique()}
    return torch.stack([by_subject[s] for s in facts.subject])


def other_subject_masks(facts: pd.DataFrame, masks: torch.Tensor) -> torch.Tensor:
    """Each fact's attribute set swapped for the next distinct subject's (sorted by name), [F, V].

    A control for the attributes rate: generic words that any subject's text contains score as
    well against another subject's set, attributes specific to the subject do not.
    """
    subjects = sorted(facts.subject.unique())
    if len(subjects) < 2:
        raise ValueError("the control needs facts about at least two subjects")
    first_row = {s: int((facts.subject == s).to_numpy().argmax()) for s in subjects}
    other = {s: first_row[subjects[(i + 1) % len(subjects)]] for i, s in enumerate(subjects)}
    return masks[[other[s] for s in facts.subject]]
