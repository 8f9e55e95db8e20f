"""Transcoders (Dunefsky, Chlenski & Nanda 2024, *Transcoders Find Interpretable LLM Feature Circuits*).

A transcoder is a wide ReLU MLP trained to imitate one MLP sublayer: it reads the MLP's normalised
input and predicts its write through a sparse layer of features. The method, in the order a reader
meets it (each module's docstring maps its functions to the paper's steps):

* ``model``: what a transcoder reads (``mlp_hooks``), the architecture (``SparseTranscoder``), the
  loss (``transcoder_loss``, ``output_scale``), export to sae-lens (``save_transcoder``,
  ``load_transcoder``, ``sae_transformer``);
* ``sinks``: the attention-sink tokens left out of training and metrics (``model_sinks``);
* ``activations``: the activation store (``stream_activations``, ``collect_activations``,
  ``cache_activations``, ``load_activations``, ``epoch_batches``);
* ``training``: the trainer (``TranscoderTraining``, ``TranscoderTrainer``, ``train_transcoders``);
* ``metrics``: splicing a dictionary in place of an MLP (``transcoder_fn``, ``sae_fn``, ``zero_fn``,
  ``replace_mlps``) and judging it: L0, FVU, spliced CE/KL, fraction recovered, the Pareto comparison
  (``eval_set``, ``dictionary_metrics``, ``layer_quality``, ``matched_l0_gap``);
* ``interpret``: top contexts, de-embeddings, logit effects and the blind rating study;
* ``compare``: transcoders against SAEs: the sweep on two texts and the verdicts
  (``sweep_metrics``, ``on_par_verdict``, ``recovered_interval``);
* ``sae_baseline``: the SAE baseline, trained by sae-lens (``train_sae_with_sae_lens``), quietly
  (``quiet_sae_lens``).

The harness: ``layers`` (a transcoder for every layer, cached on disk with a manifest, and the L1
sweep that chooses their ``l1``: ``train_all_layers``, ``LayerSettings``, ``L1Sweep``; notebook 03)
and ``presets`` (notebook 02's ``PRESETS`` and ``RANGES``).

Every public name of those modules is re-exported here: ``from utils import transcoders as T``, then
``T.SparseTranscoder``, ``T.train_all_layers`` ...
"""

from __future__ import annotations

from utils.transcoders.activations import (
    SINK_ID,
    Pair,
    cache_activations,
    cached_chunks,
    collect_activations,
    epoch_batches,
    load_activations,
    shuffled,
    steps_per_run,
    stream_activations,
)
from utils.transcoders.compare import (
    COMPARED,
    OnPar,
    on_par_verdict,
    recovered_interval,
    sweep_metrics,
)
from utils.transcoders.interpret import (
    HIGHLIGHT,
    blind_cards,
    de_embedding,
    live_features,
    logit_effect,
    rating_difference,
    rms_embeddings,
    token_consistency,
    top_contexts,
    unblind,
)
from utils.transcoders.layers import (
    MANIFEST,
    L1Sweep,
    LayerSettings,
    TrainedLayers,
    choose_l1,
    fingerprint,
    sweep_l1,
    train_all_layers,
)
from utils.transcoders.metrics import (
    DENSE_THRESHOLD,
    EvalSet,
    Replacement,
    ce_baselines,
    dictionary_fn,
    dictionary_input,
    dictionary_metrics,
    eval_set,
    feature_acts,
    fraction_recovered,
    fvu,
    layer_quality,
    matched_l0_count,
    matched_l0_gap,
    matched_l0_interval,
    overlap_counts,
    pareto_points,
    replace_mlps,
    replaced_losses,
    sae_fn,
    transcoder_fn,
    zero_fn,
)
from utils.transcoders.model import (
    SparseTranscoder,
    load_transcoder,
    mlp_hooks,
    output_scale,
    random_transcoder,
    sae_transformer,
    save_transcoder,
    transcoder_loss,
)
from utils.transcoders.presets import PRESETS, RANGES
from utils.transcoders.sae_baseline import quiet_sae_lens, token_dataset, train_sae_with_sae_lens
from utils.transcoders.sinks import (
    MASSIVE_FACTOR,
    massive_tokens,
    model_sinks,
    sink_hook,
    sink_layer,
    sink_mask,
    sink_resid,
    special_token_ids,
)
from utils.transcoders.training import (
    CHECKPOINT_NAME,
    TRAINER_VERSION,
    TrainingDiverged,
    TranscoderTrainer,
    TranscoderTraining,
    lr_multiplier,
    reject_unknown_fields,
    train_transcoders,
)

__all__ = [
    "COMPARED",
    "OnPar",
    "on_par_verdict",
    "recovered_interval",
    "sweep_metrics",
    # model
    "SparseTranscoder",
    "load_transcoder",
    "mlp_hooks",
    "output_scale",
    "random_transcoder",
    "sae_transformer",
    "save_transcoder",
    "transcoder_loss",
    # sinks
    "MASSIVE_FACTOR",
    "massive_tokens",
    "model_sinks",
    "sink_hook",
    "sink_layer",
    "sink_mask",
    "sink_resid",
    "special_token_ids",
    # activations
    "SINK_ID",
    "Pair",
    "cache_activations",
    "cached_chunks",
    "collect_activations",
    "epoch_batches",
    "load_activations",
    "shuffled",
    "steps_per_run",
    "stream_activations",
    # training
    "CHECKPOINT_NAME",
    "TRAINER_VERSION",
    "TrainingDiverged",
    "TranscoderTrainer",
    "TranscoderTraining",
    "lr_multiplier",
    "reject_unknown_fields",
    "train_transcoders",
    # metrics
    "DENSE_THRESHOLD",
    "EvalSet",
    "Replacement",
    "ce_baselines",
    "dictionary_fn",
    "dictionary_input",
    "dictionary_metrics",
    "eval_set",
    "feature_acts",
    "fraction_recovered",
    "fvu",
    "layer_quality",
    "matched_l0_count",
    "matched_l0_gap",
    "matched_l0_interval",
    "overlap_counts",
    "pareto_points",
    "replace_mlps",
    "replaced_losses",
    "sae_fn",
    "transcoder_fn",
    "zero_fn",
    # interpret
    "HIGHLIGHT",
    "blind_cards",
    "de_embedding",
    "live_features",
    "logit_effect",
    "rating_difference",
    "rms_embeddings",
    "token_consistency",
    "top_contexts",
    "unblind",
    # sae_baseline
    "quiet_sae_lens",
    "token_dataset",
    "train_sae_with_sae_lens",
    # layers (notebook 03's harness)
    "MANIFEST",
    "L1Sweep",
    "LayerSettings",
    "TrainedLayers",
    "choose_l1",
    "fingerprint",
    "sweep_l1",
    "train_all_layers",
    # presets (notebook 02's parameters)
    "PRESETS",
    "RANGES",
]
