"""Notebook 03's report: its verdict rules, tables and figures, built from the computed numbers.

Not the paper's method (the rest of ``utils.circuits``): how notebook 03 turns its numbers into
rows of ``utils.verdicts`` and figures whose titles come from the same numbers.

* ``splice_verdict`` / ``recovered_verdict``: the two transcoder-quality claims judged by the bootstrap
  intervals over evaluation sequences (``utils.transcoders.quality_intervals``) against the issue's levels.
* ``window_verdict`` / ``window_title``: whether the features-vs-neurons test applies (the window's
  joint mean-ablation lowers the probability difference by at least ``min_effect``), and the
  window figure's title from the same numbers.
* ``features_vs_neurons``: the verdict on top-k features vs top-k neurons over circuit sizes.
* ``quality_table``: the per-layer table on human held-out text with the model-written values beside.
* ``feature_digit_scores`` / ``plot_feature_digits``: each top feature's de-embedding and logit
  effect over the answer tokens, two panels with their own diverging scales centred at 0.
* ``plot_window_effects``: each window's joint mean-ablation effect, the chosen window marked.
* ``feature_labels``: a short computed label per feature, from its top de-embedded tokens (what it
  reads straight from the embeddings) and its top logit-effect tokens (what it writes).
* ``circuit_key``: the feature nodes a circuit figure shows, with those labels, as a key below it.
* ``later_minus_earlier`` / ``greater_than_account``: which heads and features carry the comparison,
  each feature's logit effect on later vs earlier years, set against Hanna et al.'s GPT-2 account.
* ``plot_layer_quality``: L0, FVU and loss recovered per layer, human prose and the model's own text.
* ``plot_l1_sweep`` / ``live_vs_shipped``: the notebook's own L1 sweep (recovered against L0), with the
  shipped transcoders of the same layers beside it when they were loaded, and the sentence comparing them.
* ``plot_top_k``: top-k features vs top-k neurons, titled by their verdict.

Public names: ``OWN_TEXT``, ``MIN_WINDOW_EFFECT``, ``MAX_SPLICED_DELTA_CE``, ``MIN_RECOVERED``, ``splice_verdict``,
``recovered_verdict``, ``window_verdict``, ``window_title``,
``features_vs_neurons``, ``quality_table``, ``feature_digit_scores``, ``plot_feature_digits``,
``plot_window_effects``, ``plot_layer_quality``, ``plot_l1_sweep``, ``live_vs_shipped``, ``plot_top_k``, ``feature_labels``, ``circuit_key``,
``HANNA_ACCOUNT``, ``later_minus_earlier``, ``greater_than_account``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from transformer_lens import HookedTransformer

from utils import stats, verdicts
from utils import transcoders as T
from utils.plotting import drawable, label, new_figure

__all__ = [
    "HANNA_ACCOUNT",
    "MAX_SPLICED_DELTA_CE",
    "MIN_RECOVERED",
    "MIN_WINDOW_EFFECT",
    "OWN_TEXT",
    "circuit_key",
    "feature_digit_scores",
    "feature_labels",
    "features_vs_neurons",
    "greater_than_account",
    "later_minus_earlier",
    "live_vs_shipped",
    "plot_feature_digits",
    "plot_l1_sweep",
    "plot_layer_quality",
    "plot_top_k",
    "plot_window_effects",
    "quality_table",
    "recovered_verdict",
    "splice_verdict",
    "window_title",
    "window_verdict",
]

OWN_TEXT = "on the model's own text"  # the label of every model-written comparison value
MIN_WINDOW_EFFECT = 0.05  # the fall a window's mean-ablation must cause for features vs neurons to apply
MAX_SPLICED_DELTA_CE = 1.0  # nats: "a moderate loss cost" with every MLP replaced (issue 29's level)
MIN_RECOVERED = 0.8  # "most of its MLP's loss contribution": the median layer's fraction recovered
MIN_SEQUENCES = 5  # evaluation sequences a quality interval needs
HANNA_ACCOUNT = ("Hanna et al.'s GPT-2 account (heads attend to the start year and move it to the last "
                 "position, where MLP features boost years later than it)")
QUALITY_COLUMNS = {"l0": "L0", "fvu": "FVU", "frac_recovered": "recovered", "delta_ce": "ΔCE",
                   "kl": "KL", "dead_frac": "dead"}


def splice_verdict(delta_ce: stats.Interval) -> verdicts.Verdict:
    """*holds* when the interval of the CE increase with every transcoder spliced lies below
    ``MAX_SPLICED_DELTA_CE``, *opposite* when above it, else *within noise*."""
    return verdicts.from_interval(delta_ce, "fall", min_n=MIN_SEQUENCES, null=MAX_SPLICED_DELTA_CE)


def recovered_verdict(recovered: stats.Interval, median_l0: float, max_l0: float) -> verdicts.Verdict:
    """*opposite* when the median L0 exceeds ``max_l0`` (not the paper's sparsity), else the verdict of the
    interval of the median fraction recovered against ``MIN_RECOVERED``."""
    if median_l0 > max_l0:
        return verdicts.Verdict(verdicts.OPPOSITE, recovered.n, recovered,
                                f"median L0 {median_l0:.0f} is above {max_l0:g}")
    return verdicts.from_interval(recovered, "rise", min_n=MIN_SEQUENCES, null=MIN_RECOVERED)


def window_verdict(
    joint_effect: float, window: Sequence[int], min_effect: float = MIN_WINDOW_EFFECT
) -> verdicts.Verdict | None:
    """*not testable here* (with the reason) unless mean-ablating ``window`` at once lowers the mean
    probability difference by at least ``min_effect``; None when the test applies."""
    if joint_effect >= min_effect:
        return None
    name = f"layers {window[0]}-{window[-1]}"
    if joint_effect > 0:
        what = f"the largest is {name}, fall {joint_effect:.3f}"
    else:
        what = f"no fall: every window's ablation raises it, {name} least (rise {-joint_effect:.3f})"
    return verdicts.not_testable(
        f"no window of {len(window)} layers whose mean-ablation lowers the probability difference "
        f"by {min_effect:g} or more: {what}"
    )


def window_title(joint_effect: float, window: Sequence[int], min_effect: float = MIN_WINDOW_EFFECT) -> str:
    """The window figure's title, from the same numbers as ``window_verdict``."""
    name = f"layers {window[0]}-{window[-1]}"
    if joint_effect >= min_effect:
        return f"Mean-ablating {name} together lowers the probability difference most (fall {joint_effect:.3f})"
    if joint_effect > 0:
        return f"No window carries the task: the best, {name}, lowers it by only {joint_effect:.3f} (< {min_effect:g})"
    return f"No window carries the task: even the best, {name}, raises it (rise {-joint_effect:.3f})"


def features_vs_neurons(curve: pd.DataFrame, min_n: int, seed: int = 0) -> verdicts.Verdict:
    """Top-k features vs top-k neurons: the bootstrap interval of (features - neurons) over the
    circuit sizes k, judged for a rise (features carry more of the task at the same k)."""
    refused = verdicts.too_few(len(curve), min_n)
    if refused:
        return refused
    difference = stats.paired_difference(curve.neurons.to_numpy(), curve.features.to_numpy(), seed=seed)
    return verdicts.from_interval(difference, "rise", min_n)


def quality_table(prose: pd.DataFrame, own: pd.DataFrame) -> pd.DataFrame:
    """Per layer: L0, FVU, recovered, ΔCE, KL and dead share on human held-out text, with FVU and
    recovered on the model's own text beside them (``layer_quality`` frames)."""
    table = prose[["layer", *QUALITY_COLUMNS]].rename(columns=QUALITY_COLUMNS)
    beside = own[["layer", "fvu", "frac_recovered"]].rename(
        columns={"fvu": f"FVU {OWN_TEXT}", "frac_recovered": f"recovered {OWN_TEXT}"}
    )
    return table.merge(beside, on="layer", how="left")


def feature_digit_scores(
    model: HookedTransformer,
    transcoders: Mapping[int, Any],
    features: pd.DataFrame,
    answers: Sequence[int],
    labels: Sequence[str],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For each (layer, unit) row of ``features`` with a transcoder: its de-embedding over the
    answer tokens (embedding through the MLP's norm and encoder) and its logit effect on them
    (decoder row through the unembedding); two [feature, answer] frames indexed "L<layer>.F<unit>"."""
    emb = T.rms_embeddings(model)[list(answers)]
    de_emb, logit = {}, {}
    for r in features.itertuples():
        layer, unit = int(r.layer), int(r.unit)
        if layer in transcoders:
            tc = transcoders[layer]
            de_emb[f"L{layer}.F{unit}"] = (emb @ tc.W_enc[:, unit]).detach().numpy()
            logit[f"L{layer}.F{unit}"] = (tc.W_dec[unit] @ model.W_U[:, list(answers)]).detach().numpy()
    frame = lambda d: pd.DataFrame.from_dict(d, orient="index", columns=list(labels))  # noqa: E731
    return frame(de_emb), frame(logit)


def _diverging(ax: Axes, fig: Figure, scores: pd.DataFrame, title: str, bar: str) -> None:
    """One heatmap on its own scale, centred at 0 (white), with its colour bar."""
    values = scores.to_numpy(dtype=float)
    bound = float(np.abs(values).max()) if values.size else 1.0
    bound = bound or 1.0
    image = ax.imshow(values, aspect="auto", cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -bound, bound))
    step = max(len(scores.columns) // 10, 1)
    ax.set_xticks(range(0, len(scores.columns), step), list(scores.columns)[::step], fontsize=8)
    ax.set_yticks(range(len(scores.index)), list(scores.index))
    fig.colorbar(image, ax=ax, label=bar)
    label(ax, title, "answer token", "feature", legend=False)


def plot_feature_digits(de_emb: pd.DataFrame, logit: pd.DataFrame) -> Figure:
    """Two panels, each with its own diverging colour scale centred at 0 and a colour bar: the
    features' de-embeddings over the answers (left) and their logit effects on them (right)."""
    fig, axes = new_figure(ncols=2, width=13)
    _diverging(axes[0, 0], fig, de_emb, "What each feature reads: de-embedding", "encoder score")
    _diverging(axes[0, 1], fig, logit, "What each feature writes: logit effect", "logit per unit activation")
    fig.tight_layout()
    return fig


def plot_window_effects(ax: Axes, joint: pd.Series, window: Sequence[int], title: str) -> None:
    """One bar per window (at its first layer): the fall in mean probability difference when its
    MLPs are mean-ablated together (clean − ablated, so a rise is negative); the chosen one in orange."""
    colours = ["tab:orange" if first == window[0] else "tab:blue" for first in joint.index]
    ax.bar(joint.index, joint.values, color=colours)
    ax.axhline(0, color="0.5", linewidth=0.8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    label(ax, title, f"first layer of the {len(window)}-layer window",
          "fall in mean probability difference (clean − ablated)")


def plot_layer_quality(prose: pd.DataFrame, own: pd.DataFrame, max_l0: float) -> Figure:
    """L0, FVU and fraction of the loss recovered per layer (``layer_quality`` frames) on human
    held-out prose, with the model's own text dashed beside it where ``own`` has rows."""
    fig, axes = new_figure(ncols=3, width=15)
    panels = [("l0", "L0 (active features per token)", "{:.0f}"), ("fvu", "fraction of variance unexplained", "{:.2f}"),
              ("frac_recovered", "fraction of CE loss recovered", "{:.0%}")]
    for ax, (column, ylabel, fmt) in zip(axes[0], panels, strict=True):
        ax.plot(prose.layer, prose[column], marker="o", label="human prose (held out)")
        title = f"{QUALITY_COLUMNS[column]} per layer: median {fmt.format(prose[column].median())}"
        if len(own):
            ax.plot(own.layer, own[column], marker=".", linestyle="--", color="tab:gray", label=OWN_TEXT)
            title += f" ({fmt.format(own[column].median())} {OWN_TEXT})"
        label(ax, title, "layer (one MLP replaced)", ylabel)
    axes[0, 0].axhline(max_l0, color="k", linestyle=":")
    axes[0, 2].axhline(0.8, color="k", linestyle=":", label="80% target")
    axes[0, 2].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_l1_sweep(sweep: pd.DataFrame, max_l0: float, l1: float, shipped: pd.DataFrame | None = None) -> Figure:
    """Fraction of the loss recovered against L0 for each layer and l1 of the sweep (``l1`` chosen),
    and, where ``shipped`` (``layer_quality`` rows) has those layers, the shipped transcoders as stars."""
    fig, ax = new_figure()
    for layer, part in sweep.groupby("layer"):
        (line,) = ax.plot(part.l0, part.frac_recovered, marker="o", label=f"layer {layer}: trained here")
        for r in part.itertuples():
            ax.annotate(f"{r.l1:g}", (r.l0, r.frac_recovered), fontsize=8, xytext=(3, 3), textcoords="offset points")
        mine = shipped[shipped.layer == layer] if shipped is not None else sweep.iloc[:0]
        if len(mine):
            ax.scatter(mine.l0, mine.frac_recovered, marker="*", s=180, color=line.get_color(), edgecolor="k",
                       zorder=3, label=f"layer {layer}: shipped")
    ax.axvline(max_l0, color="k", linestyle=":", label=f"L0 = {max_l0:g}")
    ax.set_xscale("log")
    layers = sorted(int(layer) for layer in sweep.layer.unique())
    label(ax, f"L1 sweep on layers {layers}: chosen L1 = {l1:g}" + (" (stars: shipped)" if shipped is not None else ""),
          "L0 (active features per token, log scale)", "fraction of CE loss recovered (human prose)")
    return fig


def live_vs_shipped(live: pd.DataFrame, shipped: pd.DataFrame, shipped_recipe: str) -> str:
    """One sentence setting transcoders trained here (``live``: sweep rows at one l1) against the shipped
    ones of the same layers (``shipped``: ``layer_quality`` rows, trained by ``shipped_recipe``), on the
    same held-out tokens."""
    theirs = shipped.set_index("layer")
    parts = [f"layer {r.layer}: {r.frac_recovered:.0%} recovered at L0 {r.l0:.0f} (FVU {r.fvu:.2f}, "
             f"{r.dead_frac:.0%} dead) here vs {theirs.frac_recovered[r.layer]:.0%} at L0 "
             f"{theirs.l0[r.layer]:.0f} (FVU {theirs.fvu[r.layer]:.2f}, {theirs.dead_frac[r.layer]:.0%} dead) shipped"
             for r in live.itertuples() if r.layer in theirs.index]
    return (f"Trained here (L1-ReLU, l1 {live.l1.iloc[0]:g}) vs shipped ({shipped_recipe}), on held-out human "
            "prose: " + "; ".join(parts) + ".")


def plot_top_k(curve: pd.DataFrame, levels: Mapping[str, float], verdict: verdicts.Verdict) -> Figure:
    """The mean probability difference keeping the top-k features or neurons (``curve``: k,
    features, neurons), with reference ``levels`` as horizontal lines, titled by ``verdict``."""
    fig, ax = new_figure(width=9)
    ax.plot(curve.k, curve.features, marker="o", label="top-k transcoder features (rest mean-ablated)")
    ax.plot(curve.k, curve.neurons, marker="s", label="top-k MLP neurons (rest mean-ablated)")
    for (name, level), style in zip(levels.items(), ["--", ":", "-.", (0, (1, 3))], strict=False):
        ax.axhline(level, color="0.3", linestyle=style, label=name)
    ax.set_xscale("log")
    if verdict.interval is not None:
        found = f"features − neurons {verdict.interval.format(digits=3)} over {verdict.n} sizes: {verdict.word}"
    else:
        found = f"features vs neurons: {verdict.word}"
    label(ax, f"Top-k circuits, {found}", "k (units kept, log scale)", "mean probability difference")
    return fig


def _tokens(table: pd.DataFrame) -> str:
    return "|".join(drawable(repr(t.strip() or t)[1:-1]) for t in table.token)


def feature_labels(
    model: HookedTransformer, transcoders: Mapping[int, Any], features: pd.DataFrame, k: int = 3
) -> pd.Series:
    """For each (layer, unit) row of ``features``: "reads a|b|c → writes x|y|z", its ``k`` top
    de-embedded tokens and ``k`` top logit-effect tokens ("" where the layer has no transcoder)."""
    labels = []
    for r in features.itertuples():
        tc = transcoders.get(int(r.layer))
        if tc is None:
            labels.append("")
            continue
        reads = _tokens(T.de_embedding(model, tc, int(r.unit), k))
        writes = _tokens(T.logit_effect(model, tc, int(r.unit), k))
        labels.append(f"reads {reads} → writes {writes}")
    return pd.Series(labels, index=features.index, name="label")


def circuit_key(
    ax: Axes, model: HookedTransformer, transcoders: Mapping[int, Any], shown: pd.DataFrame
) -> pd.DataFrame:
    """Write, below a circuit figure, each shown feature node ("L<layer> F<unit>") with its
    ``feature_labels`` label; returns those nodes with their labels (layer, unit, label)."""
    nodes = shown[shown.kind == "feature"][["layer", "unit"]].astype(int).drop_duplicates()
    nodes = nodes.assign(label=feature_labels(model, transcoders, nodes)).reset_index(drop=True)
    lines = [f"L{r.layer} F{r.unit}: {r.label}" for r in nodes.itertuples()]
    ax.text(0.0, -0.16, "Features shown, " + ("; ".join(lines) if lines else "none"), transform=ax.transAxes,
            va="top", ha="left", fontsize=8, wrap=True)
    return nodes


def later_minus_earlier(logit: pd.DataFrame, sides: Sequence[tuple[Sequence[int], Sequence[int]]]) -> pd.Series:
    """Per feature (a row of ``logit``, the answers' logit effects from ``feature_digit_scores``): its
    mean logit effect on the later answers minus that on the earlier ones, averaged over ``sides``
    (answer indices per start year, as ``GreaterThan.later_earlier`` gives); > 0 boosts later years."""
    values = logit.to_numpy(dtype=float)
    diffs = [values[:, list(later)].mean(1) - values[:, list(earlier)].mean(1) for later, earlier in sides]
    found = np.mean(diffs, axis=0) if diffs and len(values) else np.full(len(values), np.nan)
    return pd.Series(found, index=logit.index, name="later − earlier")


LATER = "later − earlier"  # the account table's column of each feature's later_minus_earlier effect


def _effect(difference: float) -> str:
    """A feature's later − earlier logit effect in words."""
    if difference != difference:
        return "effect on the answers n/a"
    return f"{difference:+.2f} later − earlier: boosts {'later' if difference > 0 else 'earlier'} years"


def _listed(names: Sequence[str], none: str) -> str:
    return ", ".join(names) if names else none


def greater_than_account(
    heads: pd.DataFrame, features: pd.DataFrame, later: pd.Series, k: int = 3
) -> tuple[pd.DataFrame, str]:
    """Which units carry the comparison, computed: the top ``k`` heads by |attribution| from the
    start year's digits (``heads``: layer, unit, attribution) and the top ``k`` features by
    |attribution| to the logit difference (``features``: layer, unit, attribution, label), each
    feature with its ``later_minus_earlier`` effect; a table in that order and one sentence that
    names them and sets them against ``HANNA_ACCOUNT``."""
    top = lambda t: t.reindex(t.attribution.abs().sort_values(ascending=False).index).head(k)  # noqa: E731
    head_rows = [{"unit": f"L{int(r.layer)}.H{int(r.unit)}", "kind": "head", "attribution": float(r.attribution),
                  "label": "reads the start year's digits", LATER: float("nan")} for r in top(heads).itertuples()]
    feature_rows = [{"unit": (name := f"L{int(r.layer)}.F{int(r.unit)}"), "kind": "feature",
                     "attribution": float(r.attribution), "label": r.label, LATER: float(later.get(name, np.nan))}
                    for r in top(features).itertuples()]
    table = pd.DataFrame(head_rows + feature_rows, columns=["unit", "kind", "attribution", "label", LATER])
    heads_text = _listed([f"{r['unit']} ({r['attribution']:+.2f})" for r in head_rows],
                         "none (no head reads the start year's digits in the traced circuits)")
    features_text = _listed([f"{r['unit']} [{r['label']}] ({r['attribution']:+.2f}; {_effect(r[LATER])})"
                             for r in feature_rows], "none (no feature at the last position)")
    boosts = sum(r[LATER] > 0 for r in feature_rows)
    head_size = sum(abs(r["attribution"]) for r in head_rows)
    feature_size = sum(abs(r["attribution"]) for r in feature_rows)
    split = (f"features hold {feature_size / (head_size + feature_size):.0%} of these {len(table)} units' "
             f"|attribution|, heads {head_size / (head_size + feature_size):.0%}"
             if head_size + feature_size else "no unit has any attribution")
    sentence = (
        f"The comparison is carried by the heads {heads_text} (summed attribution from the start "
        f"year's digits, logits) and the last-position features {features_text} (summed attribution "
        f"to the logit difference; logit effect on later minus earlier years). Against {HANNA_ACCOUNT}: "
        f"{boosts} of the {len(feature_rows)} top features boost later years over earlier ones, and {split}."
    )
    return table, sentence
