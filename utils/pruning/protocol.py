"""Notebook 04's protocol: the sizes, seeds and methods a set of runs depends on, and the data they define.

* ``RecordingProtocol``: what a recorded set of runs depends on (calibration size and seeds, the
  evaluation sizes, methods, top-k, ridge grid, corpus); built from named values
  (``RecordingProtocol(targets=..., n_calib_windows=..., ...)``), a misspelt or unknown field is an
  error naming the close matches. It is stored in, and checked against, ``data/pruning/runs.json``.
* ``calibration_split``: a seed's calibration windows and as many held-out windows; ``tokens_hash``
  fingerprints them, so loaded runs can be checked to come from the same tokens.
* ``eval_data`` / ``quality_metrics``: held-out perplexity, last-word cloze accuracy and templated
  probes above chance of the model's current (pruned) state.

Public names: ``RecordingProtocol``, ``calibration_split``, ``tokens_hash``, ``EvalData``,
``eval_data``, ``quality_metrics``.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, TypeVar

import torch
from transformer_lens import HookedTransformer

from utils.cloze import ClozeItem, cloze_correct, last_word_items
from utils.data import corpus_texts, load_facts, token_batches
from utils.evaluation import multiple_choice, perplexity
from utils.tasks import MCItem, build_tasks, chance_level

__all__ = ["EvalData", "RecordingProtocol", "calibration_split", "eval_data", "quality_metrics", "tokens_hash"]

T = TypeVar("T")


def _named_fields_only(cls: type[T]) -> type[T]:
    """Make a keyword-only dataclass's constructor name the close matches of an unknown field
    (Python's own message only says "unexpected keyword argument")."""
    generated = cls.__init__

    @functools.wraps(generated)
    def __init__(self: T, **values: Any) -> None:
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            hints = []
            for name in unknown:
                close = difflib.get_close_matches(name, known)
                hints.append(f"{name!r}" + (f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""))
            raise TypeError(f"{cls.__name__} has no field {', '.join(hints)}; its fields are {known}")
        generated(self, **values)

    cls.__init__ = __init__
    return cls


@_named_fields_only
@dataclass(kw_only=True)
class RecordingProtocol:
    """What a recorded set of runs depends on: sizes, seeds, methods (named values, checked)."""

    targets: list[float]
    n_calib_windows: int
    calib_ctx: int
    calib_seeds: list[int]
    n_val_tokens: int
    val_ctx: int
    n_task_items: int
    n_cloze_items: int
    cloze_ctx: int
    methods: list[str]
    top_k: int
    ridge_grid: list[float]
    diagnostic_windows: list[int]
    diagnostic_candidates: int = 0
    source: str = "shipped"


def calibration_split(
    model: HookedTransformer, n_windows: int, ctx: int, seed: int, source: str = "shipped"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Calibration windows [n_windows, ctx] and as many held-out windows, disjoint, from the train split.

    The shipped corpus is shuffled by ``seed``; a streamed corpus is read in order and seed s takes
    the s-th block of 2 * n_windows windows.
    """
    shuffle = seed if source == "shipped" else None
    blocks = 1 if source == "shipped" else seed + 1
    tokens = torch.cat(list(token_batches(model, "train", 2 * n_windows * ctx * blocks, ctx, 64, source, shuffle)))
    tokens = tokens[-2 * n_windows :]
    return tokens[:n_windows], tokens[n_windows:]


def tokens_hash(tokens: torch.Tensor) -> str:
    """A short content hash of a token tensor (shape and ids), to check that loaded runs match."""
    data = tokens.detach().cpu().to(torch.int64).numpy()
    return hashlib.sha256(str(data.shape).encode() + data.tobytes()).hexdigest()[:16]


@dataclass
class EvalData:
    """Held-out evaluation data: perplexity windows [batch, val_ctx], cloze items and the templated probe tasks."""

    val_batches: list[torch.Tensor]
    cloze_items: list[ClozeItem]
    cloze_ctx: int
    tasks: dict[str, list[MCItem]]


def eval_data(model: HookedTransformer, protocol: RecordingProtocol, seed: int = 0) -> EvalData:
    """Validation windows, cloze items from validation documents and the probe suite."""
    val = list(token_batches(model, "validation", protocol.n_val_tokens, protocol.val_ctx, 8, protocol.source))
    items = last_word_items(corpus_texts("validation", protocol.source), protocol.n_cloze_items)
    return EvalData(val, items, protocol.cloze_ctx, build_tasks(load_facts(), protocol.n_task_items, seed))


def quality_metrics(model: HookedTransformer, data: EvalData, kept_tasks: Sequence[str]) -> dict[str, float]:
    """Perplexity, cloze accuracy, and probe accuracy above chance (kept tasks) of the model's current state."""
    correct = cloze_correct(model, data.cloze_items, data.cloze_ctx)
    probes = {t: multiple_choice(model, data.tasks[t])["acc"] - chance_level(data.tasks[t]) for t in kept_tasks}
    return {"perplexity": perplexity(model, data.val_batches), "cloze_acc": sum(correct) / len(correct),
            "probe_above_chance": statistics.mean(probes.values()) if probes else float("nan"),
            **{f"probe/{t}": v for t, v in probes.items()}}
