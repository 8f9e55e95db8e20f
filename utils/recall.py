"""Notebook 01's computations: Geva, Bastings, Filippova & Globerson (2023), *Dissecting Recall of
Factual Associations in Auto-Regressive Language Models*, on any TransformerLens model.

1. ``knockout_sweep``: attention knockout of the edges into the last position from the subject, the
   other (non-subject) positions, or the last position itself, in a window of layers around each
   layer; many knockouts per batched forward pass (``knockout_loop`` is the plain reference).
2. ``attribute_rates``: the "attributes rate" of hidden states projected to the vocabulary
   (``other_subject_masks`` gives the other-subject control).
3. ``enrichment_knockout``: the attributes rate at an upper layer with early MLP or attention
   sublayers zeroed.
4. ``sublayer_top_tokens`` / ``extraction_events``: attribute extraction by attention and MLP
   sublayers (and single heads) at the last position.
5. ``ov_circuit`` / ``head_attribute_hits``: heads' OV circuits map subjects to attributes.

Facts are DataFrames with ``prompt``, ``subject``, ``target_token`` and the subject's token span
``subj_tok_start``/``subj_tok_end`` (``prepare_facts`` adds them). Prompts of different lengths are
right-padded and every quantity is read at each prompt's last real position (the knockout sweep
groups prompts of equal length instead, to reuse their keys and values).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from utils import hooks
from utils.data import (
    DataUnavailableError,
    corpus_paragraphs,
    load_facts,
    load_known_1000,
    token_span,
)
from utils.prompts import known_facts, pad_right, project  # noqa: F401  (project: recall.project for callers)
from utils.stats import Interval, bootstrap_interval
from utils.sublayers import Sublayer

PRESETS = {
    "smoke": {
        "max_candidates": 48,
        "n_facts": 12,
        "window": 5,
        "knockout_stride": 7,
        "enrich_window": 5,
        "enrich_stride": 6,
        "lens_tokens": 1024,
        "n_top_heads": 2,
        "n_examples": 2,
    },
    "dry_run": {  # a paper-scale rehearsal (dry_run=True): every branch, the smallest sizes
        "max_candidates": 24,
        "n_facts": 6,
        "knockout_stride": 15,
        "enrich_stride": 10,
        "fact_batch": 8,
        "top_tokens": 100,
        "kept_tokens": 20,
        "lens_tokens": 256,
        "n_top_heads": 1,
        "n_examples": 1,
    },
    "default": {
        "model_name": "smollm2-135m",
        "facts_source": "shipped",
        "attribute_source": "facts",
        "comparison_attribute_source": "shipped",
        "max_candidates": 0,
        "n_facts": 0,
        "min_facts": 30,
        "window": 5,
        "knockout_stride": 2,
        "fact_batch": 32,
        "top_tokens": 500,
        "kept_tokens": 50,
        "lens_tokens": 4096,
        "enrich_at": 0.83,
        "enrich_window": 5,
        "enrich_stride": 3,
        "extraction_block_from": 0.5,
        "n_top_heads": 5,
        "ov_top_k": 10,
        "n_examples": 3,
    },
    "paper": {
        "model_name": "gpt2-xl",
        "facts_source": "known_1000",
        "attribute_source": "wikipedia",
        "comparison_attribute_source": "facts",
        "window": 9,
        "knockout_stride": 1,
        "enrich_window": 10,
        "enrich_stride": 1,
        "fact_batch": 16,
    },
}

KNOCKOUT_SOURCES = (
    "subject",
    "non-subject",
    "last",
    "first",
)  # which edges into the last position are cut
KNOCKOUT_LABELS = {
    "subject": "subject → last",
    "non-subject": "non-subject → last",
    "last": "last → last",
    "first": "first token → last",
}
OV_INPUTS = ("hidden", "embedding")
POSITIONS = ("first token", "first subject", "last subject", "first after subject", "last token")
LOGIT_LENS = {"logit lens": None}  # attribute_rates' default readout: no lens before the unembedding
ATTRIBUTE_SOURCES = ("facts", "shipped", "wikipedia")  # or the path of a JSON/JSONL file
MIN_TOKEN_CHARS = 3  # the paper drops tokens of <= 2 characters
WIKIPEDIA = ("wikimedia/wikipedia", "20231101.en")


# ----------------------------------------------------------------------------------------- data
def load_fact_table(source: str = "shipped") -> pd.DataFrame:
    """The facts: ``"shipped"`` (authored table), ``"known_1000"`` (ROME's, online) or a known_1000 path."""
    if source == "shipped":
        return load_facts()
    return load_known_1000() if source == "known_1000" else load_known_1000(source)


def locate_subjects(model: HookedTransformer, facts: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Add the subject's token span (``subj_tok_start``, ``subj_tok_end``), ``n_tokens`` and
    ``subject_first`` (the subject starts at position 0, the attention sink of a model without BOS).

    Spans come from the tokenizer's offsets (shifted by one when the model prepends BOS). Facts
    whose subject cannot be located are dropped; returns the located facts and how many were dropped.
    """
    bos = int(bool(model.cfg.default_prepend_bos))
    starts, ends, lengths, keep = [], [], [], []
    for row in facts.itertuples():
        span = token_span(model.tokenizer, row.prompt, int(row.subject_start), int(row.subject_end))
        n_tokens = len(model.tokenizer(row.prompt, add_special_tokens=False)["input_ids"]) + bos
        # a subject must leave the last position outside it, or "subject -> last" is meaningless
        ok = span is not None and span[1] + bos < n_tokens
        keep.append(ok)
        if ok:
            starts.append(span[0] + bos)
            ends.append(span[1] + bos)
            lengths.append(n_tokens)
    located = facts[keep].copy()
    located["subj_tok_start"], located["subj_tok_end"], located["n_tokens"] = starts, ends, lengths
    located["subject_first"] = located.subj_tok_start == 0
    return located.reset_index(drop=True), len(facts) - len(located)


def prepare_facts(
    model: HookedTransformer,
    facts: pd.DataFrame,
    n_facts: int,
    seed: int = 0,
    max_candidates: int = 0,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Facts the model knows (top-1 = target's first token), with subject spans, at most ``n_facts`` (0: all).

    ``max_candidates`` > 0 first samples that many facts (stratified by relation) to keep small
    runs small; 0 tries them all. Returns the facts and the counts at each step (candidates, known, skipped, used).
    """
    if n_facts < 0:
        raise ValueError(f"n_facts must be >= 0 (0 uses every known fact), got {n_facts}")
    candidates = facts
    if 0 < max_candidates < len(facts):
        shuffled = facts.sample(frac=1.0, random_state=seed)
        candidates = shuffled.assign(_r=shuffled.groupby("relation").cumcount()).sort_values(
            "_r", kind="stable"
        )
        candidates = candidates.head(max_candidates).drop(columns="_r").sort_index()
    known = known_facts(model, candidates)
    located, skipped = locate_subjects(model, known)
    used = (
        located.sample(n=min(n_facts, len(located)), random_state=seed)
        if 0 < n_facts < len(located)
        else located
    )
    counts = {
        "candidates": len(candidates),
        "known": len(known),
        "skipped_no_subject_span": skipped,
        "used": len(used),
    }
    if used.empty:
        raise ValueError(
            f"no usable facts ({counts}); raise max_candidates or check the facts table"
        )
    return used.sort_index().reset_index(drop=True), counts


def _require_range_index(facts: pd.DataFrame) -> None:
    if not facts.index.equals(pd.RangeIndex(len(facts))):
        raise ValueError(
            "facts must be indexed 0..F-1 (as prepare_facts returns them); call .reset_index(drop=True)"
        )


def _groups(facts: pd.DataFrame, size: int, sort_by: str = "n_tokens") -> Iterator[pd.DataFrame]:
    """Consecutive groups of facts of similar ``sort_by`` (a token length: keeps padding small)."""
    if size < 1:
        raise ValueError(f"fact_batch must be >= 1, got {size}")
    ordered = facts.sort_values(sort_by, kind="stable")
    for start in range(0, len(ordered), size):
        yield ordered.iloc[start : start + size]


@dataclass
class _Group:
    """A right-padded batch of facts, with the positions every experiment reads."""

    index: torch.Tensor  # row numbers in the facts table
    tokens: torch.Tensor  # [G, n]
    last: torch.Tensor  # [G] last real position
    subj_start: torch.Tensor
    subj_end: torch.Tensor  # exclusive
    targets: torch.Tensor

    @property
    def rows(self) -> torch.Tensor:
        """0..G-1, for gathering one position per row."""
        return torch.arange(len(self.index), device=self.tokens.device)


def _batches(
    model: HookedTransformer, facts: pd.DataFrame, size: int, sort_by: str = "n_tokens"
) -> Iterator[_Group]:
    """Right-padded groups of ``facts``; ``index`` holds their labels (row numbers of the full table)."""
    device = model.cfg.device
    for group in _groups(facts, size, sort_by):
        tokens, lengths = pad_right(model, list(group.prompt))
        if not torch.equal(lengths, torch.tensor(list(group.n_tokens))):
            raise ValueError(
                "the facts' n_tokens do not match the model's tokenization; rerun prepare_facts"
            )
        start, end, targets = (
            torch.tensor(group[col].to_numpy(dtype="int64"), device=device)
            for col in ("subj_tok_start", "subj_tok_end", "target_token")
        )
        index = torch.tensor(group.index.to_numpy())
        yield _Group(index, tokens, (lengths - 1).to(device), start, end, targets)


def _equal_length_batches(model: HookedTransformer, facts: pd.DataFrame, size: int) -> Iterator[_Group]:
    """Groups of facts whose prompts have one length, so that they share one last position."""
    for _, same in facts.groupby("n_tokens"):
        yield from _batches(model, same, size)


# ----------------------------------------------------------------------- 1. attention knockout
def window_layers(center: int, window: int, n_layers: int) -> range:
    """The ``window`` consecutive layers centred on ``center``, clipped to the model."""
    if window < 1 or not 0 <= center < n_layers:
        raise ValueError(f"need window >= 1 and 0 <= center < {n_layers}, got {window}, {center}")
    first = center - window // 2
    return range(max(first, 0), min(first + window, n_layers))


def knockout_mask(
    n_pos: int, last: int, subj_start: int, subj_end: int, source: str
) -> torch.Tensor:
    """[n_pos, n_pos] bool mask of the edges into ``last`` from ``source`` positions (see KNOCKOUT_SOURCES)."""
    if source not in KNOCKOUT_SOURCES:
        raise ValueError(f"source must be one of {KNOCKOUT_SOURCES}, got {source!r}")
    if not 0 <= subj_start < subj_end <= last < n_pos:
        raise ValueError(f"bad span [{subj_start}, {subj_end}) for last position {last} of {n_pos}")
    sources = torch.zeros(n_pos, dtype=torch.bool)
    if source == "subject":
        sources[subj_start:subj_end] = True
    elif source == "non-subject":
        sources[:last] = True
        sources[subj_start:subj_end] = False
    elif source == "last":
        sources[last] = True
    else:  # the first position: the attention sink when the model prepends no BOS token
        sources[0] = True
    mask = torch.zeros(n_pos, n_pos, dtype=torch.bool)
    mask[last] = sources
    return mask


def _group_masks(group: _Group, sources: Sequence[str]) -> torch.Tensor:
    """[len(sources) * G, n, n] masks, source-major."""
    n = group.tokens.shape[1]
    return torch.stack(
        [
            knockout_mask(n, int(last), int(s0), int(s1), source)
            for source in sources
            for last, s0, s1 in zip(group.last, group.subj_start, group.subj_end, strict=True)
        ]
    ).to(group.tokens.device)


def _target_probs(
    model: HookedTransformer, resid: torch.Tensor, last: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """Probability of each row's target at its last position, from final-layer residuals [B, n, d]."""
    logits = project(model, resid[torch.arange(len(last), device=resid.device), last])
    return logits.float().softmax(-1).gather(-1, targets[:, None])[:, 0].cpu()


@dataclass
class KnockoutResult:
    """Target probabilities without (``p_base`` [F]) and with (``p_new`` [source, center, F]) knockouts."""

    sources: tuple[str, ...]
    centers: list[int]
    window: int
    p_base: torch.Tensor
    p_new: torch.Tensor

    def change(self, rows: Sequence[bool] | None = None) -> torch.Tensor:
        """Relative change of each fact's target probability, in %, [source, center, F], for the facts
        in ``rows`` (a bool mask; default: all)."""
        change = (self.p_new - self.p_base) / self.p_base * 100
        return change if rows is None else change[..., torch.tensor(np.asarray(rows, dtype=bool))]

    def relative_change(self, rows: Sequence[bool] | None = None) -> pd.DataFrame:
        """Mean relative change, in %, per centre layer and source, over the facts in ``rows`` (default: all)."""
        change = self.change(rows)
        table = pd.DataFrame(
            {KNOCKOUT_LABELS[s]: change[i].mean(-1).numpy() for i, s in enumerate(self.sources)}
        )
        return table.assign(layer=self.centers).set_index("layer")


def _frozen_prefix_cache(model: HookedTransformer, cache, n_prefix: int, repeat: int):
    """A frozen key/value cache of the first ``n_prefix`` positions, from a run's cached keys and values."""
    from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache
    from transformer_lens.cache.key_value_cache_entry import TransformerLensKeyValueCacheEntry

    entries = [
        TransformerLensKeyValueCacheEntry(
            cache[f"blocks.{layer}.attn.hook_k"][:, :n_prefix].repeat(repeat, 1, 1, 1),
            cache[f"blocks.{layer}.attn.hook_v"][:, :n_prefix].repeat(repeat, 1, 1, 1),
            frozen=True,
        )
        for layer in range(model.cfg.n_layers)
    ]
    rows = entries[0].past_keys.shape[0]
    mask = torch.ones(rows, n_prefix, dtype=torch.int, device=entries[0].past_keys.device)
    return TransformerLensKeyValueCache(entries, mask, frozen=True)


@torch.no_grad()
def knockout_sweep(
    model: HookedTransformer,
    facts: pd.DataFrame,
    window: int,
    centers: Sequence[int] | None = None,
    sources: Sequence[str] = KNOCKOUT_SOURCES,
    fact_batch: int = 32,
    rows_per_pass: int = 256,
    progress: bool = True,
) -> KnockoutResult:
    """Attention knockouts of every source in a window around every centre, batched.

    Only edges *into the last position* are cut, so every other position is unchanged. Per group of
    facts of equal length, one full pass caches their keys, values and residual stream; then the
    (window, source, fact) knockouts run together, up to ``rows_per_pass`` per forward pass, on the
    last position alone with the cached keys and values of the others, resumed from the first layer
    any of their windows touches, with one [batch, 1, src] mask per layer (empty for rows whose
    window excludes that layer). ``knockout_loop`` gives the same numbers slowly.
    """
    _require_range_index(facts)
    n_layers, k = model.cfg.n_layers, len(sources)
    centers = list(range(n_layers)) if centers is None else list(centers)
    windows = [window_layers(c, window, n_layers) for c in centers]
    p_base = torch.zeros(len(facts))
    p_new = torch.zeros(k, len(centers), len(facts))
    groups = list(_equal_length_batches(model, facts, fact_batch))
    names = {f"blocks.{w[0]}.hook_resid_pre" for w in windows} | {
        f"blocks.{layer}.attn.hook_{kv}" for layer in range(n_layers) for kv in "kv"
    }
    bar = tqdm(total=len(groups) * len(centers), desc="knockouts", disable=not progress)
    for g in groups:
        n, rows = g.tokens.shape[1], k * len(g.index)
        final, cache = model.run_with_cache(
            g.tokens, stop_at_layer=n_layers, names_filter=lambda name: name in names
        )
        p_base[g.index] = _target_probs(model, final, g.last, g.targets)
        masks = _group_masks(g, sources)[:, n - 1 :]  # the last position's row: [k * G, 1, n]
        per_pass = max(1, rows_per_pass // rows)
        for first in range(0, len(windows), per_pass):
            chunk = range(first, min(first + per_pass, len(windows)))
            start = min(windows[j][0] for j in chunk)
            fwd = []
            for layer in range(start, n_layers):
                inside = torch.tensor([layer in windows[j] for j in chunk], device=masks.device)
                if inside.any():
                    fwd += hooks.block_attention(
                        [layer], (masks[None] & inside[:, None, None, None]).flatten(0, 1)
                    )
            resid = cache[f"blocks.{start}.hook_resid_pre"][:, n - 1 :].repeat(len(chunk) * k, 1, 1)
            out = model.run_with_hooks(
                resid,
                start_at_layer=start,
                stop_at_layer=n_layers,
                fwd_hooks=fwd,
                past_kv_cache=_frozen_prefix_cache(model, cache, n - 1, len(chunk) * k),
            )
            targets = g.targets.repeat(len(chunk) * k)
            probs = _target_probs(model, out, torch.zeros_like(targets), targets).view(
                len(chunk), k, -1
            )
            p_new[:, chunk.start : chunk.stop, g.index] = probs.transpose(0, 1)
            bar.update(len(chunk))
    bar.close()
    return KnockoutResult(tuple(sources), centers, window, p_base, p_new)


@torch.no_grad()
def knockout_loop(
    model: HookedTransformer,
    facts: pd.DataFrame,
    window: int,
    centers: Sequence[int] | None = None,
    sources: Sequence[str] = KNOCKOUT_SOURCES,
) -> KnockoutResult:
    """The straightforward reference for ``knockout_sweep``: one full forward pass per fact, source and window."""
    n_layers = model.cfg.n_layers
    centers = list(range(n_layers)) if centers is None else list(centers)
    p_base = torch.zeros(len(facts))
    p_new = torch.zeros(len(sources), len(centers), len(facts))
    for f, row in enumerate(facts.itertuples()):
        tokens = model.to_tokens(row.prompt, prepend_bos=model.cfg.default_prepend_bos)
        n, target = tokens.shape[1], int(row.target_token)
        p_base[f] = model(tokens)[0, -1].softmax(-1)[target]
        for i, source in enumerate(sources):
            mask = knockout_mask(n, n - 1, row.subj_tok_start, row.subj_tok_end, source)
            for j, center in enumerate(centers):
                fwd = hooks.block_attention(window_layers(center, window, n_layers), mask)
                p_new[i, j, f] = model.run_with_hooks(tokens, fwd_hooks=fwd)[0, -1].softmax(-1)[
                    target
                ]
    return KnockoutResult(tuple(sources), centers, window, p_base, p_new)


# --------------------------------------------------------------------- 2. attributes rate
def token_keys(tokenizer, d_vocab: int) -> list[str]:
    """Each vocabulary token as a comparable word: decoded, stripped of spaces, lower-cased."""
    return [text.strip().lower() for text in tokenizer.batch_decode([[i] for i in range(d_vocab)])]


def eligible_tokens(keys: Sequence[str], stopwords: frozenset[str] | None = None) -> torch.Tensor:
    """[V] bool: tokens that count in the attributes rate (not a stopword, more than 2 characters)."""
    if stopwords is None:
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS as stopwords
    return torch.tensor([len(k) >= MIN_TOKEN_CHARS and k not in stopwords for k in keys])


class AttributeSets:
    """Turns texts about a subject into a [V] bool mask of the vocabulary tokens they contain."""

    def __init__(self, tokenizer, keys: Sequence[str], eligible: torch.Tensor):
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


def leading_tokens(
    logits: torch.Tensor, eligible: torch.Tensor, top: int = 500, keep: int = 50
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``top`` highest-scoring token ids of ``logits`` [..., V] and which of them are kept
    (the first ``keep`` eligible ones), both [..., top]."""
    if logits.shape[-1] != eligible.shape[-1]:
        raise ValueError(f"logits have {logits.shape[-1]} tokens, eligible {eligible.shape[-1]}")
    top_ids = logits.topk(min(top, logits.shape[-1]), dim=-1).indices
    ok = eligible.to(logits.device)[top_ids]
    return top_ids, ok & (ok.cumsum(-1) <= keep)


def share_of_attributes(
    top_ids: torch.Tensor, kept: torch.Tensor, attributes: torch.Tensor
) -> torch.Tensor:
    """Share of the kept tokens (``leading_tokens``) marked in ``attributes`` (bool [..., V], broadcastable)."""
    shape = (*top_ids.shape[:-1], attributes.shape[-1])
    hits = attributes.to(top_ids.device).expand(shape).gather(-1, top_ids) & kept
    return hits.sum(-1) / kept.sum(-1).clamp(min=1)


def attributes_rate(
    logits: torch.Tensor,
    attributes: torch.Tensor,
    eligible: torch.Tensor,
    top: int = 500,
    keep: int = 50,
) -> torch.Tensor:
    """Share of the projection's leading tokens that are attributes of the subject.

    Of the ``top`` highest-scoring tokens of ``logits`` [..., V], the first ``keep`` eligible ones
    (``eligible`` [V]) are kept; the rate is the share of them marked in ``attributes``
    (bool, broadcastable to ``logits``). Returns [...]; rows with no eligible token give 0.
    """
    top_ids, kept = leading_tokens(logits, eligible, top, keep)
    return share_of_attributes(top_ids, kept, attributes)


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
    wanted = set(subjects)
    try:
        from datasets import load_dataset

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
    """Each fact's attribute set swapped for the next distinct subject's (sorted by name).

    A control for the attributes rate: generic words that any subject's text contains score as
    well against another subject's set, attributes specific to the subject do not.
    """
    subjects = sorted(facts.subject.unique())
    if len(subjects) < 2:
        raise ValueError("the control needs facts about at least two subjects")
    first_row = {s: int((facts.subject == s).to_numpy().argmax()) for s in subjects}
    other = {s: first_row[subjects[(i + 1) % len(subjects)]] for i, s in enumerate(subjects)}
    return masks[[other[s] for s in facts.subject]]


def position_table(group: _Group) -> dict[str, torch.Tensor]:
    """Each of POSITIONS as a [G] index (the subject always ends before the last token)."""
    return {
        "first token": torch.zeros_like(group.last),
        "first subject": group.subj_start,
        "last subject": group.subj_end - 1,
        "first after subject": group.subj_end,
        "last token": group.last,
    }


@dataclass
class AttributeRates:
    """Per-fact attributes rates: ``rates`` [set, F, L, position], the embedding baseline
    ``embedding`` [set, F], and ``has_set`` [set, F] (the fact's set is non-empty), one slice per
    attribute set in ``sets``. Rates of facts with an empty set are 0 and never used: every
    accessor keeps only the facts that have all the sets it compares."""

    sets: tuple[str, ...]
    rates: torch.Tensor
    embedding: torch.Tensor
    has_set: torch.Tensor

    def rows(self, *names: str) -> torch.Tensor:
        """[F] bool: facts whose set is non-empty in every one of ``names``."""
        return self.has_set[[self.sets.index(n) for n in names]].all(0)

    def of(self, name: str, *paired: str) -> torch.Tensor:
        """[F', L, position] rates against set ``name`` on the facts that have ``name`` and every
        ``paired`` set (so rates compared with each other come from the same facts)."""
        return self.rates[self.sets.index(name)][self.rows(name, *paired)]

    def specific(self, own: str, other: str) -> torch.Tensor:
        """[F', L, position] own-set rate minus other-subject rate, per fact, on the facts with both."""
        return self.of(own, other) - self.of(other, own)

    def baseline(self, name: str, *paired: str) -> torch.Tensor:
        """[F'] embedding-baseline rate against ``name`` on the same facts as ``of(name, *paired)``."""
        return self.embedding[self.sets.index(name)][self.rows(name, *paired)]


def mean_table(values: torch.Tensor) -> pd.DataFrame:
    """Mean over facts of ``values`` [F, L, position]: a layer x position table."""
    table = pd.DataFrame(values.mean(0).numpy(), columns=list(POSITIONS))
    table.index.name = "layer"
    return table


@torch.no_grad()
def attribute_rates(
    model: HookedTransformer,
    facts: pd.DataFrame,
    sets: Mapping[str, torch.Tensor],
    eligible: torch.Tensor,
    top: int = 500,
    keep: int = 50,
    fact_batch: int = 32,
    lenses: Mapping[str, Callable[[torch.Tensor], torch.Tensor] | None] = LOGIT_LENS,
    progress: bool = True,
) -> dict[str, AttributeRates]:
    """Attributes rate of every fact, layer and position against each attribute set in ``sets``, per readout.

    ``lenses`` names the readouts: a map [..., L, d] -> [..., L, d] applied before the final norm and
    unembedding (e.g. a tuned lens), or None for the logit lens; all share one forward pass. Each hidden
    state is projected once per readout and scored against every set ({name: [F, V] bool}). The
    baseline projects each subject's mean token embedding (logit lens, the same for every readout).
    """
    _require_range_index(facts)
    names = tuple(sets)
    for name, masks in sets.items():
        if masks.shape != (len(facts), len(eligible)):
            raise ValueError(
                f"set {name!r} is {tuple(masks.shape)}, expected {(len(facts), len(eligible))}"
            )
    n_layers = model.cfg.n_layers
    hooks_ = [f"blocks.{layer}.hook_resid_post" for layer in range(n_layers)]
    rates = {readout: torch.zeros(len(names), len(facts), n_layers, len(POSITIONS)) for readout in lenses}
    embedding = torch.zeros(len(names), len(facts))
    for g in tqdm(
        list(_batches(model, facts, fact_batch)), desc="attributes rate", disable=not progress
    ):
        _, cache = model.run_with_cache(
            g.tokens, stop_at_layer=n_layers, names_filter=lambda n: n in hooks_
        )
        stream = torch.stack([cache[n] for n in hooks_], dim=2)  # [G, n, L, d]
        where = torch.stack(list(position_table(g).values()), 1)  # [G, P]
        # positions can coincide (a one-token subject, a subject at position 0): each is read once
        distinct, inverse = torch.unique(g.rows[:, None] * stream.shape[1] + where, return_inverse=True)
        hidden = stream.flatten(0, 1)[distinct]  # [U, L, d]
        for readout, lens in lenses.items():
            top_ids, kept = leading_tokens(project(model, hidden if lens is None else lens(hidden)), eligible, top, keep)
            for s, name in enumerate(names):
                shares = share_of_attributes(top_ids[inverse], kept[inverse], sets[name][g.index][:, None, None])  # [G, P, L]
                rates[readout][s, g.index] = shares.transpose(1, 2).cpu()
        columns = torch.arange(g.tokens.shape[1], device=g.tokens.device)[None]
        in_subject = (columns >= g.subj_start[:, None]) & (columns < g.subj_end[:, None])
        mean_embed = (model.W_E[g.tokens] * in_subject[..., None]).sum(1) / in_subject.sum(
            1, keepdim=True
        )
        top_ids, kept = leading_tokens(project(model, mean_embed), eligible, top, keep)
        for s, name in enumerate(names):
            embedding[s, g.index] = share_of_attributes(top_ids, kept, sets[name][g.index]).cpu()
    has_set = torch.stack([sets[n].any(-1) for n in names])
    return {readout: AttributeRates(names, r, embedding, has_set) for readout, r in rates.items()}


# -------------------------------------------------------------- 3. which sublayers enrich
SUBLAYER_KINDS = ("mlp", "attn")


@dataclass
class EnrichmentResult:
    """Attributes rate at the last subject token after ``measure_layer``: without knockout, ``base``
    [F], and with the sublayers of ``window`` layers from each of ``starts`` zeroed, ``knocked``
    [kind (SUBLAYER_KINDS), start, F]."""

    measure_layer: int
    window: int
    starts: list[int]
    base: torch.Tensor
    knocked: torch.Tensor

    def table(self) -> pd.DataFrame:
        """Mean rate per first knocked-out layer (rows) and sublayer kind (columns)."""
        means = self.knocked.mean(-1)
        return pd.DataFrame(
            {kind: means[k].numpy() for k, kind in enumerate(SUBLAYER_KINDS)},
            index=pd.Index(self.starts, name="first knocked-out layer"),
        )

    def early_drop(self, kind: str) -> torch.Tensor:
        """Per fact [F]: the rate without knockout minus its mean over the early windows (starting
        in the lower half of the layers below the measured one)."""
        early = torch.tensor([s < self.measure_layer / 2 for s in self.starts])
        return self.base - self.knocked[SUBLAYER_KINDS.index(kind)][early].mean(0)


def knockout_starts(measure_layer: int, window: int, stride: int = 1) -> list[int]:
    """First layers of the ``window``-layer knockouts that end strictly below ``measure_layer``."""
    if window < 1 or stride < 1 or measure_layer < window:
        raise ValueError(
            f"need window >= 1, stride >= 1 and measure_layer >= window (windows end below the "
            f"measured layer), got window {window}, stride {stride}, measure_layer {measure_layer}"
        )
    return list(range(0, measure_layer - window + 1, stride))


@torch.no_grad()
def enrichment_knockout(
    model: HookedTransformer,
    facts: pd.DataFrame,
    masks: torch.Tensor,
    eligible: torch.Tensor,
    measure_layer: int,
    window: int,
    stride: int = 1,
    top: int = 500,
    keep: int = 50,
    fact_batch: int = 128,
    progress: bool = True,
) -> EnrichmentResult:
    """Attributes rate at the last subject token after ``measure_layer``, with the MLP or attention
    sublayers of ``window`` consecutive layers zeroed; every window ends below the measured layer.

    The prompts are cut after the subject, so they are short and many go in one pass (``fact_batch``)."""
    _require_range_index(facts)
    if not 0 <= measure_layer < model.cfg.n_layers:
        raise ValueError(f"need 0 <= measure_layer < {model.cfg.n_layers}, got {measure_layer}")
    starts = knockout_starts(measure_layer, window, stride)
    name = f"blocks.{measure_layer}.hook_resid_post"
    resume = {f"blocks.{s}.hook_resid_pre" for s in starts} | {name}
    base = torch.zeros(len(facts))
    knocked = torch.zeros(len(SUBLAYER_KINDS), len(starts), len(facts))
    groups = list(_batches(model, facts, fact_batch, sort_by="subj_tok_end"))
    for g in tqdm(groups, desc="sublayer knockouts", disable=not progress):
        attrs = masks[g.index]
        # later positions cannot affect the last subject token: run the prompts only up to it
        tokens = g.tokens[:, : int(g.subj_end.max())]
        _, cache = model.run_with_cache(
            tokens, stop_at_layer=measure_layer + 1, names_filter=lambda n: n in resume
        )

        def rate(hidden: torch.Tensor, g: _Group = g, attrs: torch.Tensor = attrs) -> torch.Tensor:
            logits = project(model, hidden[g.rows, g.subj_end - 1])
            return attributes_rate(logits, attrs, eligible, top, keep).cpu()

        base[g.index] = rate(cache[name])
        for k, kind in enumerate(SUBLAYER_KINDS):
            for i, s in enumerate(starts):  # layers below the window are unchanged: resume there
                store: dict[str, torch.Tensor] = {}
                fwd = hooks.zero_ablate([Sublayer(layer, kind) for layer in range(s, s + window)])
                model.run_with_hooks(
                    cache[f"blocks.{s}.hook_resid_pre"],
                    start_at_layer=s,
                    stop_at_layer=measure_layer + 1,
                    fwd_hooks=fwd + hooks.capture([name], store),
                )
                knocked[k, i, g.index] = rate(store[name])
    return EnrichmentResult(measure_layer, window, starts, base, knocked)


# ----------------------------------------------------------------- 4. attribute extraction
@torch.no_grad()
def sublayer_top_tokens(
    model: HookedTransformer,
    facts: pd.DataFrame,
    fact_batch: int = 32,
    heads: bool = True,
    block_subject_layers: Sequence[int] = (),
    progress: bool = True,
) -> dict[str, torch.Tensor]:
    """Top-1 token of each attention and MLP output (and each head's output) at the last position.

    Returns ``attn`` and ``mlp`` [F, L] and, with ``heads``, ``heads`` [F, L, H]. With
    ``block_subject_layers``, also ``attn_blocked`` and ``mlp_blocked`` [F, L]: the same with the
    subject -> last edges cut in those layers. Cutting edges *into* the last position changes no
    other position, so only the last one is rerun, from the first blocked layer, with the cached
    keys and values of the others; below that layer the blocked tokens are the clean ones.
    """
    _require_range_index(facts)
    n_layers, n_heads, device = model.cfg.n_layers, model.cfg.n_heads, model.cfg.device
    block = sorted(set(block_subject_layers))
    if block and not 0 <= block[0] <= block[-1] < n_layers:
        raise ValueError(f"block_subject_layers must lie in [0, {n_layers}), got {block}")
    kinds = {"attn": "hook_attn_out", "mlp": "hook_mlp_out"} | ({"heads": "attn.hook_z"} if heads else {})
    names = {f"blocks.{layer}.{hook}": (kind, layer) for layer in range(n_layers) for kind, hook in kinds.items()}
    acts = {kind: torch.zeros(len(facts), n_layers, *([n_heads, model.cfg.d_head] if kind == "heads" else [model.cfg.d_model]),
                              device=device) for kind in kinds}
    cached = set(names)
    if block:  # the rerun needs every layer's keys and values, and groups of one length (one last position)
        start = block[0]
        cached |= {f"blocks.{start}.hook_resid_pre"} | {f"blocks.{layer}.attn.hook_{kv}" for layer in range(n_layers) for kv in "kv"}
        blocked = {kind: torch.zeros(len(facts), n_layers - start, model.cfg.d_model, device=device) for kind in ("attn", "mlp")}
        groups = list(_equal_length_batches(model, facts, fact_batch))
    else:
        groups = list(_batches(model, facts, fact_batch))
    for g in tqdm(groups, desc="sublayer projections", disable=not progress):
        _, cache = model.run_with_cache(g.tokens, stop_at_layer=n_layers, names_filter=lambda n: n in cached)
        rows = g.index.to(device)
        for name, (kind, layer) in names.items():
            acts[kind][rows, layer] = cache[name][g.rows, g.last]
        if block:
            n, store = g.tokens.shape[1], {}
            rerun = [f"blocks.{layer}.{kinds[kind]}" for layer in range(start, n_layers) for kind in blocked]
            model.run_with_hooks(
                cache[f"blocks.{start}.hook_resid_pre"][:, n - 1 :],
                start_at_layer=start,
                stop_at_layer=n_layers,
                fwd_hooks=hooks.block_attention(block, _group_masks(g, ["subject"])[:, n - 1 :]) + hooks.capture(rerun, store),
                past_kv_cache=_frozen_prefix_cache(model, cache, n - 1, 1),
            )
            for layer in range(start, n_layers):
                for kind, acts_blocked in blocked.items():
                    acts_blocked[rows, layer - start] = store[f"blocks.{layer}.{kinds[kind]}"][:, 0]
    out = {kind: top_tokens(model, acts[kind]) for kind in ("attn", "mlp")}  # read once all facts are in
    if heads:
        out["heads"] = torch.stack([head_top_tokens(model, acts["heads"][:, layer], layer).cpu() for layer in range(n_layers)], 1)
    if block:
        out |= {f"{kind}_blocked": torch.cat([out[kind][:, :start], top_tokens(model, x)], 1) for kind, x in blocked.items()}
    return out


def top_tokens(model: HookedTransformer, x: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    """Top-1 token of ``project`` for every vector of ``x`` [..., d_model], ``chunk`` vectors at a time (on CPU)."""
    flat = x.reshape(-1, x.shape[-1])
    normed = model.ln_final(flat[:, None])[:, 0]  # what project feeds the unembedding
    top = torch.cat([argmax_of_product(part, model.W_U, bias=model.b_U).cpu() for part in normed.split(chunk)])
    return top.reshape(x.shape[:-1])


FACTORED_NORMS = {"RMSNormPre": False, "LayerNormPre": True}  # weightless final norms: name -> centres its input


def head_readout(model: HookedTransformer, w_o: torch.Tensor) -> torch.Tensor:
    """W_O C W_U [..., d_head, vocab] for output weights ``w_o`` [..., d_head, d_model] under a weightless
    final norm (FACTORED_NORMS; C centres for LayerNorm): logits = s · z (W_O C W_U) + b_U, s > 0."""
    kind = type(model.ln_final).__name__
    if kind not in FACTORED_NORMS:
        raise ValueError(f"a {kind} final norm has weights: the readout does not factor; use project")
    w_u = model.W_U - model.W_U.mean(0, keepdim=True) if FACTORED_NORMS[kind] else model.W_U
    return w_o @ w_u


def head_top_tokens(model: HookedTransformer, z: torch.Tensor, layer: int) -> torch.Tensor:
    """Top-1 token [N, H] of each head's write z[:, h] W_O[h] at ``layer`` read like ``project``.

    With a weightless final norm (TransformerLens's folded RMSNormPre or LayerNormPre) the logits are
    s · z_h (W_O[h] C W_U) + b_U, with s > 0 the norm's scale of that write and C the centring (LayerNorm
    only). So the [d_head, vocab] readout of each head is formed once, instead of a [d_model, vocab]
    product per head and fact. That pays once there are more than about d_head facts; for fewer, and for
    other norms, each write goes through ``project``.
    """
    w_o = model.blocks[layer].attn.W_O  # [H, d_head, d_model]
    writes = torch.einsum("nhe,hed->nhd", z, w_o)
    kind = type(model.ln_final).__name__
    d_head, d_model = w_o.shape[1:]
    if kind not in FACTORED_NORMS or len(z) * (d_model - d_head) <= d_head * d_model:  # readout costs more
        return project(model, writes).argmax(-1)
    centred = writes - writes.mean(-1, keepdim=True) if FACTORED_NORMS[kind] else writes
    scale = model.ln_final(writes).norm(dim=-1) / centred.norm(dim=-1).clamp_min(1e-30)  # [N, H]
    return argmax_of_product(z.transpose(0, 1), head_readout(model, w_o), scale.T, model.b_U).T


def argmax_of_product(
    a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor | None = None, bias: torch.Tensor | None = None,
    block: int = 1024,
) -> torch.Tensor:
    """argmax over the last dimension of (a @ b) · scale[..., None] + bias, ``block`` columns at a time.

    Blocks whose logits stay in cache beat writing the whole [..., vocab] tensor: 1.7x less CPU time for a
    short inner dimension (a head's d_head), 1.5x for d_model (benchmarks/bench_recall_argmax.py, one thread).
    Ties keep the first (lowest) index, as ``torch.argmax`` does.
    """
    best = torch.full(a.shape[:-1], -torch.inf, device=a.device)
    arg = torch.zeros(a.shape[:-1], dtype=torch.long, device=a.device)
    for start in range(0, b.shape[-1], block):
        logits = torch.matmul(a, b[..., start : start + block])
        if scale is not None:
            logits = logits * scale[..., None]
        if bias is not None:
            logits = logits + bias[start : start + block]
        value, index = logits.max(-1)
        better = value > best
        best, arg = torch.where(better, value, best), torch.where(better, index + start, arg)
    return arg


def extraction_events(top_tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Bool events: the sublayer's top-1 token is the fact's target (``top_tokens`` [F, ...], ``targets`` [F])."""
    if top_tokens.shape[0] != targets.shape[0]:
        raise ValueError(
            f"{top_tokens.shape[0]} facts of top tokens but {targets.shape[0]} targets"
        )
    return top_tokens == targets.view(-1, *[1] * (top_tokens.dim() - 1))


def extraction_summary(
    attn: torch.Tensor, mlp: torch.Tensor
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per-layer extraction rates and the shares of facts with >= 1 attention / MLP event ([F, L] bools)."""
    rates = pd.DataFrame({"attn": attn.float().mean(0).numpy(), "mlp": mlp.float().mean(0).numpy()})
    rates.index.name = "layer"
    shares = {
        "attn_share": float(attn.any(-1).float().mean()),
        "mlp_share": float(mlp.any(-1).float().mean()),
    }
    return rates, shares


# ------------------------------------------------------------------------------ 5. heads
def ov_circuit(
    model: HookedTransformer, layer: int, head: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Head ``head``'s value weights [d_model, d_head], value bias [d_head] and output weights [d_head, d_model].

    With grouped-query attention, query head h reads key/value head h // (n_heads // n_kv_heads).
    """
    attn = model.blocks[layer].attn
    n_heads = model.cfg.n_heads
    if not 0 <= head < n_heads:
        raise ValueError(f"head must be in [0, {n_heads}), got {head}")
    if hasattr(attn, "_W_V"):  # GQA: stored per key/value head
        kv = head // (n_heads // attn._W_V.shape[0])
        return attn._W_V[kv], attn._b_V[kv], attn.W_O[head]
    return attn.W_V[head], attn.b_V[head], attn.W_O[head]


def top_heads(events: torch.Tensor, n: int) -> list[tuple[int, int, int]]:
    """The ``n`` heads with most extraction events (``events`` [F, L, H]) as (layer, head, count)."""
    counts = events.sum(0)
    order = counts.flatten().argsort(descending=True, stable=True)[:n]
    n_heads = counts.shape[1]
    return [(int(i) // n_heads, int(i) % n_heads, int(counts.flatten()[i])) for i in order]


def control_heads(
    events: torch.Tensor, n: int, seed: int = 0, exclude: Sequence[tuple[int, ...]] = ()
) -> list[tuple[int, int, int]]:
    """``n`` heads picked at random (seeded) among those with the fewest extraction events,
    leaving out the (layer, head, ...) tuples in ``exclude``."""
    counts = events.sum(0)
    n_heads = counts.shape[1]
    taken = {h[0] * n_heads + h[1] for h in exclude}
    free = [i for i in range(counts.numel()) if i not in taken]
    low = min(int(counts.flatten()[i]) for i in free)
    fewest = [i for i in free if int(counts.flatten()[i]) == low]
    chosen = random.Random(seed).sample(fewest, min(n, len(fewest)))
    return [(i // n_heads, i % n_heads, int(counts.flatten()[i])) for i in sorted(chosen)]


@torch.no_grad()
def head_attribute_hits(
    model: HookedTransformer,
    facts: pd.DataFrame,
    heads: Sequence[tuple[int, ...]],
    k: int = 10,
    fact_batch: int = 32,
    n_examples: int = 0,
    inputs: str = "hidden",
    progress: bool = True,
) -> tuple[pd.DataFrame, list[dict], torch.Tensor]:
    """How often each head's OV circuit maps a subject token to the fact's target.

    For each head (layer, head, ...), a vector per subject position goes through the head's OV
    circuit (W_V, then W_O) and is read in the vocabulary; a hit is the target in the top ``k`` at
    any subject position. ``inputs`` picks the vectors: ``"hidden"``, the head's actual normalised
    input in the prompt, or ``"embedding"``, the subject tokens' embeddings through the layer's
    input norm (the weights alone). Returns a table per head, for the first head the top tokens at
    the last subject position of ``n_examples`` facts, and the hits [F, heads] (bool).
    """
    _require_range_index(facts)
    if inputs not in OV_INPUTS:
        raise ValueError(f"inputs must be one of {OV_INPUTS}, got {inputs!r}")
    layers = sorted({h[0] for h in heads})
    names = {f"blocks.{layer}.ln1.hook_normalized" for layer in layers}
    hits = torch.zeros(len(facts), len(heads), dtype=torch.bool)
    examples: list[dict] = []
    # Without an unembedding bias, the positive norm scale cannot change a top-k: each head's
    # [d_head, vocab] readout, formed once, ranks the tokens as project does
    factored = type(model.ln_final).__name__ in FACTORED_NORMS and not model.b_U.any()
    readouts = [head_readout(model, ov_circuit(model, h[0], h[1])[2]) for h in heads] if factored else []
    for g in tqdm(
        list(_batches(model, facts, fact_batch)), desc="OV circuits", disable=not progress
    ):
        if inputs == "hidden":
            _, cache = model.run_with_cache(
                g.tokens, stop_at_layer=max(layers) + 1, names_filter=lambda n: n in names
            )
        width = int((g.subj_end - g.subj_start).max())
        offsets = torch.arange(width, device=g.tokens.device)
        pos = (g.subj_start[:, None] + offsets).clamp(max=g.tokens.shape[1] - 1)  # [G, width]
        inside = g.subj_start[:, None] + offsets < g.subj_end[:, None]
        for i, (layer, head, *_) in enumerate(heads):
            w_v, b_v, w_o = ov_circuit(model, layer, head)
            if inputs == "hidden":
                x = cache[f"blocks.{layer}.ln1.hook_normalized"][g.rows[:, None], pos]
            else:
                x = model.blocks[layer].ln1(model.W_E[g.tokens[g.rows[:, None], pos]])
            values = x @ w_v + b_v
            logits = values @ readouts[i] if readouts else project(model, values @ w_o)  # same top-k
            top = logits.topk(k, dim=-1).indices  # [G, width, k]
            found = ((top == g.targets[:, None, None]).any(-1) & inside).any(-1)
            hits[g.index, i] = found.cpu()
            if i == 0 and len(examples) < n_examples:
                last_subject = g.subj_end - g.subj_start - 1
                for r in range(min(n_examples - len(examples), len(g.index))):
                    row = facts.loc[int(g.index[r])]
                    examples.append(
                        {
                            "subject": row.subject,
                            "target": model.to_string(int(g.targets[r])).strip(),
                            "head": f"L{layer}.H{head}",
                            "top tokens": [
                                model.to_string(int(t)).strip()
                                for t in top[r, int(last_subject[r])]
                            ],
                        }
                    )
    table = pd.DataFrame(
        [
            {"layer": h[0], "head": h[1], "hit_rate": float(hits[:, i].float().mean())}
            for i, h in enumerate(heads)
        ]
    )
    return table, examples, hits


# ------------------------------------------------------------------------------ verdicts
NO_FACTS = Interval(
    float("nan"), float("nan"), float("nan"), 0
)  # verdicts on it say "too few: n=0"


def fact_interval(values: torch.Tensor, seed: int = 0) -> Interval:
    """Mean of per-fact ``values`` [F] with its bootstrap interval over facts (``NO_FACTS`` if F = 0)."""
    if values.numel() == 0:
        return NO_FACTS
    return bootstrap_interval(values.double().numpy(), seed=seed)


def _over_facts(n: int, statistic: Callable[[np.ndarray], float], seed: int = 0) -> Interval:
    """Bootstrap interval of ``statistic(fact indices)`` over resampled facts (``NO_FACTS`` if n = 0)."""
    if n == 0:
        return NO_FACTS
    return bootstrap_interval(
        np.arange(n), statistic=lambda idx: statistic(idx.astype(int)), seed=seed
    )


def knockout_minima(result: KnockoutResult, rows: Sequence[bool] | None = None) -> dict[str, dict]:
    """Each curve's minimum (mean over the facts in ``rows``), its layer, and the interval of the
    mean change at that layer over those facts."""
    change = result.change(rows)
    out = {}
    for i, source in enumerate(result.sources):
        j = int(change[i].mean(-1).nan_to_num(0.0).argmin())
        interval = fact_interval(change[i, j])
        out[KNOCKOUT_LABELS[source]] = {
            "min_change_pct": interval.estimate,
            "layer": result.centers[j],
            "interval": interval.as_dict(),
            "n": interval.n,
        }
    return out


def minimum_layer(
    result: KnockoutResult, source: str, rows: Sequence[bool] | None = None
) -> Interval:
    """Bootstrap interval (over facts) of the layer where ``source``'s mean curve is lowest."""
    change = result.change(rows)
    curve, centers = change[result.sources.index(source)].numpy(), np.array(result.centers)
    return _over_facts(curve.shape[-1], lambda idx: float(centers[curve[:, idx].mean(-1).argmin()]))


def minimum_layer_gap(
    result: KnockoutResult, early: str, late: str, rows: Sequence[bool] | None = None
) -> Interval:
    """Bootstrap interval of (layer of ``late``'s minimum) − (layer of ``early``'s minimum)."""
    change = result.change(rows)
    a, b = (change[result.sources.index(s)].numpy() for s in (early, late))
    centers = np.array(result.centers)
    return _over_facts(
        a.shape[-1],
        lambda idx: float(
            centers[b[:, idx].mean(-1).argmin()] - centers[a[:, idx].mean(-1).argmin()]
        ),
    )


def smallest_effect_margin(
    result: KnockoutResult, source: str, others: Sequence[str], rows: Sequence[bool] | None = None
) -> Interval:
    """Bootstrap interval of ``source``'s curve minimum minus the highest of the ``others``' minima
    (positive: ``source`` hurts least)."""
    change = result.change(rows)
    curves = {s: change[result.sources.index(s)].numpy() for s in (source, *others)}
    return _over_facts(
        change.shape[-1],
        lambda idx: float(
            curves[source][:, idx].mean(-1).min()
            - max(curves[o][:, idx].mean(-1).min() for o in others)
        ),
    )


def describe_minimum(minimum: Mapping) -> str:
    """``'-86% [-90, -82] at layer 22'`` from a ``knockout_minima`` entry."""
    low, high = minimum["interval"]["low"], minimum["interval"]["high"]
    return (
        f"{minimum['min_change_pct']:+.0f}% [{low:+.0f}, {high:+.0f}] at layer {minimum['layer']}"
    )


def specific_summary(variants: Mapping[tuple[str, str], torch.Tensor]) -> pd.DataFrame:
    """One row per (attribute source, readout) of subject-specific rates [F, L, position]: n, the
    position with the highest peak, and each position's peak in points with its 95% interval."""
    rows = []
    for (source, readout), values in variants.items():
        peaks = position_peaks(values)
        best = max(POSITIONS, key=lambda p: peaks[p]["estimate"]) if len(values) else "—"
        cells = {
            p: f"{100 * v['estimate']:.1f} [{100 * v['low']:.1f}, {100 * v['high']:.1f}] (L{v['layer']})"
            for p, v in peaks.items()
        }
        rows.append(
            {
                "attribute source": source,
                "readout": readout,
                "n facts": len(values),
                "highest peak": best,
                **cells,
            }
        )
    return pd.DataFrame(rows)


def position_peaks(values: torch.Tensor) -> dict[str, dict]:
    """Per position: the layer where the mean of ``values`` [F, L, position] peaks, and the
    interval of the mean there over facts."""
    means = values.mean(0).nan_to_num(0.0)
    out = {}
    for p, position in enumerate(POSITIONS):
        layer = int(means[:, p].argmax())
        out[position] = {"layer": layer, **fact_interval(values[:, layer, p]).as_dict()}
    return out


def peak_advantage(values: torch.Tensor, position: str, rivals: Sequence[str]) -> Interval:
    """Bootstrap interval of ``position``'s peak (over layers, of the mean of ``values`` [F, L,
    position]) minus the highest of the ``rivals``' peaks; layers are re-chosen in every resample."""
    array = values.numpy()
    cols = {p: POSITIONS.index(p) for p in (position, *rivals)}
    peak = lambda idx, p: float(array[idx][:, :, cols[p]].mean(0).max())  # noqa: E731
    return _over_facts(
        array.shape[0], lambda idx: peak(idx, position) - max(peak(idx, r) for r in rivals)
    )
