"""Notebook 04: SPRINT (Park et al. 2025, IJCAI) and the block/sublayer pruning baselines it is compared with.

Units are the 2L sublayers (``utils.sublayers``: 2i = layer i's attention, 2i+1 its MLP). Pruning a
sublayer skips it and its pre-norm: it is never computed, so measured speed-ups are real.

The method, to read top to bottom:

* ``sprint``: SPRINT itself — sensitivity after the next MLP (``relative_l1``), closed-form tuning
  of that MLP's down-projection (``fit_down_projection``), score / latency, iterate
  (``run_sprint``, ``SprintScorer``); ``SPRINT_VARIANTS`` holds the ablations.
* ``latency``: the latency information — per-sublayer latency measured in generation mode
  (``measure_latency_model``), the estimated speed-up every method stops at (``LatencyModel``).
* ``pruned_model``: what every method shares — residual ``Checkpoints``, ``Snapshot`` /
  ``apply_snapshot`` / ``restore_dense``, the run record ``PruneResult``.
* ``baselines``: SLEB, ShortGPT, FinerCut, BlockPruner (``BASELINES``) on the same calibration
  tokens and stopping rule.
* ``methods``: any of them by name (``run_method``, ``METHODS``).

Notebook 04's harness:

* ``diagnostic``: the held-out refit diagnostic that chooses the ridge (``refit_diagnostic``,
  ``choose_ridge``).
* ``protocol``: ``RecordingProtocol`` (what runs depend on, from named values), the calibration
  split and its hash, the evaluation data and ``quality_metrics`` of a pruned model.
* ``recorded_runs``: ``data/pruning/runs.json`` — ``record_runs``, the file with its checksum and
  schema (``write_runs`` / ``read_runs``), ``check_recorded``, resuming, per-session time scales.
* ``compare``: comparisons over calibration seeds (``snapshot_rows``, ``paired_advantage``,
  ``closing_table``, ``log_time_ratios``).
* ``harness``: ``PRESETS``, ``load_or_record``, ``live_check``.
* ``other_text``: recorded snapshots rebuilt (SPRINT's refit recomputed) and evaluated on another
  text than the recording's (``rebuild_snapshot``, ``text_rows``, ``text_evaluator``).
* ``figures``: the notebook's multi-line figures (``plot_refit_diagnostic``, ``plot_quality_vs_speedup``).
* ``report``: the notebook's tables, verdict rows, checks and computed sentences (``claim_rows``,
  ``check_rows``, ``matched_table``, ``text_table``, ``found_sentences``, ``latency_ratio``).

``from utils import pruning`` gives every public name of these modules (each lists its own) as
``pruning.X``; a researcher usually needs ``run_sprint``, ``run_method``, ``LatencyModel``,
``measure_latency_model``, ``fit_down_projection``, ``relative_l1``, ``apply_snapshot`` and
``restore_dense``.
"""

from __future__ import annotations

from utils.pruning import (
    baselines,
    compare,
    diagnostic,
    figures,
    harness,
    latency,
    methods,
    other_text,
    protocol,
    pruned_model,
    recorded_runs,
    report,
    sprint,
)
from utils.pruning.baselines import *  # noqa: F403  (each module's __all__)
from utils.pruning.compare import *  # noqa: F403  (each module's __all__)
from utils.pruning.diagnostic import *  # noqa: F403  (each module's __all__)
from utils.pruning.figures import *  # noqa: F403  (each module's __all__)
from utils.pruning.harness import *  # noqa: F403  (each module's __all__)
from utils.pruning.latency import *  # noqa: F403  (each module's __all__)
from utils.pruning.methods import *  # noqa: F403  (each module's __all__)
from utils.pruning.other_text import *  # noqa: F403  (each module's __all__)
from utils.pruning.protocol import *  # noqa: F403  (each module's __all__)
from utils.pruning.pruned_model import *  # noqa: F403  (each module's __all__)
from utils.pruning.recorded_runs import *  # noqa: F403  (each module's __all__)
from utils.pruning.report import *  # noqa: F403  (each module's __all__)
from utils.pruning.sprint import *  # noqa: F403  (each module's __all__)

__all__ = [
    *baselines.__all__,
    *compare.__all__,
    *diagnostic.__all__,
    *figures.__all__,
    *harness.__all__,
    *latency.__all__,
    *methods.__all__,
    *other_text.__all__,
    *protocol.__all__,
    *pruned_model.__all__,
    *recorded_runs.__all__,
    *report.__all__,
    *sprint.__all__,
]
