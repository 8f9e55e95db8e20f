"""Notebook 04's harness: its scale presets, loading (or recording) the runs, and the live checks of loaded runs.

* ``PRESETS``: the smoke / dry_run / default / paper sizes (``apply_scale(globals(), pruning.PRESETS)``);
  the recorded runs were made with exactly the ``default`` values.
* ``load_or_record``: the latency model and every method's runs, measured and recorded in this run
  (``recompute``) or loaded from ``data/pruning/runs.json`` (another model's ``runs-<model>.json``,
  another calibration text's ``runs.<source>.json``) and
  checked (checksum, schema, protocol, calibration hashes); another model without a recorded file gets
  every method but the greedy sublayer baselines computed in this run.
* ``live_check``: what is cheap to recompute here from loaded runs (ShortGPT's order, dense perplexity).
* ``calibration_contrast``: the snapshots of this model's recording calibrated on another text
  (``runs.<source>.json``), rebuilt and measured on this run's text, where that recording exists.

Public names: ``PRESETS``, ``load_or_record``, ``live_check``, ``calibration_contrast``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from transformer_lens import HookedTransformer

from utils.evaluation import perplexity
from utils.models import EMBEDDED_NAME
from utils.paths import REPO_ROOT
from utils.pruning.baselines import GREEDY_SUBLAYER
from utils.pruning.latency import LatencyModel, latency_from_raw, measure_latency_model
from utils.pruning.methods import run_method
from utils.pruning.other_text import other_recording_rows
from utils.pruning.protocol import RecordingProtocol, eval_data
from utils.pruning.pruned_model import original_down_projections
from utils.pruning.recorded_runs import (
    RECORDED_SOURCE,
    check_recorded,
    read_runs,
    rebuild_command,
    record_runs,
    recorded_runs_file,
    time_scales,
)

__all__ = ["PRESETS", "calibration_contrast", "live_check", "load_or_record"]

PRESETS = {
    "smoke": {  # about 2 min on 2 cores: every code path (live recomputation, latency, diagnostic) at toy sizes
        "model_name": "smollm2-135m", "source": "prose", "device": "cpu", "targets": [1.02, 1.03], "n_calib_windows": 2, "calib_ctx": 12, "calib_seeds": [0],
        "n_val_tokens": 64, "val_ctx": 32, "n_task_items": 4, "n_cloze_items": 4, "cloze_ctx": 32,
        "ridge_grid": [0.1, 1.0], "diagnostic_windows": [2], "diagnostic_candidates": 3,
        "latency_prompt_len": 4, "latency_new_tokens": 2, "latency_repeats": 2, "recompute_baselines": True,
        "compare_source": "shipped", "compare_split": "validation", "n_compare_tokens": 64, "n_compare_cloze": 2,
    },
    "dry_run": {  # a paper-scale rehearsal (dry_run=True): every branch, the smallest sizes
        "targets": [1.02], "n_calib_windows": 1, "n_val_tokens": 32, "n_task_items": 2, "n_cloze_items": 2,
        "ridge_grid": [1.0], "diagnostic_windows": [1], "diagnostic_candidates": 1, "latency_repeats": 1,
        "n_compare_tokens": 32, "n_compare_cloze": 2,
    },
    "default": {  # the recorded runs (data/pruning/runs.json) were made with exactly these values
        "model_name": "smollm2-135m", "source": RECORDED_SOURCE, "device": "cpu", "targets": [1.1, 1.2, 1.3], "n_calib_windows": 16, "calib_ctx": 128, "calib_seeds": [0, 1, 2],
        "n_val_tokens": 8192, "val_ctx": 128, "n_task_items": 32, "n_cloze_items": 160, "cloze_ctx": 128,
        "ridge_grid": [0.01, 0.1, 1.0, 10.0], "diagnostic_windows": [16], "diagnostic_candidates": 12,
        "latency_prompt_len": 512, "latency_new_tokens": 128, "latency_repeats": 3, "recompute_baselines": False,
        "compare_source": "shipped", "compare_split": "validation", "n_compare_tokens": 4096, "n_compare_cloze": 32,
    },
    "paper": {  # a Llama-family model on one 80 GB GPU, 128 x 2048 WikiText-2 calibration, lm-eval tasks
        "model_name": "meta-llama/Llama-3.1-8B", "source": "wikitext", "device": "cuda",
        "targets": [1.1, 1.2, 1.3, 1.5], "n_calib_windows": 128, "calib_ctx": 2048, "calib_seeds": [0, 1, 2],
        "n_val_tokens": 262_144, "val_ctx": 2048, "n_task_items": 500, "n_cloze_items": 1000, "cloze_ctx": 1024,
        "ridge_grid": [0.01, 0.1, 1.0], "diagnostic_windows": [128], "diagnostic_candidates": 16,
        "latency_prompt_len": 1024, "latency_new_tokens": 512, "latency_repeats": 5, "recompute_baselines": True,
        "compare_source": "prose", "compare_split": "test", "n_compare_tokens": 262_144, "n_compare_cloze": 1000,
    },
}


def load_or_record(
    model: HookedTransformer, protocol: RecordingProtocol, hashes: dict[str, str], recompute: bool, prompt_len: int,
    new_tokens: int, repeats: int, root: Path = REPO_ROOT, model_name: str = EMBEDDED_NAME,
) -> tuple[LatencyModel, dict, dict, str]:
    """(latency model, its raw timings, the recorded runs, where they come from): measured and recorded
    in this run when ``recompute``, else loaded from ``model_name``'s recorded file under ``root`` (the
    repository) and checked. Another model than the embedded one may lack the greedy sublayer baselines
    (hours on two CPU cores) in its file; without a file, it gets every other method computed in this run."""
    relative = recorded_runs_file(model_name, protocol.source)
    command = rebuild_command(relative, model_name=model_name, source=protocol.source)
    path = root / relative
    live_only = not recompute and model_name != EMBEDDED_NAME and not path.is_file()
    if recompute or live_only:
        skipped = [m for m in protocol.methods if m in GREEDY_SUBLAYER] if live_only else []
        latency, raw = measure_latency_model(model, prompt_len, new_tokens, repeats)
        raw["machine"] = {"cpu": "this run's machine", "load_average": list(os.getloadavg())}
        runs = record_runs(model, raw, replace(protocol, methods=[m for m in protocol.methods if m not in skipped]))
        note = "computed in this run"
        if skipped:
            note += (f"; {' and '.join(skipped)} not run: there is no recorded file {relative} for {model_name} "
                     f"(`{command}` records one: hours on two CPU cores)")
        return latency, raw, runs, note
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: record it with `{command} --device cuda` "
            "(over 10 minutes on one H200 GPU; hours on two CPU cores), or set recompute_baselines=True")
    recorded = read_runs(path, relative)
    optional = GREEDY_SUBLAYER if model_name != EMBEDDED_NAME else []  # another model's file may lack them
    check_recorded(recorded, protocol, hashes, relative, optional)
    raw, where = recorded["latency"], recorded["machine"]["gpu"] or recorded["machine"]["cpu"]
    note = (f"LOADED, not computed in this run: runs and latency model from {relative}, recorded on {where} "
            f"({recorded['machine']['date_utc']}, latency {raw['prompt_len']}+{raw['new_tokens']} tokens on that device)")
    scales = time_scales(recorded)
    if len(scales) > 1:
        note += (f"; runs timed in {len(scales)} sessions, their pruning times put on the first session's machine by "
                 f"the ratio of timed dense passes (factors {', '.join(f'{s:.2f}' for s in scales.values())})")
    if absent := [m for m in optional if not any(m in runs for runs in recorded["runs"].values())]:
        note += f"; {' and '.join(absent)} not recorded for {model_name}"
    return latency_from_raw(raw, model.cfg.n_layers), raw, recorded, note


def live_check(model: HookedTransformer, recorded: dict, calib: torch.Tensor, latency: LatencyModel,
               protocol: RecordingProtocol, seed: str) -> dict:
    """Recompute here what is cheap, to check the loaded runs: ShortGPT's order on the first seed's
    calibration tokens ``calib`` [n, pos] and the dense perplexity."""
    order = run_method("shortgpt", model, calib, latency, protocol.targets, original_down_projections(model)).order
    shipped = recorded["runs"][seed]["shortgpt"]["order"]
    data = eval_data(model, protocol)
    return {"shortgpt_order_matches": order[: len(shipped)] == shipped, "dense_perplexity_here": perplexity(model, data.val_batches),
            "dense_perplexity_recorded": recorded["dense"]["perplexity"]}


def calibration_contrast(
    model: HookedTransformer, model_name: str, other_source: str, seed: int, target: float,
    evaluate: Callable[[HookedTransformer], dict], root: Path = REPO_ROOT,
) -> tuple[list[dict], str]:
    """(rows, where they come from): ``model_name``'s recording calibrated on ``other_source``, its seed
    ``seed`` snapshots at ``target`` rebuilt and scored by ``evaluate``; no rows where there is no such file."""
    relative = recorded_runs_file(model_name, other_source)
    if not (root / relative).is_file():
        return [], f"no recording of {model_name} calibrated on {other_source!r} ({relative})"
    rows = other_recording_rows(model, read_runs(root / relative, relative), seed, [target], evaluate, relative)
    return rows, f"orders LOADED from {relative}, snapshots rebuilt and measured in this run"
