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
* ``human_text``: recorded snapshots rebuilt (SPRINT's refit recomputed) and evaluated on another
  text (``rebuild_snapshot``, ``text_rows``, ``text_evaluator``).
* ``figures``: the notebook's multi-line figures (``plot_refit_diagnostic``, ``plot_quality_vs_speedup``).
* ``report``: the notebook's tables, verdict rows, checks and computed sentences (``claim_rows``,
  ``check_rows``, ``matched_table``, ``text_table``, ``found_sentences``, ``latency_ratio``).

``from utils import pruning`` gives every public name of these modules (each lists its own) as
``pruning.X``; a researcher usually needs ``run_sprint``, ``run_method``, ``LatencyModel``,
``measure_latency_model``, ``fit_down_projection``, ``relative_l1``, ``apply_snapshot`` and
``restore_dense``.
"""

from utils.pruning.baselines import (
    BASELINE_METHODS,
    BASELINES,
    JS_CHUNK_ROWS,
    Baseline,
    block_influence,
    block_units,
    blockpruner,
    finercut,
    greedy,
    js_divergence,
    mean_nll,
    shortgpt,
    sleb,
)
from utils.pruning.compare import (
    HIGHER_IS_BETTER,
    MIN_SEEDS,
    closing_table,
    interpolate_at,
    log_time_ratios,
    matched_rows,
    paired_advantage,
    per_seed,
    snapshot_rows,
)
from utils.pruning.diagnostic import (
    RefitData,
    choose_ridge,
    diagnostic_summary,
    refit_data,
    refit_diagnostic,
    refit_errors,
)
from utils.pruning.figures import plot_quality_vs_speedup, plot_refit_diagnostic
from utils.pruning.harness import PRESETS, live_check, load_or_record
from utils.pruning.human_text import TUNING_METHODS, rebuild_snapshot, text_evaluator, text_rows
from utils.pruning.latency import (
    LATENCY_FRACTION,
    MIN_LATENCY_S,
    SPEEDUP_FORMULAS,
    LatencyModel,
    Timer,
    generation_time,
    latency_from_raw,
    latency_ratio_test,
    latency_ratios,
    measure_latency_model,
    measured_speedup,
    paired_samples,
    paired_times,
    timing_prompt,
)
from utils.pruning.methods import METHODS, run_method
from utils.pruning.protocol import (
    EvalData,
    RecordingProtocol,
    calibration_split,
    eval_data,
    quality_metrics,
    tokens_hash,
)
from utils.pruning.pruned_model import (
    Checkpoints,
    PruneResult,
    PruningClock,
    Snapshot,
    StepCallback,
    apply_snapshot,
    apply_sublayer,
    final_logits,
    original_down_projections,
    record_step,
    restore_dense,
    run_range,
)
from utils.pruning.recorded_runs import (
    CHECKSUM_KEY,
    RECORDED_RUNS,
    RecordedRunsError,
    check_recorded,
    content_checksum,
    missing_runs,
    read_runs,
    rebuild_command,
    record_runs,
    reference_pass_s,
    resumable,
    schema_problems,
    time_scales,
    write_runs,
)
from utils.pruning.report import (
    CALIBRATION_NOTE,
    LATENCY_ESTIMATOR,
    check_rows,
    claim_rows,
    coinciding,
    found_sentences,
    latency_ratio,
    latency_table,
    matched_table,
    text_table,
)
from utils.pruning.sprint import (
    SPRINT_VARIANTS,
    Candidate,
    SprintScorer,
    fit_down_projection,
    relative_l1,
    run_sprint,
)

__all__ = [
    # SPRINT
    "SPRINT_VARIANTS", "Candidate", "SprintScorer", "fit_down_projection", "relative_l1", "run_sprint",
    # latency
    "LATENCY_FRACTION", "MIN_LATENCY_S", "SPEEDUP_FORMULAS", "LatencyModel", "Timer", "generation_time", "latency_from_raw",
    "latency_ratio_test", "latency_ratios", "measure_latency_model", "measured_speedup", "paired_samples",
    "paired_times", "timing_prompt",
    # shared by every method
    "Checkpoints", "PruneResult", "PruningClock", "Snapshot", "StepCallback", "apply_snapshot", "apply_sublayer",
    "final_logits", "original_down_projections", "record_step", "restore_dense", "run_range",
    # baselines and methods by name
    "BASELINES", "BASELINE_METHODS", "JS_CHUNK_ROWS", "Baseline", "block_influence", "block_units", "blockpruner", "finercut",
    "greedy", "js_divergence", "mean_nll", "shortgpt", "sleb", "METHODS", "run_method",
    # notebook 04's harness
    "RefitData", "choose_ridge", "diagnostic_summary", "refit_data", "refit_diagnostic", "refit_errors",
    "EvalData", "RecordingProtocol", "calibration_split", "eval_data", "quality_metrics", "tokens_hash",
    "CHECKSUM_KEY", "RECORDED_RUNS", "RecordedRunsError", "check_recorded", "content_checksum", "missing_runs", "read_runs",
    "rebuild_command", "record_runs", "reference_pass_s", "resumable", "schema_problems", "time_scales", "write_runs",
    "HIGHER_IS_BETTER", "MIN_SEEDS", "closing_table", "interpolate_at", "log_time_ratios", "matched_rows",
    "paired_advantage", "per_seed",
    "snapshot_rows", "PRESETS", "live_check", "load_or_record",
    "plot_quality_vs_speedup", "plot_refit_diagnostic",
    "TUNING_METHODS", "rebuild_snapshot", "text_evaluator", "text_rows",
    "CALIBRATION_NOTE", "LATENCY_ESTIMATOR", "check_rows", "claim_rows", "coinciding", "found_sentences", "latency_ratio", "latency_table",
    "matched_table", "text_table",
]
