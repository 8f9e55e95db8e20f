"""Notebook 04's comparisons of pruning methods over calibration seeds, from recorded (or live) runs.

* ``snapshot_rows``: one row per seed, method and target (the first step reaching it), with both
  speed-up formulas, the pruning time (put on the first recording session's machine) and quality.
* ``paired_advantage``: how much one method beats another on a metric, paired over seeds.
* ``closing_table``: per method, mean speed-ups and quality with bootstrap intervals over seeds.
* ``log_time_ratios``: per seed, how much longer the fastest of some methods took than SPRINT.
* ``interpolate_at`` / ``matched_rows``: compare at a matched speed-up: each method's quality
  interpolated linearly between its two snapshots nearest the target speed-up (paper formula).
Below ``MIN_SEEDS`` calibration seeds a comparison's verdict says "too few".

Public names: ``snapshot_rows``, ``paired_advantage``, ``per_seed``, ``closing_table``,
``log_time_ratios``, ``interpolate_at``, ``matched_rows``, ``HIGHER_IS_BETTER``, ``MIN_SEEDS``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from utils.pruning.latency import LatencyModel
from utils.pruning.recorded_runs import time_scales
from utils.stats import Interval, bootstrap_interval, paired_difference
from utils.sublayers import sublayer

__all__ = [
    "HIGHER_IS_BETTER",
    "MIN_SEEDS",
    "closing_table",
    "interpolate_at",
    "log_time_ratios",
    "matched_rows",
    "paired_advantage",
    "per_seed",
    "snapshot_rows",
]

HIGHER_IS_BETTER = {"cloze_acc": True, "probe_above_chance": True, "perplexity": False}
MIN_SEEDS = 3  # below this many calibration seeds a comparison says "too few"


def snapshot_rows(payload: Mapping[str, Any], latency: LatencyModel, targets: Sequence[float]) -> list[dict]:
    """One row per seed, method and target: the first recorded step whose estimate reaches the target,
    with both speed-up formulas, the pruning time to that step (on the first recording session's machine,
    see ``time_scales``) and its quality."""
    rows, scales = [], time_scales(payload)
    for seed, methods in payload["runs"].items():
        for name, run in methods.items():
            scale = scales[run.get("session", 0)]
            for target in targets:
                step = next((s for s in run["steps"] if s["estimate"] >= target), None)
                if step is None:
                    continue
                kinds = [sublayer(i).kind for i in step["pruned"]]
                rows.append({"seed": int(seed), "method": name, "target": target,
                             "speedup_paper": latency.paper_speedup(step["pruned"]),
                             "speedup_overhead": latency.speedup(step["pruned"]) if latency.remaining_s(step["pruned"]) > 0 else float("nan"),
                             "pruning_time_s": scale * step["time_s"], "session": run.get("session", 0),
                             **{k: v for k, v in step.items() if k not in ("pruned", "time_s", "estimate")},
                             "n_attn": kinds.count("attn"), "n_mlp": kinds.count("mlp"), "pruned": sorted(step["pruned"])})
    return rows


def per_seed(rows: Sequence[dict], method: str, target: float, metric: str) -> dict[int, float]:
    """``metric`` of ``method`` at ``target`` for every calibration seed that reached it."""
    return {r["seed"]: r[metric] for r in rows if r["method"] == method and r["target"] == target}


def paired_advantage(rows: Sequence[dict], target: float, reference: str, other: str, metric: str) -> Interval:
    """Interval over seeds of how much ``reference`` beats ``other`` on ``metric`` (positive = better):
    accuracy difference in points, or log-perplexity ratio ``log(ppl_other / ppl_reference)``."""
    a, b = per_seed(rows, other, target, metric), per_seed(rows, reference, target, metric)
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ValueError(f"{reference} and {other} share no seed at target {target}")
    if HIGHER_IS_BETTER[metric]:
        return paired_difference([100 * a[s] for s in seeds], [100 * b[s] for s in seeds])
    return paired_difference([-math.log(a[s]) for s in seeds], [-math.log(b[s]) for s in seeds])


def closing_table(rows: Sequence[dict], target: float, not_run: Mapping[str, str] | None = None) -> list[dict]:
    """Per method at ``target``: mean speed-ups and quality over seeds with bootstrap intervals; then a
    row for each method of ``not_run`` (method: why), its numbers empty and the reason as its note."""
    out = []
    for name in dict.fromkeys(r["method"] for r in rows):
        sel = [r for r in rows if r["method"] == name and r["target"] == target]
        if not sel:
            continue
        ci = lambda k, f=1.0, sel=sel: bootstrap_interval([f * r[k] for r in sel]).format(digits=1)  # noqa: E731
        mean = lambda k, sel=sel: statistics.mean(r[k] for r in sel)  # noqa: E731
        out.append({"method": name, "seeds": len(sel),
                    "speed-up (paper formula)": mean("speedup_paper"), "speed-up (with overhead)": mean("speedup_overhead"),
                    "cloze acc % [95% CI]": ci("cloze_acc", 100), "perplexity [95% CI]": ci("perplexity"),
                    "probes above chance, pts [95% CI]": ci("probe_above_chance", 100),
                    "pruning time (s, median)": statistics.median(r["pruning_time_s"] for r in sel),
                    "attn/MLP removed": f"{mean('n_attn'):.1f}/{mean('n_mlp'):.1f}"})
    return out + [{"method": name, "seeds": 0, "note": why} for name, why in (not_run or {}).items()]


def log_time_ratios(rows: Sequence[dict], target: float, others: Sequence[str], reference: str = "sprint") -> list[float]:
    """Per seed: log(fastest of ``others``' pruning time / ``reference``'s) to reach ``target``."""
    ratios = []
    for seed in sorted({r["seed"] for r in rows}):
        t = {r["method"]: r["pruning_time_s"] for r in rows if r["seed"] == seed and r["target"] == target}
        if reference in t and any(o in t for o in others):
            ratios.append(math.log(min(t[o] for o in others if o in t) / t[reference]))
    return ratios


def interpolate_at(points: Sequence[tuple[float, float]], target: float) -> float:
    """The value at speed-up ``target``, linear between the two (speed-up, value) points nearest it
    on either side; a point exactly at ``target`` is returned as is. Never extrapolates."""
    below = [p for p in points if p[0] <= target]
    above = [p for p in points if p[0] >= target]
    if not below or not above:
        reached = sorted(p[0] for p in points)
        raise ValueError(f"speed-up {target} is not bracketed by the snapshots' speed-ups {reached}")
    (x0, y0), (x1, y1) = max(below), min(above)
    return y0 if x1 == x0 else y0 + (y1 - y0) * (target - x0) / (x1 - x0)


def matched_rows(
    rows: Sequence[dict], speedup: float, metrics: Sequence[str], key: str = "speedup_paper",
    dense: Mapping[str, float] | None = None,
) -> list[dict]:
    """Per seed and method: each of ``metrics`` interpolated at the matched speed-up ``speedup``
    (``interpolate_at`` over that method's snapshots of that seed), with the speed-ups of the two
    snapshots it rests on (``speedup_below``, ``speedup_above``); ``target`` is ``speedup``, so the
    result goes into ``paired_advantage`` as it is. ``dense`` (its metrics) is every method's
    snapshot at 1×. Methods whose snapshots do not bracket ``speedup`` are left out."""
    out = []
    for seed, name in dict.fromkeys((r["seed"], r["method"]) for r in rows):
        own = [r for r in rows if r["seed"] == seed and r["method"] == name]
        own += [{key: 1.0, **dense}] if dense is not None else []
        speeds = [r[key] for r in own]
        if not (min(speeds) <= speedup <= max(speeds)):
            continue
        values = {m: interpolate_at([(r[key], r[m]) for r in own], speedup) for m in metrics}
        out.append({"seed": seed, "method": name, "target": speedup, **values,
                    "speedup_below": max(x for x in speeds if x <= speedup),
                    "speedup_above": min(x for x in speeds if x >= speedup)})
    return out
