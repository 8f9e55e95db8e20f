"""Geva, Bastings, Filippova & Globerson (2023), *Dissecting Recall of Factual Associations in
Auto-Regressive Language Models* (EMNLP), on any TransformerLens model: notebook 01's method.

The method reads top to bottom, one module per step of the paper (Figure 1: (A) the subject is
enriched by early MLPs, (B) the relation propagates to the last position, (C) attention extracts
the attribute from the subject):

1. ``facts``: the facts the model knows, their subject spans, and right-padded batches.
2. ``knockout``: attention knockout of the edges into the last position from the subject, the
   relation (non-subject) positions or the last position, in a window around each layer: the
   critical points of (B) and (C). ``knockout_sweep`` (batched), ``knockout_loop`` (reference).
3. ``attributes``: what counts as an attribute of a subject (token sets from texts about it).
4. ``enrichment``: the attributes rate of hidden states by layer and position (``attribute_rates``)
   and its change with early MLP or attention sublayers zeroed (``enrichment_knockout``): (A).
5. ``readout``: the top-1 token of many writes read in the vocabulary, fast.
6. ``extraction``: extraction events of attention and MLP sublayers and heads at the last position,
   also with subject -> last blocked (``sublayer_top_tokens``): (C).
7. ``heads``: heads whose OV circuits map subjects to attributes (``head_attribute_hits``).

``harness`` holds the notebook's ``PRESETS`` and the bootstrap statistics of its verdicts,
``claims`` turns them into the notebook's "paper vs here" rows (``utils.verdicts``) and
``figures`` draws its figures.

Every public name of those modules is re-exported here (``from utils import recall;
recall.knockout_sweep(...)``), with ``project`` (``utils.prompts.project``: hidden states read
through the final norm and the unembedding).
"""

from __future__ import annotations

from utils.prompts import project
from utils.recall.attributes import (
    ATTRIBUTE_SOURCES,
    MIN_TOKEN_CHARS,
    WIKIPEDIA,
    AttributeSets,
    attribute_masks,
    attribute_texts,
    eligible_tokens,
    fact_attribute_texts,
    other_subject_masks,
    token_keys,
)
from utils.recall.claims import (
    attribute_claims,
    change_verb,
    enrichment_claims,
    enrichment_title,
    extraction_claims,
    knockout_claims,
    ov_claim,
)
from utils.recall.enrichment import (
    LOGIT_LENS,
    POSITIONS,
    SUBLAYER_KINDS,
    AttributeRates,
    EnrichmentResult,
    attribute_rates,
    attributes_rate,
    enrichment_knockout,
    knockout_starts,
    leading_tokens,
    mean_table,
    position_table,
    share_of_attributes,
)
from utils.recall.extraction import extraction_events, extraction_summary, sublayer_top_tokens
from utils.recall.facts import (
    FactBatch,
    equal_length_batches,
    fact_batches,
    load_fact_table,
    locate_subjects,
    prepare_facts,
    require_range_index,
)
from utils.recall.figures import (
    plot_enrichment,
    plot_extraction,
    plot_knockout,
    plot_lens_kl,
    plot_ov_hits,
    plot_rates,
)
from utils.recall.harness import (
    NO_FACTS,
    PRESETS,
    curve_bands,
    describe_minimum,
    excess_minimum,
    fact_interval,
    knockout_minima,
    minimum_layer,
    minimum_layer_gap,
    peak_advantage,
    position_peaks,
    smallest_effect_margin,
    specific_summary,
)
from utils.recall.heads import OV_INPUTS, control_heads, head_attribute_hits, ov_circuit, top_heads
from utils.recall.knockout import (
    KNOCKOUT_LABELS,
    KNOCKOUT_SOURCES,
    KnockoutResult,
    batch_masks,
    frozen_prefix_cache,
    knockout_loop,
    knockout_mask,
    knockout_sweep,
    window_layers,
)
from utils.recall.readout import (
    FACTORED_NORMS,
    argmax_of_product,
    head_readout,
    head_top_tokens,
    top_tokens,
)

__all__ = [
    # facts
    "FactBatch",
    "equal_length_batches",
    "fact_batches",
    "load_fact_table",
    "locate_subjects",
    "prepare_facts",
    "require_range_index",
    # knockout
    "KNOCKOUT_LABELS",
    "KNOCKOUT_SOURCES",
    "KnockoutResult",
    "batch_masks",
    "frozen_prefix_cache",
    "knockout_loop",
    "knockout_mask",
    "knockout_sweep",
    "window_layers",
    # attributes
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
    # enrichment
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
    # readout
    "FACTORED_NORMS",
    "argmax_of_product",
    "head_readout",
    "head_top_tokens",
    "project",
    "top_tokens",
    # extraction
    "extraction_events",
    "extraction_summary",
    "sublayer_top_tokens",
    # heads
    "OV_INPUTS",
    "control_heads",
    "head_attribute_hits",
    "ov_circuit",
    "top_heads",
    # harness
    "NO_FACTS",
    "PRESETS",
    "curve_bands",
    "describe_minimum",
    "excess_minimum",
    "fact_interval",
    "knockout_minima",
    "minimum_layer",
    "minimum_layer_gap",
    "peak_advantage",
    "position_peaks",
    "smallest_effect_margin",
    "specific_summary",
    # claims
    "attribute_claims",
    "change_verb",
    "enrichment_claims",
    "enrichment_title",
    "extraction_claims",
    "knockout_claims",
    "ov_claim",
    # figures
    "plot_enrichment",
    "plot_extraction",
    "plot_knockout",
    "plot_lens_kl",
    "plot_ov_hits",
    "plot_rates",
]
