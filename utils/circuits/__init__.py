"""Circuit analysis through transcoders (Dunefsky, Chlenski & Nanda 2024), notebook 03's method.

With transcoders in place of the MLPs, every term that writes to the residual stream is linear in
something simple (a token embedding, a feature's activation, a head's frozen pattern), so a target's
value splits exactly into contributions, errors included. The method, one module per step, each
readable top to bottom:

* ``attribution``: input-dependent attributions through transcoders and attention heads, an exact
  decomposition (``trace``, ``Target``, ``contributions``, ``expand``, ``error_share``).
* ``paths``: the greedy beam search back from a target, a circuit ``Graph`` (``path_search``).
* ``invariant``: input-invariant connections (``feature_weights``, ``ov_weights``) and how well they
  predict attributions (a permutation null, top-k overlap).
* ``blind``: the blind case study, hypotheses from layer-0 features (``layer0_hypotheses``).
* ``runs``: the greater-than measurement, answer probabilities of an edited model resumed from a
  clean run (``answer_probs``, ``mean_prob_diff``, ``clean_run``).
* ``ablation``: the greater-than case study, mean-ablation, unit scores, top-k feature vs neuron
  circuits, precision at k (``layer_effects``, ``unit_scores``, ``features_kept``, ``neurons_kept``).
* ``layout``: the circuit figure (``plot_circuit``).
* ``harness``: notebook 03's ``PRESETS`` and the class rating sheet (not the method).
* ``report``: notebook 03's verdict rules, tables and figures, built from its numbers (not the method).

``from utils import circuits as C`` gives every public name of those modules, plus the greater-than
task's names from ``utils.greater_than`` (``GreaterThan``, ``greater_than_prompts``, ``spread_starts``,
``prob_diff``, ``later_earlier``, ``GT_TEMPLATE``).
"""

from utils.circuits.ablation import (
    Edit,
    MeanActs,
    best_layer_window,
    best_window,
    feature_ablator,
    features_kept,
    layer_effects,
    mean_feature_acts,
    mean_neuron_acts,
    mean_write_fn,
    mean_writes,
    neuron_ablator,
    neurons_kept,
    precision_at_k,
    random_units,
    top_units,
    unit_scores,
    window_effects,
)
from utils.circuits.attribution import (
    EXPANDABLE,
    Site,
    Target,
    Trace,
    contributions,
    encoder_bias,
    error_share,
    expand,
    feature_attributions,
    feature_target,
    head_terms,
    logit_target,
    scale_key,
    target_value,
    trace,
    upstream_layers,
)
from utils.circuits.blind import (
    Hypothesis,
    blind_scores,
    hypothesis_hits,
    layer0_hypotheses,
    token_word,
)
from utils.circuits.harness import PRESETS, rating_sheet, save_rating_sheet
from utils.circuits.invariant import (
    all_feature_weights,
    feature_weights,
    invariant_vs_dependent,
    ov_weights,
    permuted_correlation_null,
    topk_overlap,
)
from utils.circuits.layout import (
    MAX_NODES,
    circuit_edges,
    circuit_layout,
    circuit_nodes,
    plot_circuit,
)
from utils.circuits.paths import Graph, node_id, path_search
from utils.circuits.report import (
    MIN_WINDOW_EFFECT,
    OWN_TEXT,
    circuit_key,
    feature_digit_scores,
    feature_labels,
    features_vs_neurons,
    plot_feature_digits,
    plot_layer_quality,
    plot_top_k,
    plot_window_effects,
    quality_table,
    threshold_verdict,
    window_title,
    window_verdict,
)
from utils.circuits.runs import (
    CleanRun,
    answer_probs,
    clean_run,
    first_edited_layer,
    greater_than_task,
    mean_prob_diff,
    prompt_tokens,
    run_start,
)
from utils.greater_than import (
    GT_TEMPLATE,
    GreaterThan,
    greater_than_prompts,
    later_earlier,
    prob_diff,
    spread_starts,
)

__all__ = [
    # attribution
    "EXPANDABLE",
    "Site",
    "Target",
    "Trace",
    "contributions",
    "encoder_bias",
    "error_share",
    "expand",
    "feature_attributions",
    "feature_target",
    "head_terms",
    "logit_target",
    "scale_key",
    "target_value",
    "trace",
    "upstream_layers",
    # paths
    "Graph",
    "node_id",
    "path_search",
    # invariant
    "all_feature_weights",
    "feature_weights",
    "invariant_vs_dependent",
    "ov_weights",
    "permuted_correlation_null",
    "topk_overlap",
    # blind
    "Hypothesis",
    "blind_scores",
    "hypothesis_hits",
    "layer0_hypotheses",
    "token_word",
    # runs
    "CleanRun",
    "answer_probs",
    "clean_run",
    "first_edited_layer",
    "greater_than_task",
    "mean_prob_diff",
    "prompt_tokens",
    "run_start",
    # ablation
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
    # layout
    "MAX_NODES",
    "circuit_edges",
    "circuit_layout",
    "circuit_nodes",
    "plot_circuit",
    # harness
    "PRESETS",
    "rating_sheet",
    "save_rating_sheet",
    # the greater-than task (utils.greater_than)
    "GT_TEMPLATE",
    "GreaterThan",
    "greater_than_prompts",
    "later_earlier",
    "prob_diff",
    "spread_starts",
    # report (notebook 03's verdict rules, tables and figures)
    "MIN_WINDOW_EFFECT",
    "OWN_TEXT",
    "circuit_key",
    "feature_digit_scores",
    "feature_labels",
    "features_vs_neurons",
    "plot_feature_digits",
    "plot_layer_quality",
    "plot_top_k",
    "plot_window_effects",
    "quality_table",
    "threshold_verdict",
    "window_title",
    "window_verdict",
]
