"""Running the greater-than prompts with MLP writes edited: the measurement every ablation makes.

The greater-than case study (Dunefsky, Chlenski & Nanda 2024, after Hanna et al. 2023)
scores a model, or an edited model, by the probability difference of its next-token answers
(``utils.greater_than``). Every edit in ``utils.circuits.ablation`` is measured here.

* ``greater_than_task``: the task as the model's tokenizer writes years.
* ``answer_probs`` / ``mean_prob_diff``: answer probabilities and the mean probability difference,
  with MLP writes replaced (``replacements``: layer -> fn(normalised input, real write), through
  ``utils.hooks.replace_writes``; attention sinks keep the real write) and extra ``fwd_hooks``.
* ``clean_run``: one unedited run whose residual streams an edited run resumes from at its first
  edited layer (``first_edited_layer``, ``run_start``): nothing below that layer changes, so the
  numbers are those of a full run, for a fraction of the compute.

Public names: ``greater_than_task``, ``prompt_tokens``, ``answer_probs``, ``mean_prob_diff``,
``CleanRun``, ``clean_run``, ``first_edited_layer``, ``run_start``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from transformer_lens import HookedTransformer

from utils import hooks
from utils import transcoders as T
from utils.greater_than import GreaterThan
from utils.hooks import Replacement
from utils.prompts import logits_at
from utils.sublayers import Sublayer

__all__ = [
    "CleanRun",
    "answer_probs",
    "clean_run",
    "first_edited_layer",
    "greater_than_task",
    "mean_prob_diff",
    "prompt_tokens",
    "run_start",
]


def greater_than_task(model: HookedTransformer) -> GreaterThan:
    """The greater-than task as ``model``'s tokenizer writes years (single digits or two-digit tokens)."""
    return GreaterThan.for_tokenizer(model.tokenizer)


def prompt_tokens(model: HookedTransformer, prompts: Sequence[str]) -> torch.Tensor:
    """[n, pos] tokens of equal-length prompts, on the model's device, starting with BOS when the model
    wants one (``model.cfg.default_prepend_bos``: Gemma yes, SmolLM2 no); the answer is read at the
    last position either way."""
    tokens = model.to_tokens(list(prompts), prepend_bos=model.cfg.default_prepend_bos)
    return tokens.to(model.cfg.device)


@dataclass(frozen=True)
class CleanRun:
    """One unedited run of equal-length prompts: their tokens, attention sinks and every layer's
    residual input (``resid[n_layers]`` is the last block's output). An edited run starts from here at
    its first edited layer, since nothing below that layer changes."""

    prompts: tuple[str, ...]
    tokens: torch.Tensor  # [n, pos]
    sinks: torch.Tensor  # [n, pos]
    resid: torch.Tensor  # [n_layers + 1, n, pos, d]


@torch.no_grad()
def clean_run(model: HookedTransformer, prompts: Sequence[str]) -> CleanRun:
    """Run equal-length ``prompts`` once and keep what an edited run can start from."""
    tokens = prompt_tokens(model, prompts)
    names = [hooks.resid_pre(layer) for layer in range(model.cfg.n_layers)]
    store: dict[str, torch.Tensor] = {}
    final = hooks.run(model, tokens, hooks.capture(names, store), stop_at_layer=model.cfg.n_layers)
    resid = torch.stack([store[name] for name in names] + [final])
    sinks = T.model_sinks(model, tokens, resid[T.sink_layer(model)])
    return CleanRun(tuple(prompts), tokens, sinks, resid)


def first_edited_layer(replacements: Mapping[int, Any], fwd_hooks: Sequence, n_layers: int) -> int:
    """The lowest block that ``replacements`` or ``fwd_hooks`` touch: -1 for a hook outside the blocks
    (the embedding, or a name filter), ``n_layers`` when nothing is edited."""
    layers = list(replacements)
    for name, _ in fwd_hooks:
        layer = hooks.layer_of(name) if isinstance(name, str) else None
        layers.append(-1 if layer is None else layer)
    return min(layers, default=n_layers)


def run_start(
    model: HookedTransformer, prompts: Sequence[str], clean: CleanRun | None, layer: int
) -> tuple[torch.Tensor, torch.Tensor, tuple[int, torch.Tensor] | None]:
    """Tokens, attention sinks and where a run of ``prompts`` edited from block ``layer`` on starts:
    (layer, its clean residual input) from ``clean``, or None (embed the tokens) without ``clean`` or
    for an edit outside the blocks (``layer`` -1)."""
    if clean is None:
        tokens = prompt_tokens(model, prompts)
        return tokens, T.model_sinks(model, tokens), None
    if clean.prompts != tuple(prompts):
        raise ValueError("clean was made for other prompts; pass clean_run(model, these prompts)")
    return clean.tokens, clean.sinks, ((layer, clean.resid[layer]) if layer >= 0 else None)


@torch.no_grad()
def answer_probs(
    model: HookedTransformer,
    task: GreaterThan,
    prompts: Sequence[str],
    replacements: Mapping[int, Replacement] | None = None,
    fwd_hooks: Sequence = (),
    clean: CleanRun | None = None,
) -> torch.Tensor:
    """Probabilities [n, answers] of the task's answers as the next token after each (equal-length)
    prompt, with MLP writes replaced by ``replacements`` (not at sinks) and extra ``fwd_hooks``. With
    ``clean`` (``clean_run`` of the same prompts) the run starts at the first edited layer."""
    replacements = replacements or {}
    tokens, sinks, start = run_start(model, prompts, clean, first_edited_layer(replacements, fwd_hooks, model.cfg.n_layers))
    edits = hooks.replace_writes({Sublayer(layer, "mlp"): fn for layer, fn in replacements.items()}, keep_real=sinks)
    last = torch.full((len(tokens),), tokens.shape[1] - 1)
    probs = logits_at(model, tokens, last, edits + list(fwd_hooks), start).softmax(-1)
    return probs[:, list(task.answer_ids)].cpu()


def mean_prob_diff(
    model: HookedTransformer,
    task: GreaterThan,
    prompts: pd.DataFrame,
    replacements: Mapping[int, Replacement] | None = None,
    fwd_hooks: Sequence = (),
    clean: CleanRun | None = None,
) -> float:
    """The task's probability difference averaged over ``prompts``, with ``answer_probs``' replacements."""
    probs = answer_probs(model, task, prompts.prompt, replacements, fwd_hooks, clean)
    return float(task.probability_difference(probs, prompts).mean())
