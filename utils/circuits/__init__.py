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
* ``interactive``: the same figure as SVG with hover tooltips, offline (``interactive_circuit``).
* ``harness``: notebook 03's ``PRESETS`` and the class rating sheet (not the method).
* ``report``: notebook 03's verdict rules, tables and figures, built from its numbers (not the method).

``from utils import circuits as C`` gives every public name of those modules, plus the greater-than
task's names from ``utils.greater_than`` (``GreaterThan``, ``greater_than_prompts``, ``spread_starts``,
``prob_diff``, ``later_earlier``, ``GT_TEMPLATE``).
"""

from __future__ import annotations

from utils.circuits import (
    ablation,
    attribution,
    blind,
    harness,
    interactive,
    invariant,
    layout,
    paths,
    report,
    runs,
)
from utils.circuits.ablation import *  # noqa: F403  (each module's __all__)
from utils.circuits.attribution import *  # noqa: F403  (each module's __all__)
from utils.circuits.blind import *  # noqa: F403  (each module's __all__)
from utils.circuits.harness import *  # noqa: F403  (each module's __all__)
from utils.circuits.interactive import *  # noqa: F403  (each module's __all__)
from utils.circuits.invariant import *  # noqa: F403  (each module's __all__)
from utils.circuits.layout import *  # noqa: F403  (each module's __all__)
from utils.circuits.paths import *  # noqa: F403  (each module's __all__)
from utils.circuits.report import *  # noqa: F403  (each module's __all__)
from utils.circuits.runs import *  # noqa: F403  (each module's __all__)
from utils.greater_than import (
    GT_TEMPLATE,
    GreaterThan,
    greater_than_prompts,
    later_earlier,
    prob_diff,
    spread_starts,
)

__all__ = [
    *ablation.__all__,
    *attribution.__all__,
    *blind.__all__,
    *harness.__all__,
    *interactive.__all__,
    *invariant.__all__,
    *layout.__all__,
    *paths.__all__,
    *report.__all__,
    *runs.__all__,
    "GT_TEMPLATE",
    "GreaterThan",
    "greater_than_prompts",
    "later_earlier",
    "prob_diff",
    "spread_starts",
]
