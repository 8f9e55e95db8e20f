"""The greater-than case study's faithfulness tests: mean-ablation, unit scores, top-k circuits.

Dunefsky, Chlenski & Nanda 2024, the greater-than case study (after Hanna et al. 2023): which MLP layers carry the
task, and do a few transcoder features carry it better than as many MLP neurons? Every unit left out
of a circuit is mean-ablated (held at its mean over the prompts, per position), and each edit is
scored by the mean probability difference (``utils.circuits.runs``).

1. ``mean_writes`` / ``mean_feature_acts`` / ``mean_neuron_acts``: the means an ablation holds units at.
2. ``layer_effects``: the fall in probability difference when one MLP's write is mean-ablated
   (``mean_write_fn``); ``window_effects`` the same for every run of consecutive layers ablated at
   once (the joint effect), and ``best_window`` picks the run whose ablation lowers it most;
   ``best_layer_window`` picks the consecutive layers whose units carry the most |score|.
3. ``unit_scores``: each feature's or neuron's first-order effect of mean-ablation,
   |(a - mean a) x gradient|; ``top_units`` ranks them across layers, ``random_units`` is chance.
4. ``features_kept`` (replacements splicing transcoders with only some features at their real
   activation) and ``neurons_kept`` (hooks keeping only some neurons): a top-k circuit, the rest
   mean-ablated.
5. ``precision_at_k``: the share of top units whose mean-ablation alone moves the probability
   difference, with ``feature_ablator`` / ``neuron_ablator`` making each single ablation.

Public names: ``MeanActs``, ``Edit``, ``mean_writes``, ``mean_feature_acts``, ``mean_neuron_acts``,
``mean_write_fn``, ``layer_effects``, ``window_effects``, ``best_window``, ``best_layer_window``,
``unit_scores``, ``top_units``,
``random_units``, ``features_kept``, ``neurons_kept``, ``precision_at_k``, ``feature_ablator``,
``neuron_ablator``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from utils import hooks
from utils import transcoders as T
from utils.circuits.runs import CleanRun, clean_run, mean_prob_diff, prompt_tokens, run_start
from utils.greater_than import GreaterThan
from utils.hooks import FwdHooks, Replacement
from utils.prompts import logits_at
from utils.sublayers import Sublayer

__all__ = [
    "Edit",
    "MeanActs",
    "best_layer_window",
    "best_window",
    "feature_ablator",
    "features_kept",
    "layer_effects",
    "mean_feature_acts",
    "mean_neuron_acts",
    "mean_write_fn",
    "mean_writes",
    "neuron_ablator",
    "neurons_kept",
    "precision_at_k",
    "random_units",
    "top_units",
    "unit_scores",
    "window_effects",
]

MeanActs = dict[int, torch.Tensor]  # layer -> [pos, units]: a unit's mean over prompts, per position
Edit = tuple[Mapping[int, Replacement], Sequence]  # (MLP replacements by layer, extra fwd_hooks)


# ----------------------------------------------------------------------------- 1. means over prompts


@torch.no_grad()
def _activations(model: HookedTransformer, prompts: Sequence[str], names: Mapping[str, int]) -> dict[int, torch.Tensor]:
    """The activations [n, pos, ...] at hook ``name`` for each (name, layer), running only up to the last layer."""
    store: dict[str, torch.Tensor] = {}
    hooks.run(model, prompt_tokens(model, prompts), hooks.capture(names, store),
              stop_at_layer=max(names.values(), default=0) + 1)
    return {layer: store[name] for name, layer in names.items()}


def mean_writes(model: HookedTransformer, prompts: Sequence[str], layers: Iterable[int]) -> MeanActs:
    """Each MLP's write averaged over the prompts, per position ([pos, d_model])."""
    writes = _activations(model, prompts, {Sublayer(layer, "mlp").out_hook: layer for layer in layers})
    return {layer: act.mean(0) for layer, act in writes.items()}


@torch.no_grad()
def mean_feature_acts(model: HookedTransformer, prompts: Sequence[str], transcoders: Mapping[int, Any]) -> MeanActs:
    """Each transcoder feature's activation averaged over prompts, per position ([pos, d_sae])."""
    names = {hooks.sublayer_input_hook(Sublayer(layer, "mlp")): layer for layer in transcoders}
    inputs = _activations(model, prompts, names)
    return {layer: transcoders[layer].encode(x).mean(0) for layer, x in inputs.items()}


def mean_neuron_acts(model: HookedTransformer, prompts: Sequence[str], layers: Iterable[int]) -> MeanActs:
    """Each MLP neuron's (post-activation) value averaged over prompts, per position ([pos, d_mlp])."""
    neurons = _activations(model, prompts, {hooks.mlp_post(layer): layer for layer in layers})
    return {layer: act.mean(0) for layer, act in neurons.items()}


# ----------------------------------------------------------------------------- 2. which layers carry the task


def mean_write_fn(mean: torch.Tensor) -> Replacement:
    """A replacement of an MLP write by its mean over prompts ([pos, d], per position)."""
    return lambda x, real: mean.to(real).expand_as(real)


def layer_effects(
    model: HookedTransformer,
    task: GreaterThan,
    prompts: pd.DataFrame,
    layers: Sequence[int],
    clean: CleanRun | None = None,
) -> pd.Series:
    """Per layer: clean mean probability difference minus the one with that MLP mean-ablated
    (replaced by its mean over prompts; sinks keep the real write). Large = the layer carries the task.
    ``clean``: the prompts' ``clean_run``, if one is at hand."""
    means = mean_writes(model, prompts.prompt, layers)
    run = clean if clean is not None else clean_run(model, prompts.prompt)
    unedited = mean_prob_diff(model, task, prompts, clean=run)
    effects = {
        layer: unedited - mean_prob_diff(model, task, prompts, {layer: mean_write_fn(means[layer])}, clean=run)
        for layer in tqdm(layers, desc="mean-ablating each MLP")
    }
    return pd.Series(effects, name="effect")


def _consecutive(layers: Sequence[int], width: int) -> list[list[int]]:
    """Every run of ``width`` consecutive layers among ``layers`` (sorted)."""
    ordered = sorted(layers)
    if not 1 <= width <= len(ordered):
        raise ValueError(f"window width must be between 1 and {len(ordered)} (the layers given), got {width}")
    runs = [ordered[i : i + width] for i in range(len(ordered) - width + 1)]
    contiguous = [w for w in runs if w[-1] - w[0] == width - 1]
    if not contiguous:
        raise ValueError(f"no {width} consecutive layers among {ordered}")
    return contiguous


def window_effects(
    model: HookedTransformer,
    task: GreaterThan,
    prompts: pd.DataFrame,
    layers: Sequence[int],
    width: int,
    clean: CleanRun | None = None,
) -> pd.Series:
    """For every run of ``width`` consecutive layers among ``layers``: the clean mean probability
    difference minus the one with all of the run's MLPs mean-ablated at once (the joint effect),
    indexed by the run's first layer. Positive = ablating the window lowers the difference."""
    windows = _consecutive(layers, width)
    means = mean_writes(model, prompts.prompt, sorted({layer for w in windows for layer in w}))
    run = clean if clean is not None else clean_run(model, prompts.prompt)
    unedited = mean_prob_diff(model, task, prompts, clean=run)
    effects = {
        w[0]: unedited - mean_prob_diff(model, task, prompts, {la: mean_write_fn(means[la]) for la in w}, clean=run)
        for w in tqdm(windows, desc="mean-ablating each window")
    }
    return pd.Series(effects, name="joint_effect")


def best_window(joint: pd.Series, width: int) -> tuple[list[int], float]:
    """The window (``width`` layers from the first layer in ``joint``'s index) whose joint
    mean-ablation lowers the probability difference most, and that joint effect."""
    first = int(joint.idxmax())
    return list(range(first, first + width)), float(joint.max())


def best_layer_window(scores: Mapping[int, torch.Tensor], width: int) -> list[int]:
    """The ``width`` consecutive layers (among those scored) whose units carry the most total |score|."""
    totals = {layer: float(scores[layer].abs().sum()) for layer in scores}
    return max(_consecutive(list(scores), width), key=lambda w: sum(totals[layer] for layer in w))


# ----------------------------------------------------------------------------- 3. scoring units


def unit_scores(
    model: HookedTransformer,
    task: GreaterThan,
    prompts: pd.DataFrame,
    means: MeanActs,
    transcoders: Mapping[int, Any] | None = None,
    clean: CleanRun | None = None,
) -> dict[int, torch.Tensor]:
    """Per unit ([units] per layer): mean over prompts of |sum over positions of (a - mean a) x
    gradient of the probability difference|, the first-order effect of mean-ablating it. Units are
    transcoder features (transcoders spliced, sinks real) or, without transcoders, the MLP neurons of
    the layers in ``means``. With ``clean`` the run starts at the first of those layers."""
    tokens, sinks, start = run_start(model, prompts.prompt, clean, min(means))
    store: dict[int, torch.Tensor] = {}

    def keep_grad(act: torch.Tensor, layer: int) -> torch.Tensor:
        act.retain_grad()
        store[layer] = act
        return act

    if transcoders is not None:
        T.require_no_skip(transcoders, "first-order ablation effects")
        spliced = {
            Sublayer(layer, "mlp"): (lambda x, real, tc=tc, layer=layer: tc.decode(keep_grad(tc.encode(x), layer)))
            for layer, tc in transcoders.items()
        }
        edits = hooks.replace_writes(spliced, keep_real=sinks)
    else:
        edits = [(hooks.mlp_post(layer), lambda act, hook, layer=layer: keep_grad(act, layer)) for layer in means]
    with torch.enable_grad():
        last = torch.full((len(tokens),), tokens.shape[1] - 1)
        probs = logits_at(model, tokens, last, edits, start).softmax(-1)[:, list(task.answer_ids)]
        task.probability_difference(probs.cpu(), prompts).mean().backward()
    return {
        layer: ((a - means[layer].to(a)) * a.grad).sum(1).abs().mean(0).detach().cpu()
        for layer, a in store.items()
    }


def top_units(scores: Mapping[int, torch.Tensor], k: int) -> dict[int, torch.Tensor]:
    """The ``k`` units with the largest |score| across all layers, as layer -> unit ids."""
    flat = torch.cat([s.abs() for s in scores.values()])
    layers = torch.cat([torch.full_like(s, layer, dtype=torch.long) for layer, s in scores.items()])
    units = torch.cat([torch.arange(len(s)) for s in scores.values()])
    top = torch.topk(flat, min(k, len(flat))).indices
    return {layer: units[top][layers[top] == layer] for layer in scores}


def random_units(scores: Mapping[int, torch.Tensor], k: int, seed: int = 0) -> dict[int, torch.Tensor]:
    """``k`` units drawn uniformly from all scored units (the chance baseline for ``top_units``)."""
    sizes = {layer: len(s) for layer, s in scores.items()}
    flat = torch.randperm(sum(sizes.values()), generator=torch.Generator().manual_seed(seed))[:k]
    out, start = {}, 0
    for layer, n in sizes.items():
        out[layer] = flat[(flat >= start) & (flat < start + n)] - start
        start += n
    return out


# ----------------------------------------------------------------------------- 4. a circuit of k units


def _keep_mask(n_units: int, ids: torch.Tensor | None) -> torch.Tensor:
    mask = torch.zeros(n_units, dtype=torch.bool)
    if ids is not None:
        mask[ids] = True
    return mask


def features_kept(
    transcoders: Mapping[int, Any], means: MeanActs, keep: Mapping[int, torch.Tensor]
) -> dict[int, Replacement]:
    """Replacements splicing each transcoder with only ``keep[layer]`` features at their real
    activation and every other feature at its mean over prompts (mean-ablation)."""
    T.require_no_skip(transcoders, "mean-ablating features")
    out = {}
    for layer, tc in transcoders.items():
        mask = _keep_mask(tc.W_enc.shape[1], keep.get(layer))

        def predict(x: torch.Tensor, real: torch.Tensor, tc=tc, mask=mask, mean=means[layer]) -> torch.Tensor:
            acts = tc.encode(x)
            return tc.decode(torch.where(mask.to(acts.device), acts, mean.to(acts).expand_as(acts)))

        out[layer] = predict
    return out


def neurons_kept(means: MeanActs, keep: Mapping[int, torch.Tensor]) -> FwdHooks:
    """Hooks keeping only ``keep[layer]`` MLP neurons (post-activation) of each layer in ``means``
    at their real value and every other neuron at its mean over prompts (mean-ablation)."""
    edits: FwdHooks = []
    for layer, mean in means.items():
        mask = _keep_mask(mean.shape[-1], keep.get(layer))

        def patch(act: torch.Tensor, hook, mask=mask, mean=mean) -> torch.Tensor:
            return torch.where(mask.to(act.device), act, mean.to(act).expand_as(act))

        edits.append((hooks.mlp_post(layer), patch))
    return edits


# ----------------------------------------------------------------------------- 5. precision at k


def precision_at_k(
    model: HookedTransformer,
    task: GreaterThan,
    prompts: pd.DataFrame,
    units: Mapping[int, torch.Tensor],
    ablate_one: Callable[[int, int], Edit],
    min_effect: float,
    baseline: Edit = ({}, ()),
) -> float:
    """Share of ``units`` (layer -> ids) whose mean-ablation alone moves the mean probability
    difference by at least ``min_effect`` from the ``baseline`` model ((replacements, hooks): the
    spliced model for transcoder features, the real one for neurons); ``ablate_one(layer, unit)``
    gives the (replacements, hooks) of the baseline with that one unit mean-ablated."""
    run = clean_run(model, prompts.prompt)
    before = mean_prob_diff(model, task, prompts, *baseline, clean=run)
    flags = []
    for layer, ids in units.items():
        for unit in ids.tolist():
            value = mean_prob_diff(model, task, prompts, *ablate_one(layer, unit), clean=run)
            flags.append(abs(before - value) >= min_effect)
    return float(np.mean(flags)) if flags else float("nan")


def feature_ablator(transcoders: Mapping[int, Any], means: MeanActs) -> Callable[[int, int], Edit]:
    """For ``precision_at_k``: (layer, feature) -> replacements splicing ``transcoders`` with only
    that feature mean-ablated."""

    def ablate(layer: int, unit: int) -> Edit:
        keep = {}
        for other, tc in transcoders.items():
            ids = torch.arange(tc.W_enc.shape[1])
            keep[other] = ids[ids != unit] if other == layer else ids
        return features_kept(transcoders, means, keep), ()

    return ablate


def neuron_ablator(means: MeanActs) -> Callable[[int, int], Edit]:
    """For ``precision_at_k``: (layer, neuron) -> hooks mean-ablating only that MLP neuron."""

    def ablate(layer: int, unit: int) -> Edit:
        ids = torch.arange(means[layer].shape[-1])
        return {}, neurons_kept({layer: means[layer]}, {layer: ids[ids != unit]})

    return ablate
