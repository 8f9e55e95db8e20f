"""Judging a transcoder (Dunefsky, Chlenski & Nanda 2024): sparsity and faithfulness, against an SAE.

The paper compares transcoders with SAEs on two axes: sparsity (L0, active features per token) and
faithfulness (the model's next-token loss with the MLP replaced by the dictionary), and plots the
Pareto frontier of the two. Here every number is on non-sink tokens, and a spliced model keeps the
real MLP write at attention sinks.

* what each kind of dictionary replaces an MLP's write with, as ``utils.hooks`` replacements
  ``fn(MLP input, real write)``: a transcoder's prediction, optionally with only some features kept
  (``transcoder_fn``), an SAE's reconstruction of the write (``sae_fn``), zeros (``zero_fn``);
  ``replace_mlps`` turns {layer: fn} into hooks (``utils.hooks.replace_writes``);
* the validation set, run once (residual inputs, MLP inputs and writes, clean probabilities) ->
  ``EvalSet``, ``eval_set``;
* spliced CE and KL(clean || spliced), run from the first replaced layer on -> ``replaced_losses``;
* L0, FVU, CE increase, KL, fraction of CE recovered against zero-ablation, dead and dense features
  -> ``dictionary_metrics`` (with ``ce_baselines``, ``fvu``, ``fraction_recovered``, ``feature_acts``);
  per layer and with every layer spliced at once -> ``layer_quality``, with bootstrap intervals over
  evaluation sequences of its median recovered fraction and all-spliced CE increase -> ``quality_intervals``;
* how often each feature fires over many more held-out tokens than the CE metrics can afford, streamed
  (a feature that never fires there is dead) -> ``firing_rates``;
* the Pareto comparison: ``pareto_points``, and the CE gap at matched L0 (``matched_l0_gap``,
  ``matched_l0_count``, ``overlap_counts``) with its bootstrap interval over evaluation sequences
  (``matched_l0_interval``, from ``replaced_losses(..., per_sequence=True)``).

Public names: ``Replacement``, ``transcoder_fn``, ``sae_fn``, ``zero_fn``, ``dictionary_fn``,
``replace_mlps``, ``EvalSet``, ``eval_set``, ``dictionary_input``, ``replaced_losses``,
``feature_acts``, ``fvu``, ``fraction_recovered``, ``ce_baselines``, ``dictionary_metrics``,
``layer_quality``, ``quality_intervals``, ``firing_rates``, ``pareto_points``, ``matched_l0_gap``, ``matched_l0_count``, ``overlap_counts``,
``matched_l0_interval``, ``DENSE_THRESHOLD``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from utils import hooks
from utils.hooks import FwdHooks, Replacement
from utils.stats import CONFIDENCE, N_BOOTSTRAP, Interval, bootstrap_interval
from utils.sublayers import Sublayer
from utils.transcoders.activations import stream_activations
from utils.transcoders.model import mlp_hooks, prediction
from utils.transcoders.sinks import model_sinks, sink_hook

__all__ = [
    "DENSE_THRESHOLD",
    "EvalSet",
    "Replacement",
    "ce_baselines",
    "dictionary_fn",
    "dictionary_input",
    "dictionary_metrics",
    "eval_set",
    "feature_acts",
    "firing_rates",
    "fraction_recovered",
    "fvu",
    "layer_quality",
    "matched_l0_count",
    "matched_l0_gap",
    "matched_l0_interval",
    "overlap_counts",
    "pareto_points",
    "quality_intervals",
    "replace_mlps",
    "replaced_losses",
    "sae_fn",
    "transcoder_fn",
    "zero_fn",
]

DENSE_THRESHOLD = 0.1  # a feature active on more than this fraction of tokens is "dense"


# ----------------------------------------------------------------------------- replacing an MLP


def transcoder_fn(transcoder: Any, keep: torch.Tensor | None = None, forward: Callable | None = None) -> Replacement:
    """A replacement predicting the MLP write with ``transcoder``; with ``keep`` (a [d_sae] bool
    mask) only those features stay active (the output bias and a skip path are kept). ``forward(x, W_enc, b_enc,
    b_pre, W_dec, b_dec) -> (acts, pred)``, if given, computes the prediction instead (a learner's own)."""
    if forward is not None and keep is not None:
        raise ValueError("give keep or forward, not both")

    def predict(x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        if forward is not None:  # sae-lens's exported Transcoder has no input centre: b_pre = 0
            t = transcoder
            b_pre = getattr(t, "b_pre", None)
            b_pre = torch.zeros_like(t.W_enc[:, 0]) if b_pre is None else b_pre
            return forward(x, t.W_enc, t.b_enc, b_pre, t.W_dec, t.b_dec)[1]
        acts = transcoder.encode(x)
        return prediction(transcoder, x, acts if keep is None else acts * keep.to(acts.device))

    return predict


def sae_fn(sae: Any) -> Replacement:
    """A replacement by an SAE's reconstruction of the real MLP write."""
    return lambda x, real: sae.decode(sae.encode(real))


def zero_fn(x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """A replacement by zeros (zero-ablation), [..., d] like the real write."""
    return torch.zeros_like(real)


def dictionary_fn(dictionary: Any, kind: str) -> Replacement:
    """The replacement a dictionary of ``kind`` ('transcoder' or 'sae') makes."""
    if kind == "transcoder":
        return transcoder_fn(dictionary)
    if kind == "sae":
        return sae_fn(dictionary)
    raise ValueError(f"kind must be 'transcoder' or 'sae', got {kind!r}")


def replace_mlps(replacements: Mapping[int, Replacement], sinks: torch.Tensor | None = None) -> FwdHooks:
    """Hooks replacing MLP ``layer``'s write by ``fn(its normalised input, its real write)`` for each
    (layer, fn) of ``replacements``; at ``sinks`` ([batch, pos] True) the real write stays.
    ``utils.hooks.replace_writes`` with the MLPs named by layer."""
    return hooks.replace_writes(
        {Sublayer(layer, "mlp"): fn for layer, fn in replacements.items()}, keep_real=sinks
    )


# ----------------------------------------------------------------------------- the validation set


@dataclass
class EvalSet:
    """Validation tokens and what the model computes on them (kept in RAM; small).

    ``resid_pre`` / ``x`` / ``y`` hold each layer's input residual stream [batch, pos, d] and the
    MLP's normalised input and write [n_tokens, d] (every token, in ``tokens``' flattened order);
    ``keep`` [n_tokens] is False at attention sinks, which every metric leaves out.
    ``clean_probs`` [batch, pos - 1, vocab] (float32) are the unmodified model's next-token
    probabilities and ``clean_neg_entropy`` [batch, pos - 1] their sum of p log p, for KL;
    ``clean_ce`` is its mean next-token cross-entropy and ``clean_ce_per_sequence`` [n_sequences]
    (numpy) each sequence's, the units a bootstrap resamples.
    """

    tokens: torch.Tensor
    sinks: torch.Tensor  # [batch, pos]
    resid_pre: dict[int, torch.Tensor]
    x: dict[int, torch.Tensor]
    y: dict[int, torch.Tensor]
    clean_probs: torch.Tensor
    clean_neg_entropy: torch.Tensor
    clean_ce: float
    clean_ce_per_sequence: np.ndarray
    zero_ablated: dict[int, dict[str, float]] = field(default_factory=dict, repr=False)  # ce_baselines' runs, per layer

    @property
    def keep(self) -> torch.Tensor:
        """[n_tokens] True where a token is not an attention sink."""
        return ~self.sinks.reshape(-1)


@torch.no_grad()
def eval_set(
    model: HookedTransformer,
    layers: Sequence[int],
    token_batches: Iterable[torch.Tensor],
) -> EvalSet:
    """Run validation batches ([batch, pos] each) once and keep, for each of ``layers``, its residual
    input and its MLP's input and output, plus the clean next-token probabilities and their sum of
    p log p."""
    names = [n for layer in layers for n in (hooks.resid_pre(layer), *mlp_hooks(layer))]
    sink_name = sink_hook(model)
    parts: dict[str, list[torch.Tensor]] = {n: [] for n in ["tokens", "sinks", "probs", "neg_entropy", *names]}
    sequence_ce: list[np.ndarray] = []
    total_ce, count = 0.0, 0
    for tokens in token_batches:
        tokens = tokens.to(model.cfg.device)
        logits, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names or n == sink_name)
        logprobs = logits[:, :-1].float().log_softmax(-1)
        token_ce = -logprobs.gather(-1, tokens[:, 1:, None])[..., 0]
        total_ce += float(token_ce.sum())
        sequence_ce.append(token_ce.double().mean(-1).cpu().numpy())
        count += tokens[:, 1:].numel()
        probs = logprobs.exp()
        parts["tokens"].append(tokens)
        parts["sinks"].append(model_sinks(model, tokens, cache[sink_name]))
        parts["probs"].append(probs)
        parts["neg_entropy"].append(torch.einsum("btv,btv->bt", probs, logprobs))
        for n in names:
            parts[n].append(cache[n])
    cat = {n: torch.cat(v) for n, v in parts.items()}
    d = model.cfg.d_model
    return EvalSet(
        tokens=cat["tokens"],
        sinks=cat["sinks"],
        resid_pre={layer: cat[hooks.resid_pre(layer)] for layer in layers},
        x={layer: cat[mlp_hooks(layer)[0]].reshape(-1, d) for layer in layers},
        y={layer: cat[mlp_hooks(layer)[1]].reshape(-1, d) for layer in layers},
        clean_probs=cat["probs"],
        clean_neg_entropy=cat["neg_entropy"],
        clean_ce=total_ce / count,
        clean_ce_per_sequence=np.concatenate(sequence_ce),
    )


def dictionary_input(ev: EvalSet, layer: int, kind: str) -> torch.Tensor:
    """What a dictionary of ``kind`` reads, [n_tokens, d]: the MLP input (transcoder) or the MLP
    output (SAE)."""
    return ev.x[layer] if kind == "transcoder" else ev.y[layer]


# ----------------------------------------------------------------------------- faithfulness and sparsity


@torch.no_grad()
def replaced_losses(
    model: HookedTransformer,
    ev: EvalSet,
    replacements: Mapping[int, Replacement] | None = None,
    batch_size: int = 16,
    per_sequence: bool = False,
) -> dict[str, Any]:
    """Mean next-token CE and KL(clean || replaced) per token on ``ev`` with MLP writes replaced
    (at non-sink positions), running only the layers from the first replaced one (from its cached
    residual stream). With ``per_sequence``, also 'ce_per_sequence': each sequence's mean CE
    [n_sequences] (numpy), the units a bootstrap resamples."""
    replacements = replacements or {}
    start = min(replacements, default=min(ev.resid_pre))
    total_ce, total_kl, count = 0.0, 0.0, 0
    sequences: list[np.ndarray] = []
    for lo in range(0, len(ev.tokens), batch_size):
        tokens = ev.tokens[lo : lo + batch_size]
        fwd = replace_mlps(replacements, ev.sinks[lo : lo + batch_size])
        logits = hooks.run(model, ev.resid_pre[start][lo : lo + batch_size], fwd, start_at_layer=start)
        logprobs = logits[:, :-1].float().log_softmax(-1)
        token_ce = -logprobs.gather(-1, tokens[:, 1:, None].to(logprobs.device))[..., 0]
        total_ce += float(token_ce.sum())
        sequences.append(token_ce.double().mean(-1).cpu().numpy())
        # KL(p || q) = sum p log p - sum p log q, one dot product per token
        cross = torch.einsum("btv,btv->bt", ev.clean_probs[lo : lo + batch_size].to(logprobs.device), logprobs)
        total_kl += float((ev.clean_neg_entropy[lo : lo + batch_size].to(logprobs.device) - cross).double().sum())
        count += tokens[:, 1:].numel()
    losses: dict[str, Any] = {"ce": total_ce / count, "kl": total_kl / count}
    if per_sequence:
        losses["ce_per_sequence"] = np.concatenate(sequences)
    return losses


@torch.no_grad()
def feature_acts(dictionary: Any, inputs: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Feature activations [n_tokens, d_sae] of any dictionary with ``encode``, from ``inputs`` [n_tokens, d]."""
    return torch.cat(
        [dictionary.encode(inputs[i : i + batch_size]) for i in range(0, len(inputs), batch_size)]
    )


@torch.no_grad()
def firing_rates(
    model: HookedTransformer, dictionaries: Mapping[int, Any], token_batches: Iterable[torch.Tensor]
) -> tuple[dict[int, torch.Tensor], int]:
    """({layer: the fraction of non-sink tokens each feature [d_sae] is active on}, how many tokens):
    one streamed forward pass per batch [batch, pos] feeds every layer's dictionary (``encode`` of
    the MLP input), so nothing beyond a batch's activations is held."""
    counts = {layer: torch.zeros(d.W_enc.shape[1], dtype=torch.long) for layer, d in dictionaries.items()}
    n_tokens = 0
    for _, sinks, pairs in stream_activations(model, list(dictionaries), token_batches):
        keep = ~sinks
        for layer, (x, _) in pairs.items():
            counts[layer] += (dictionaries[layer].encode(x[keep]) > 0).sum(0).cpu()
        n_tokens += int(keep.sum())
    if n_tokens == 0:
        raise ValueError("no non-sink tokens to count features on: give firing_rates more text")
    return {layer: count.double() / n_tokens for layer, count in counts.items()}, n_tokens


def fvu(y: torch.Tensor, recon: torch.Tensor) -> float:
    """Fraction of the variance of ``y`` [n, d] that ``recon`` [n, d] leaves unexplained."""
    return float((y - recon).pow(2).sum() / (y - y.mean(0)).pow(2).sum())


def fraction_recovered(ce: float, clean_ce: float, zero_ce: float) -> float:
    """(zero-ablation CE - CE) / (zero-ablation CE - clean CE): 1 = as good as the MLP, 0 = as bad as no MLP."""
    gap = zero_ce - clean_ce
    return float("nan") if abs(gap) < 1e-12 else (zero_ce - ce) / gap


def ce_baselines(model: HookedTransformer, ev: EvalSet, layer: int) -> dict[str, float]:
    """Clean CE and CE with MLP ``layer`` zero-ablated at non-sink positions (and that KL); the
    zero-ablated run of ``model`` (the one ``ev`` was made with, with its CE per sequence) is kept
    on ``ev`` for later calls."""
    if layer not in ev.zero_ablated:
        ev.zero_ablated[layer] = replaced_losses(model, ev, {layer: zero_fn}, per_sequence=True)
    zero = ev.zero_ablated[layer]
    return {"clean": ev.clean_ce, "zero": zero["ce"], "zero_kl": zero["kl"]}


@torch.no_grad()
def dictionary_metrics(
    model: HookedTransformer,
    ev: EvalSet,
    layer: int,
    dictionary: Any,
    kind: str,
    baselines: Mapping[str, float],
    per_sequence: bool = False,
) -> dict[str, Any]:
    """On non-sink tokens: L0, FVU, spliced CE and KL, CE increase over clean (nats), fraction of CE
    recovered vs zero-ablation, dead and dense fractions. ``baselines``: 'clean' and 'zero' CE.
    With ``per_sequence``, also each sequence's spliced CE ('ce_per_sequence', see
    ``replaced_losses``)."""
    keep = ev.keep
    inputs = dictionary_input(ev, layer, kind)
    acts = feature_acts(dictionary, inputs)[keep]
    losses = replaced_losses(
        model, ev, {layer: dictionary_fn(dictionary, kind)}, per_sequence=per_sequence
    )
    freq = (acts > 0).float().mean(0)
    extra = {"ce_per_sequence": losses["ce_per_sequence"]} if per_sequence else {}
    return {
        "l0": float((acts > 0).sum(-1).float().mean()),
        "fvu": fvu(ev.y[layer][keep], prediction(dictionary, inputs[keep], acts) if kind == "transcoder"
                   else dictionary.decode(acts)),
        "ce_loss": losses["ce"],
        "delta_ce": losses["ce"] - baselines["clean"],
        "kl": losses["kl"],
        "frac_recovered": fraction_recovered(losses["ce"], baselines["clean"], baselines["zero"]),
        "dead_frac": float((freq == 0).float().mean()),
        "dense_frac": float((freq > DENSE_THRESHOLD).float().mean()),
        **extra,
    }


@torch.no_grad()
def layer_quality(
    model: HookedTransformer, transcoders: Mapping[int, Any], ev: EvalSet, per_sequence: bool = False
) -> tuple[pd.DataFrame, dict]:
    """Per layer, on non-sink tokens: L0, FVU, dead fraction, CE increase and KL with that one MLP
    spliced, the same for zero-ablating it, and the fraction recovered; plus the totals for the
    clean model, every transcoder spliced at once and all those MLPs zero-ablated. With
    ``per_sequence``, the totals also hold 'per_sequence', each sequence's CE from those same runs
    (what ``quality_intervals`` resamples)."""
    rows, alone = [], []
    for layer, tc in tqdm(transcoders.items(), desc="per-layer quality"):
        base = ce_baselines(model, ev, layer)
        metrics = dictionary_metrics(model, ev, layer, tc, "transcoder", base, per_sequence=per_sequence)
        if per_sequence:
            alone.append(metrics.pop("ce_per_sequence"))
        rows.append(
            {"layer": layer, **metrics, "zero_delta_ce": base["zero"] - base["clean"], "zero_kl": base["zero_kl"]}
        )
    clean = ev.clean_ce
    spliced = replaced_losses(
        model, ev, {layer: transcoder_fn(tc) for layer, tc in transcoders.items()}, per_sequence=per_sequence
    )
    zeroed = replaced_losses(model, ev, dict.fromkeys(transcoders, zero_fn))
    totals: dict[str, Any] = {
        "clean": clean,
        "all_spliced": spliced["ce"],
        "all_spliced_kl": spliced["kl"],
        "all_zero_ablated": zeroed["ce"],
        "all_zero_ablated_kl": zeroed["kl"],
        "all_spliced_recovered": fraction_recovered(spliced["ce"], clean, zeroed["ce"]),
    }
    if per_sequence:
        totals["per_sequence"] = {
            "clean": ev.clean_ce_per_sequence,  # [sequences]
            "alone": np.stack(alone),  # [layers, sequences]: each transcoder spliced alone
            "zero": np.stack([ev.zero_ablated[layer]["ce_per_sequence"] for layer in transcoders]),
            "all_spliced": spliced["ce_per_sequence"],
        }
    return pd.DataFrame(rows), totals


def quality_intervals(per_sequence: Mapping[str, np.ndarray], seed: int = 0) -> dict[str, Interval]:
    """Bootstrap intervals over the evaluation sequences of ``layer_quality``'s two summaries, from
    its totals' 'per_sequence' CEs: 'median_recovered', the median over layers of the fraction of
    the loss each transcoder recovers spliced alone, and 'all_spliced_delta_ce', the CE increase with
    every transcoder spliced at once. Each draw resamples the sequences once and recomputes every
    clean, spliced and zero-ablated CE from it; n is the sequence count."""
    clean, alone, zero, together = (
        np.asarray(per_sequence[key]) for key in ("clean", "alone", "zero", "all_spliced")
    )

    def median_recovered(draw: np.ndarray) -> float:
        rows = draw.astype(int)
        gap = zero[:, rows].mean(-1) - clean[rows].mean()
        recovered = (zero[:, rows].mean(-1) - alone[:, rows].mean(-1)) / np.where(np.abs(gap) < 1e-12, np.nan, gap)
        return float(np.nanmedian(recovered))

    def delta_ce(draw: np.ndarray) -> float:
        rows = draw.astype(int)
        return float(together[rows].mean() - clean[rows].mean())

    units = np.arange(len(clean))
    return {"median_recovered": bootstrap_interval(units, median_recovered, seed=seed),
            "all_spliced_delta_ce": bootstrap_interval(units, delta_ce, seed=seed)}


# ----------------------------------------------------------------------------- the Pareto comparison


def pareto_points(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of a sweep table (columns kind, l0, ce_loss) not beaten on both L0 and CE by a row of
    the same kind."""
    keep = []
    for _, row in table.iterrows():
        same = table[table.kind == row.kind]
        beaten = ((same.l0 <= row.l0) & (same.ce_loss < row.ce_loss)) | (
            (same.l0 < row.l0) & (same.ce_loss <= row.ce_loss)
        )
        keep.append(not beaten.any())
    return table[keep]


def _inside_sae_range(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    tc = table[table.kind == "transcoder"].sort_values("l0")
    sae = table[table.kind == "sae"].sort_values("l0")
    return tc[(tc.l0 >= sae.l0.min()) & (tc.l0 <= sae.l0.max())], sae


def matched_l0_count(table: pd.DataFrame) -> int:
    """How many transcoders of a sweep table lie inside the SAEs' L0 range (the n of the matched-L0 gap)."""
    inside, sae = _inside_sae_range(table)
    return len(inside) if len(sae) >= 2 else 0


def matched_l0_gap(table: pd.DataFrame) -> float:
    """Mean CE(transcoder) - CE(SAE), interpolating the SAE curve (log L0) at the transcoders' L0s
    inside the SAEs' L0 range; NaN when the ranges do not overlap."""
    inside, sae = _inside_sae_range(table)
    if len(sae) < 2 or inside.empty:
        return float("nan")
    sae_ce = np.interp(np.log(inside.l0), np.log(sae.l0), sae.ce_loss)
    return float(np.mean(inside.ce_loss.to_numpy() - sae_ce))


def overlap_counts(table: pd.DataFrame) -> dict[str, int]:
    """How many points each curve of a sweep table has, and how many lie inside the other kind's L0
    range: 'transcoders', 'saes', 'transcoders_inside' (the n of the matched-L0 gap), 'saes_inside'."""
    tc = table[table.kind == "transcoder"]
    sae = table[table.kind == "sae"]
    inside = lambda a, b: int(((a.l0 >= b.l0.min()) & (a.l0 <= b.l0.max())).sum())  # noqa: E731
    return {
        "transcoders": len(tc),
        "saes": len(sae),
        "transcoders_inside": inside(tc, sae) if len(sae) >= 2 else 0,
        "saes_inside": inside(sae, tc) if len(tc) >= 2 else 0,
    }


def matched_l0_interval(
    table: pd.DataFrame,
    ce_per_sequence: Sequence[np.ndarray],
    level: float = CONFIDENCE,
    n_boot: int = N_BOOTSTRAP,
    seed: int = 0,
) -> Interval | None:
    """Percentile bootstrap interval of ``matched_l0_gap`` over evaluation sequences.

    ``ce_per_sequence[i]`` [n_sequences] is row i's spliced CE per sequence (the same sequences for
    every row); each draw resamples the sequences, recomputes every row's CE and the gap at the
    rows' fixed L0s. None when the curves do not overlap. The interval's n is the sequence count.
    """
    if np.isnan(matched_l0_gap(table)):
        return None
    per_row = np.stack([np.asarray(c, dtype=float) for c in ce_per_sequence])  # [rows, n_seq]
    if per_row.shape[0] != len(table):
        raise ValueError(f"need one CE array per table row: {per_row.shape[0]} for {len(table)} rows")
    draws = np.random.default_rng(seed).integers(0, per_row.shape[1], (n_boot, per_row.shape[1]))
    resampled = table.reset_index(drop=True).copy()
    boot = []
    for draw in draws:
        resampled["ce_loss"] = per_row[:, draw].mean(-1)
        boot.append(matched_l0_gap(resampled))
    resampled["ce_loss"] = per_row.mean(-1)
    tail = (1 - level) / 2
    low, high = np.quantile(boot, [tail, 1 - tail])
    return Interval(matched_l0_gap(resampled), float(low), float(high), per_row.shape[1], level)
