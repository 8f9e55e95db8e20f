"""Notebook 01's "paper vs here" rows: each of Geva et al. (2023)'s claims turned into one verdict
of ``utils.verdicts`` (holds / opposite / within noise / not testable here / too few), with its
rule, n and interval in their own columns, and the figure titles built from the same numbers.

Effects are ``after - before`` (or ``paper's winner - rival``): a fall is negative.

* ``knockout_claims``: the three attention-knockout claims, on the facts whose subject is not the
  first token; "relation propagates earlier" is judged against the first-token (sink) curve.
* ``enrichment_claims`` / ``enrichment_title``: early MLP vs attention sublayer knockouts (the
  paper expects a fall of the attributes rate, larger under MLP knockouts).
* ``attribute_claims``: the attributes rate peaks at the last subject token (raw and variants).
* ``extraction_claims``: attention vs MLP extraction, and the effect of cutting subject -> last.
* ``ov_claim``: the OV mappings of the top extraction heads against control heads.

Public names: ``knockout_claims``, ``enrichment_claims``, ``enrichment_title``,
``attribute_claims``, ``extraction_claims``, ``ov_claim``, ``change_verb``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from utils import verdicts
from utils.recall.enrichment import EnrichmentResult
from utils.recall.harness import (
    describe_minimum,
    excess_minimum,
    fact_interval,
    knockout_minima,
    minimum_layer,
    minimum_layer_gap,
    peak_advantage,
    position_peaks,
    smallest_effect_margin,
)
from utils.recall.knockout import KnockoutResult
from utils.stats import Interval, paired_difference

__all__ = [
    "attribute_claims",
    "change_verb",
    "enrichment_claims",
    "enrichment_title",
    "extraction_claims",
    "knockout_claims",
    "ov_claim",
]

Row = dict[str, Any]
_VERBS = {"rise": "raise", "fall": "lower", "no change": "leave unchanged"}


def change_verb(effect: float) -> str:
    """'raise', 'lower' or 'leave unchanged': what a knockout with this effect does to a rate."""
    return _VERBS[verdicts.direction(effect)]


def _layers(interval: Interval, offset: float = 0.0) -> str:
    est, low, high = (v + offset for v in (interval.estimate, interval.low, interval.high))
    return f"{est:+.0f} [{low:+.0f}, {high:+.0f}] layers"


def knockout_claims(
    result: KnockoutResult, rows: Sequence[bool], n_layers: int, min_n: int
) -> tuple[list[Row], dict[str, Any]]:
    """The knockout rows on the facts in ``rows`` (subject not first), and the numbers the
    figure's title states (``subject_layer``, ``relation_layer``: the minima's layers)."""
    minima = knockout_minima(result, rows)
    subject_layer = minimum_layer(result, "subject", rows)
    half = n_layers / 2 - 0.5
    relation_layer, excess = excess_minimum(result, "non-subject", "first", rows)
    gap = minimum_layer_gap(result, "non-subject", "subject", rows, baseline="first")
    raw_gap = minimum_layer_gap(result, "non-subject", "subject", rows)
    if excess.n >= min_n and not excess.high < 0:
        relation = verdicts.not_testable(
            "cutting the non-subject edges never lowers p(prediction) beyond cutting the first "
            f"token alone (largest excess {excess.format(digits=0)} points)",
            excess.n,
        )
    else:
        relation = verdicts.from_interval(gap, "rise", min_n)
    last_margin = smallest_effect_margin(result, "last", ["subject", "non-subject"], rows)
    out = [
        verdicts.claim_row(
            "subject → last knockout hurts most in the upper-middle layers",
            "largest fall in the upper-middle layers",
            f"min {describe_minimum(minima['subject → last'])} of {n_layers} layers",
            verdicts.from_interval(subject_layer, "rise", min_n, null=half),
            f"layer of the subject curve's minimum minus {half:g} (the middle), expected rise; "
            "facts whose subject is not the first token",
            _layers(subject_layer, -half),
        ),
        verdicts.claim_row(
            "relation (non-subject) → last matters earlier than subject → last",
            "non-subject fall peaks in earlier layers",
            f"non-subject minus first-token curve lowest at layer {relation_layer} "
            f"({excess.format(digits=0)} points); raw non-subject curve: gap {_layers(raw_gap)}",
            relation,
            "layer of the subject minimum minus layer of the minimum of (non-subject − first "
            "token), expected rise: judged beyond the first-token (sink) curve; not testable if "
            "that difference never falls below 0",
            _layers(gap) if relation.word != verdicts.NOT_TESTABLE else relation.reason,
        ),
        verdicts.claim_row(
            "last → last knockout has little effect",
            "small change throughout",
            f"min {describe_minimum(minima['last → last'])}",
            verdicts.from_interval(last_margin, "rise", min_n),
            "last → last minimum minus the higher of the subject / non-subject minima (points), "
            "expected rise (it hurts least)",
            last_margin.format(digits=0) + " points",
        ),
    ]
    return out, {"subject_layer": subject_layer, "relation_layer": relation_layer, "gap": gap}


def _points(interval: Interval, digits: int = 2) -> str:
    return f"{interval.format(100, digits)} points"


def enrichment_claims(
    enrichment: EnrichmentResult, min_n: int
) -> tuple[list[Row], dict[str, Interval]]:
    """The enrichment rows: the early MLP knockouts' change of the rate (paper: a fall) and the MLP
    minus attention change (paper: a fall, MLP knockouts hurt more); and the intervals."""
    changes = {kind: enrichment.early_change(kind) for kind in ("mlp", "attn")}
    mlp, attn = (fact_interval(changes[k]) for k in ("mlp", "attn"))
    mlp_vs_attn = paired_difference(
        changes["attn"].double().numpy(), changes["mlp"].double().numpy()
    )
    base = float(enrichment.base.mean())
    at = f"at layer {enrichment.measure_layer}"
    rows = [
        verdicts.claim_row(
            "early MLP sublayers enrich the subject (knocking them out lowers the rate)",
            "MLP knockouts cut the rate sharply",
            f"rate {100 * base:.2f}% without knockout; early MLP knockouts: "
            f"{verdicts.direction(mlp.estimate)} of "
            f"{abs(100 * mlp.estimate):.2f} points {at}",
            verdicts.from_interval(mlp, "fall", min_n),
            "rate with early MLP windows zeroed minus without, per fact (points), expected fall",
            _points(mlp),
        ),
        verdicts.claim_row(
            "early MLP knockouts lower enrichment more than attention knockouts",
            "MLP knockouts cut the rate far more",
            f"change {_points(mlp)} (MLP) vs {_points(attn)} (attention) {at}",
            verdicts.from_interval(mlp_vs_attn, "fall", min_n),
            "MLP-knockout change minus attention-knockout change, per fact, expected fall",
            _points(mlp_vs_attn),
        ),
    ]
    return rows, {"mlp": mlp, "attn": attn, "mlp_vs_attn": mlp_vs_attn}


def _changes(effect: float, what: str) -> str:
    """'raise the rate by 0.06 points', 'lower it by …' or 'leave it unchanged'."""
    verb = change_verb(effect)
    if verb == _VERBS["no change"]:
        return "leave it unchanged"
    return f"{verb} {what} by {abs(100 * effect):.2f} points"


def enrichment_title(intervals: Mapping[str, Interval]) -> str:
    """The enrichment figure's title, from the intervals its verdict rows use."""
    mlp, attn = intervals["mlp"], intervals["attn"]
    return (
        f"Early MLP knockouts {_changes(mlp.estimate, 'the rate')}, attention knockouts "
        f"{_changes(attn.estimate, 'it')} (n={mlp.n})"
    )


def attribute_claims(
    raw: torch.Tensor,
    variants: Mapping[tuple[str, str], torch.Tensor],
    rivals: Sequence[str],
    headline: tuple[str, str],
    embedding_rate: float,
    min_n: int,
) -> list[Row]:
    """The attributes-rate rows: last subject token's peak minus the best rival's (expected rise),
    on the raw rate and on each (attribute source, readout) subject-specific variant."""
    rule = (
        "last subject token's peak minus the highest rival peak (layers re-chosen per resample), "
        "expected rise"
    )
    advantage = peak_advantage(raw, "last subject", rivals)
    peak = position_peaks(raw)["last subject"]["estimate"]
    rows = [
        verdicts.claim_row(
            "attributes rate is highest at the last subject token (raw rate)",
            "last subject position rises in early-middle layers",
            f"last subject peak {100 * peak:.1f}%; embedding baseline {100 * embedding_rate:.1f}%",
            verdicts.from_interval(advantage, "rise", min_n),
            rule,
            _points(advantage, 1),
        )
    ]
    for (source, readout), values in variants.items():
        adv = peak_advantage(values, "last subject", rivals)
        variant = "" if (source, readout) == headline else "; variant"
        rows.append(
            verdicts.claim_row(
                f"subject-specific attributes are richest at the last subject token ({source} "
                f"attributes, {readout}{variant})",
                "not measured (the paper has no other-subject control)",
                f"own minus other-subject rate, last subject minus best rival: {_points(adv, 1)}",
                verdicts.from_interval(adv, "rise", min_n),
                rule,
                _points(adv, 1),
            )
        )
    return rows


def extraction_claims(
    events: Mapping[str, torch.Tensor], min_n: int
) -> tuple[list[Row], dict[str, Interval]]:
    """The extraction rows from per-fact event flags ``events`` ("attn", "mlp", "attn_blocked":
    [F, L] bool): attention vs MLP events, and attention events with subject -> last cut."""
    share = {k: events[k].any(-1).double().numpy() for k in ("attn", "mlp", "attn_blocked")}
    attn_vs_mlp = paired_difference(share["mlp"], share["attn"])
    blocked = paired_difference(share["attn"], share["attn_blocked"])
    pct = {k: f"{100 * float(np.mean(v)):.0f}%" for k, v in share.items()}
    rows = [
        verdicts.claim_row(
            "attributes are extracted by attention more often than by MLPs",
            "attention extraction much more frequent",
            f"{pct['attn']} of facts with an attention event vs {pct['mlp']} with an MLP one",
            verdicts.from_interval(attn_vs_mlp, "rise", min_n),
            "share with an attention event minus share with an MLP event, expected rise",
            _points(attn_vs_mlp, 0),
        ),
        verdicts.claim_row(
            "cutting subject → last in upper layers reduces attention extraction",
            "extraction rate falls sharply",
            f"attention-event share {pct['attn']} → {pct['attn_blocked']}",
            verdicts.from_interval(blocked, "fall", min_n),
            "share with subject → last cut minus share without, expected fall",
            _points(blocked, 0),
        ),
    ]
    return rows, {"attn_vs_mlp": attn_vs_mlp, "blocked": blocked}


def ov_claim(found: torch.Tensor, n_top: int, min_n: int) -> tuple[Row, Interval]:
    """The OV row from hits ``found`` [F, heads] (bool; the first ``n_top`` heads are the top
    extraction heads, the rest controls): top-head minus control-head hit rate per fact."""
    hits = found.double()
    top, control = hits[:, :n_top].mean(1).numpy(), hits[:, n_top:].mean(1).numpy()
    margin = paired_difference(control, top)
    row = verdicts.claim_row(
        "extraction heads' OV circuits map subjects to attributes",
        "attribute often in the top tokens of the head's OV projection",
        f"hit rate {100 * top.mean():.0f}% (top heads) vs {100 * control.mean():.0f}% "
        "(control heads)",
        verdicts.from_interval(margin, "rise", min_n),
        "top-head minus control-head hit rate per fact, expected rise",
        _points(margin, 0),
    )
    return row, margin
