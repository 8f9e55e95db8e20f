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
* ``figures``: notebook 02's Pareto and feature-density figures (``plot_pareto``, ``plot_density``);
* ``sae_baseline``: the SAE baseline, trained by sae-lens (``train_sae_with_sae_lens``), quietly
  (``quiet_sae_lens``).

The harness: ``layers`` (a transcoder for every layer, cached on disk with a manifest, and the L1
sweep that chooses their ``l1``: ``train_all_layers``, ``LayerSettings``, ``L1Sweep``; notebook 03)
``presets`` (notebook 02's ``PRESETS`` and ``RANGES``) and ``shipped`` (transcoders trained once at
length by ``scripts/train_transcoders.py``, streaming and resumable, exported to ``data/transcoders/``
and loaded with their checksums checked: ``train_streaming``, ``export_shipped``,
``load_shipped_transcoders``).

Every public name of those modules is re-exported here: ``from utils import transcoders as T``, then
``T.SparseTranscoder``, ``T.train_all_layers`` ...
"""

from __future__ import annotations

from utils.transcoders import (
    activations,
    compare,
    figures,
    interpret,
    layers,
    metrics,
    model,
    presets,
    sae_baseline,
    shipped,
    sinks,
    training,
)
from utils.transcoders.activations import *  # noqa: F403  (each module's __all__)
from utils.transcoders.compare import *  # noqa: F403  (each module's __all__)
from utils.transcoders.figures import *  # noqa: F403  (each module's __all__)
from utils.transcoders.interpret import *  # noqa: F403  (each module's __all__)
from utils.transcoders.layers import *  # noqa: F403  (each module's __all__)
from utils.transcoders.metrics import *  # noqa: F403  (each module's __all__)
from utils.transcoders.model import *  # noqa: F403  (each module's __all__)
from utils.transcoders.presets import *  # noqa: F403  (each module's __all__)
from utils.transcoders.sae_baseline import *  # noqa: F403  (each module's __all__)
from utils.transcoders.shipped import *  # noqa: F403  (each module's __all__)
from utils.transcoders.sinks import *  # noqa: F403  (each module's __all__)
from utils.transcoders.training import *  # noqa: F403  (each module's __all__)

__all__ = [
    *activations.__all__,
    *compare.__all__,
    *figures.__all__,
    *interpret.__all__,
    *layers.__all__,
    *metrics.__all__,
    *model.__all__,
    *presets.__all__,
    *sae_baseline.__all__,
    *shipped.__all__,
    *sinks.__all__,
    *training.__all__,
]
