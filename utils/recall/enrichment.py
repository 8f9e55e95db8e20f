"""Subject enrichment: the attributes rate of hidden states, and which sublayers raise it.

Geva et al. (2023), "Intermediate Subject Representations" (step A of the paper's Figure 1,
subject enrichment). Each hidden state is projected to the vocabulary; of its ``top`` (500)
highest-scoring tokens, the first ``keep`` (50) eligible ones are kept, and the attributes rate is
the share of them in the subject's attribute set (``utils.recall.attributes``). In the paper the
rate at the last subject token climbs through the early-middle layers, far above other positions;
zeroing the early MLP sublayers lowers it far more than zeroing attention sublayers.

* ``attributes_rate`` (= ``leading_tokens`` then ``share_of_attributes``): the rate of projections.
* ``attribute_rates``: the rate of every fact, layer and position of ``POSITIONS``, against each
  attribute set, per readout (logit lens, or e.g. a tuned lens), with the embedding baseline;
  ``AttributeRates`` holds them, paired on the facts that have every set compared.
* ``mean_table``: the layer x position table of a mean rate.
* ``enrichment_knockout``: the rate at the last subject token after a measured layer with the MLP or
  attention sublayers of a window of earlier layers zeroed (``knockout_starts``,
  ``EnrichmentResult``).

Public names: ``POSITIONS``, ``LOGIT_LENS``, ``SUBLAYER_KINDS``, ``leading_tokens``,
``share_of_attributes``, ``attributes_rate``, ``position_table``, ``AttributeRates``,
``attribute_rates``, ``mean_table``, ``knockout_starts``, ``EnrichmentResult``,
``enrichment_knockout``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pandas as pd
import torch
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from utils import hooks
from utils.prompts import project
from utils.recall.facts import FactBatch, fact_batches, require_range_index
from utils.sublayers import Sublayer

__all__ = [
    "AttributeRates",
    "EnrichmentResult",
    "LOGIT_LENS",
    "POSITIONS",
    "SUBLAYER_KINDS",
    "attribute_rates",
    "attributes_rate",
    "enrichment_knockout",
    "knockout_starts",
    "leading_tokens",
    "mean_table",
    "position_table",
    "share_of_attributes",
]

POSITIONS = ("first token", "first subject", "last subject", "first after subject", "last token")
LOGIT_LENS = {"logit lens": None}  # attribute_rates' default readout: no lens before the unembedding
SUBLAYER_KINDS = ("mlp", "attn")


# ------------------------------------------------------------------------- the attributes rate
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
    """Share [...] of the kept tokens (``leading_tokens``, [..., top]) marked in ``attributes`` (bool [..., V], broadcastable)."""
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


# ------------------------------------------------------------- by layer and position
def position_table(batch: FactBatch) -> dict[str, torch.Tensor]:
    """Each of POSITIONS as a [G] index (the subject always ends before the last token)."""
    return {
        "first token": torch.zeros_like(batch.last),
        "first subject": batch.subj_start,
        "last subject": batch.subj_end - 1,
        "first after subject": batch.subj_end,
        "last token": batch.last,
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
    require_range_index(facts)
    names = tuple(sets)
    for name, masks in sets.items():
        if masks.shape != (len(facts), len(eligible)):
            raise ValueError(
                f"set {name!r} is {tuple(masks.shape)}, expected {(len(facts), len(eligible))}"
            )
    n_layers = model.cfg.n_layers
    streams = [hooks.resid_post(layer) for layer in range(n_layers)]
    rates = {readout: torch.zeros(len(names), len(facts), n_layers, len(POSITIONS)) for readout in lenses}
    embedding = torch.zeros(len(names), len(facts))
    for g in tqdm(
        list(fact_batches(model, facts, fact_batch)), desc="attributes rate", disable=not progress
    ):
        _, cache = model.run_with_cache(
            g.tokens, stop_at_layer=n_layers, names_filter=lambda n: n in streams
        )
        stream = torch.stack([cache[n] for n in streams], dim=2)  # [G, n, L, d]
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


# ------------------------------------------------------------- which sublayers enrich
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

    def early_change(self, kind: str) -> torch.Tensor:
        """Per fact [F]: the rate's mean over the early windows (starting in the lower half of the
        layers below the measured one) minus the rate without knockout (a fall is negative)."""
        early = torch.tensor([s < self.measure_layer / 2 for s in self.starts])
        return self.knocked[SUBLAYER_KINDS.index(kind)][early].mean(0) - self.base


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
    rate_fn: Callable[..., torch.Tensor] | None = None,
) -> EnrichmentResult:
    """Attributes rate at the last subject token after ``measure_layer``, with the MLP or attention
    sublayers of ``window`` consecutive layers zeroed; every window ends below the measured layer.

    ``masks`` [F, V] bool holds each fact's attribute set. The prompts are cut after the subject, so
    they are short and many go in one pass (``fact_batch``). ``rate_fn`` (default ``attributes_rate``)
    scores the projections (a learner's own in notebook 01)."""
    require_range_index(facts)
    if not 0 <= measure_layer < model.cfg.n_layers:
        raise ValueError(f"need 0 <= measure_layer < {model.cfg.n_layers}, got {measure_layer}")
    starts = knockout_starts(measure_layer, window, stride)
    name = hooks.resid_post(measure_layer)
    resume = {hooks.resid_pre(s) for s in starts} | {name}
    base = torch.zeros(len(facts))
    knocked = torch.zeros(len(SUBLAYER_KINDS), len(starts), len(facts))
    groups = list(fact_batches(model, facts, fact_batch, sort_by="subj_tok_end"))
    for g in tqdm(groups, desc="sublayer knockouts", disable=not progress):
        attrs = masks[g.index]
        # later positions cannot affect the last subject token: run the prompts only up to it
        tokens = g.tokens[:, : int(g.subj_end.max())]
        _, cache = model.run_with_cache(
            tokens, stop_at_layer=measure_layer + 1, names_filter=lambda n: n in resume
        )

        def rate(hidden: torch.Tensor, g: FactBatch = g, attrs: torch.Tensor = attrs) -> torch.Tensor:
            logits = project(model, hidden[g.rows, g.subj_end - 1])
            return (rate_fn or attributes_rate)(logits, attrs, eligible, top, keep).cpu()

        base[g.index] = rate(cache[name])
        for k, kind in enumerate(SUBLAYER_KINDS):
            for i, s in enumerate(starts):  # layers below the window are unchanged: resume there
                store: dict[str, torch.Tensor] = {}
                fwd = hooks.zero_ablate([Sublayer(layer, kind) for layer in range(s, s + window)])
                hooks.run(
                    model,
                    cache[hooks.resid_pre(s)],
                    fwd + hooks.capture([name], store),
                    start_at_layer=s,
                    stop_at_layer=measure_layer + 1,
                )
                knocked[k, i, g.index] = rate(store[name])
    return EnrichmentResult(measure_layer, window, starts, base, knocked)
