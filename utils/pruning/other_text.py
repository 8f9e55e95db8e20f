"""Recorded pruning orders evaluated live on another text: rebuild each snapshot, then measure it.

``data/pruning/runs.json`` keeps every method's order and its quality on the text it was recorded
with, not the pruned models. Any snapshot can be rebuilt from its order and evaluated on other text
(notebook 04: the text the runs were not recorded on, human prose or the model's own):

* ``rebuild_snapshot``: skip a recorded order's prefix; for the SPRINT variants that tune, re-fit
  each next MLP's W_out step by step on the same calibration tokens, as the run did
  (``SprintScorer.tuned`` then ``commit``, with the run's ridge).
* ``text_rows``: per method of one calibration seed, the snapshot at each target (the first step
  reaching it) rebuilt and evaluated by ``evaluate(model)``; equal pruned states are evaluated once.
* ``text_evaluator``: such an ``evaluate``: perplexity and last-word cloze accuracy on a split of
  a corpus (e.g. the human prose's test split, or the shipped corpus's validation split).
* ``other_recording_rows``: ``text_rows`` of another recording (e.g. the orders calibrated on the
  model's own text), rebuilt on its own calibration tokens (their hash checked).

Public names: ``TUNING_METHODS``, ``rebuild_snapshot``, ``text_rows``, ``text_evaluator``,
``other_recording_rows``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from transformer_lens import HookedTransformer

from utils.cloze import cloze_correct, last_word_items
from utils.data import corpus_texts, token_batches
from utils.evaluation import perplexity
from utils.pruning.latency import LatencyModel, latency_from_raw
from utils.pruning.protocol import RecordingProtocol, calibration_split, tokens_hash
from utils.pruning.pruned_model import Checkpoints, restore_dense
from utils.pruning.recorded_runs import RecordedRunsError
from utils.pruning.sprint import SPRINT_VARIANTS, SprintScorer
from utils.sublayers import set_skipped, sublayer

__all__ = ["TUNING_METHODS", "other_recording_rows", "rebuild_snapshot", "text_evaluator", "text_rows"]

TUNING_METHODS = tuple(name for name, (_, tune) in SPRINT_VARIANTS.items() if tune)


def rebuild_snapshot(
    model: HookedTransformer, method: str, pruned: Sequence[int], calib: torch.Tensor, ridge: float,
    originals: dict[int, torch.Tensor],
) -> None:
    """Put the snapshot that pruned ``pruned`` (in that order) on ``model``: the sublayers skipped
    and, for a tuning SPRINT variant, each step's W_out refit recomputed on ``calib`` [n, pos]."""
    restore_dense(model, originals)
    if method not in TUNING_METHODS:
        set_skipped(model, list(pruned))
        return
    scorer = SprintScorer(Checkpoints(model, calib.to(model.cfg.device)), ridge)
    for index in pruned:
        scorer.commit(scorer.tuned(index))


def text_rows(
    model: HookedTransformer, runs: Mapping[str, Mapping[str, Any]], calib: torch.Tensor, ridge: float,
    latency: LatencyModel, targets: Sequence[float], evaluate: Callable[[HookedTransformer], dict],
) -> list[dict]:
    """Per method of ``runs`` (one seed's ``{method: run}``) and target: the first step reaching it,
    rebuilt on ``model`` and scored by ``evaluate``, with its speed-up (paper formula). The model is
    left dense; a pruned (and tuned) state shared by two methods is evaluated once."""
    originals = {i: b.mlp.W_out.detach().clone() for i, b in enumerate(model.blocks)}
    done: dict[tuple, dict] = {}
    rows = []
    try:
        for method, run in runs.items():
            for target in targets:
                step = next((s for s in run["steps"] if s["estimate"] >= target), None)
                if step is None:
                    continue
                tuned = method in TUNING_METHODS
                state = (tuned, tuple(step["pruned"]) if tuned else tuple(sorted(step["pruned"])))
                if state not in done:
                    rebuild_snapshot(model, method, step["pruned"], calib, ridge, originals)
                    done[state] = evaluate(model)
                kinds = [sublayer(i).kind for i in step["pruned"]]
                rows.append({"method": method, "target": target, "speedup_paper": latency.paper_speedup(step["pruned"]),
                             "n_attn": kinds.count("attn"), "n_mlp": kinds.count("mlp"), **done[state]})
    finally:
        restore_dense(model, originals)
    return rows


def text_evaluator(
    model: HookedTransformer, source: str, split: str, n_tokens: int, ctx: int, n_cloze: int, cloze_ctx: int
) -> Callable[[HookedTransformer], dict]:
    """``evaluate(model)``: perplexity on ``n_tokens`` tokens of ``split`` of ``source`` (windows of
    ``ctx``) and cloze accuracy on ``n_cloze`` of its documents (none, and no ``cloze_acc``, for 0);
    the data are read once, here."""
    batches = list(token_batches(model, split, n_tokens, ctx, 8, source))
    items = last_word_items(corpus_texts(split, source), n_cloze) if n_cloze else []

    def evaluate(m: HookedTransformer) -> dict:
        scores = {"perplexity": perplexity(m, batches)}
        if items:
            correct = cloze_correct(m, items, cloze_ctx)
            scores["cloze_acc"] = sum(correct) / len(correct)
        return scores

    return evaluate


def other_recording_rows(
    model: HookedTransformer, recording: Mapping[str, Any], seed: int, targets: Sequence[float],
    evaluate: Callable[[HookedTransformer], dict], name: str,
) -> list[dict]:
    """``text_rows`` of another ``recording`` (a loaded runs file, ``name`` in messages): seed ``seed``'s
    snapshots rebuilt on that recording's own calibration tokens, whose hash must equal the recorded one,
    with speed-ups from its own latency model."""
    protocol = RecordingProtocol(**recording["protocol"])
    calib, _ = calibration_split(model, protocol.n_calib_windows, protocol.calib_ctx, seed, protocol.source)
    if tokens_hash(calib) != recording["calibration_hashes"][str(seed)]:
        raise RecordedRunsError(f"{name}: its calibration tokens for seed {seed} ({protocol.source!r}) cannot be "
                                "rebuilt here (hash mismatch: the corpus or tokenizer changed)")
    latency = latency_from_raw(recording["latency"], model.cfg.n_layers)
    return text_rows(model, recording["runs"][str(seed)], calib, recording["ridge"], latency, targets, evaluate)
