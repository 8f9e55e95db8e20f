"""Notebook 04's tables, verdicts and computed sentences, from the runs' rows (no model needed).

* ``LATENCY_ESTIMATOR`` / ``latency_ratio``: the one attention/MLP latency-ratio estimator used in
  the figure title, the prose and the verdict (the median of the per-repeat ratios, bootstrapped).
* ``latency_table``: median time and repeats of each timed configuration.
* ``matched_table``: per method, quality at a matched speed-up (means over seeds of ``matched_rows``)
  with the speed-ups of the snapshots it is interpolated between.
* ``text_table``: per method, quality on human text beside the same snapshot's recorded quality
  "on the model's own text".
* ``claim_rows``: every paper-vs-here row (``utils.verdicts.claim_row``); ``check_rows``: the
  identities and contracts (``check_row``), apart from the claims.
* ``found_sentences``: which method wins at matched speed-up on each text, computed.
* ``coinciding``: methods that removed the same sublayers at every seed and target.

Public names: ``LATENCY_ESTIMATOR``, ``CALIBRATION_NOTE``, ``latency_ratio``, ``latency_table``, ``matched_table``,
``text_table``, ``claim_rows``, ``check_rows``, ``found_sentences``, ``coinciding``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from utils import verdicts
from utils.pruning.compare import MIN_SEEDS, paired_advantage
from utils.pruning.latency import latency_ratio_test
from utils.stats import Interval, bootstrap_interval

__all__ = [
    "CALIBRATION_NOTE",
    "LATENCY_ESTIMATOR",
    "check_rows",
    "claim_rows",
    "coinciding",
    "found_sentences",
    "latency_ratio",
    "latency_table",
    "matched_table",
    "text_table",
]

LATENCY_ESTIMATOR = "median over repeats of each repeat's attention/MLP saved-time ratio"
CALIBRATION_NOTE = ("orders recorded with calibration on the model's own text; "
                    "re-recording on human text: pending")
PAPER_BEST = "best trade-off; up to +23.88%p over existing methods (Llama-3-8B etc., 5 lm-eval tasks)"
PAIRED_RULE = "paired over calibration seeds; 95% bootstrap interval of SPRINT − other vs 0"


def latency_ratio(raw: Mapping[str, Any]) -> tuple[Interval | None, bool, str]:
    """(interval of the attention/MLP latency ratio, whether it excludes 1, its text), by
    ``LATENCY_ESTIMATOR``."""
    interval, testable = latency_ratio_test(dict(raw))
    if interval is None:
        return None, False, "undefined (no repeat saved time for both types)"
    return interval, testable, f"{interval.format()} (n={interval.n} repeats)"


def latency_table(raw: Mapping[str, Any]) -> list[dict]:
    """Per timed configuration (dense, attention removed, MLP removed): median time (ms) and repeats."""
    return [{"configuration": name, "median time": 1e3 * statistics.median(times), "repeats": len(times)}
            for name, times in raw["samples_s"].items()]


def _by_method(rows: Sequence[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in rows:
        out.setdefault(row["method"], []).append(row)
    return out


def matched_table(matched: Sequence[dict]) -> list[dict]:
    """Per method: mean over seeds of quality at the matched speed-up and of its snapshots' speed-ups."""
    out = []
    for name, sel in _by_method(matched).items():
        mean = lambda k, sel=sel: statistics.mean(r[k] for r in sel)  # noqa: E731
        out.append({"method": name, "seeds": len(sel), "matched speed-up": sel[0]["target"],
                    "snapshot below": mean("speedup_below"), "snapshot above": mean("speedup_above"),
                    "cloze accuracy": mean("cloze_acc"), "perplexity": mean("perplexity")})
    return out


def text_table(human: Sequence[dict], own: Sequence[dict], dense_human: Mapping[str, float],
               dense_own: Mapping[str, float]) -> list[dict]:
    """Per method (and the dense model): human-text quality first, the recorded quality of the same
    snapshot "on the model's own text" beside it; ``own`` rows are matched by method and target."""
    recorded = {(r["method"], r["target"]): r for r in own}
    rows = [("dense", 1.0, dense_human, dense_own)]
    rows += [(h["method"], h["speedup_paper"], h, recorded[(h["method"], h["target"])]) for h in human]
    return [{"method": name, "speed-up": speed, "perplexity (human text)": h["perplexity"],
             "perplexity (on the model's own text)": o["perplexity"],
             "cloze (human text)": h["cloze_acc"], "cloze (on the model's own text)": o["cloze_acc"]}
            for name, speed, h, o in rows]


def _speeds(matched: Sequence[dict], name: str) -> str:
    sel = [r for r in matched if r["method"] == name]
    low = statistics.mean(r["speedup_below"] for r in sel)
    high = statistics.mean(r["speedup_above"] for r in sel)
    return f"{name} between snapshots at {low:.3f}× and {high:.3f}×"


def claim_rows(
    matched: Sequence[dict], baselines: Sequence[str], ablations: Mapping[str, str], latency_text: str,
    latency_testable: bool, time_ratios: Sequence[float], human: Sequence[dict],
) -> list[dict]:
    """Every paper-vs-here row of notebook 04 (``utils.verdicts.claim_row``)."""
    speedup = matched[0]["target"]
    rows = []
    for other in [*baselines, *ablations]:
        cloze = paired_advantage(matched, speedup, "sprint", other, "cloze_acc")
        ppl = paired_advantage(matched, speedup, "sprint", other, "perplexity")
        here = (f"cloze {cloze.format(digits=1)} pts, log perplexity ratio {ppl.format()} "
                f"(on the model's own text; {_speeds(matched, 'sprint')}, {_speeds(matched, other)})")
        if other in ablations:
            claim = f"{ablations[other]}-awareness helps: SPRINT vs {other} at {speedup:g}× (cloze)"
            paper = "full SPRINT beats each ablation"
        else:
            claim, paper = f"SPRINT is more accurate than {other} at {speedup:g}× (cloze)", PAPER_BEST
        verdict = verdicts.from_interval(cloze, "rise", MIN_SEEDS)
        if ablations.get(other) == "latency" and not latency_testable:
            verdict = verdicts.not_testable(f"attention/MLP latency ratio {latency_text} contains 1")
        rows.append(verdicts.claim_row(claim, paper, here, verdict, PAIRED_RULE + " (cloze points)"))
    rows.append(_human_row(human, speedup))
    ratio = bootstrap_interval(list(time_ratios))
    times = f"{math.exp(ratio.estimate):.1f}× [{math.exp(ratio.low):.1f}, {math.exp(ratio.high):.1f}]"
    rows.append(verdicts.claim_row(
        "SPRINT prunes much faster than greedy perplexity-style search",
        "up to 22.41× less pruning time than the second-best method",
        f"{times} less time than the faster of FinerCut/BlockPruner (measured, geometric mean)",
        verdicts.from_interval(ratio, "rise", MIN_SEEDS),
        "paired over seeds; 95% bootstrap interval of log(greedy time / SPRINT time) vs 0",
        interval_text=times))
    return rows


def _human_row(human: Sequence[dict], speedup: float) -> dict:
    """SPRINT's rank by perplexity on human text (first calibration seed only: n = 1 seed)."""
    ppl = {r["method"]: r["perplexity"] for r in human if r["target"] == speedup}
    speed = {r["method"]: r["speedup_paper"] for r in human if r["target"] == speedup}
    best = min(ppl, key=ppl.get)
    here = (f"perplexity on human text: SPRINT {ppl['sprint']:.1f} at {speed['sprint']:.3f}×, "
            f"lowest {best} {ppl[best]:.1f} at {speed[best]:.3f}× (first snapshot ≥ {speedup:g}×)")
    seeds = len({r.get("seed", 0) for r in human})
    verdict = verdicts.too_few(seeds, MIN_SEEDS) or verdicts.not_testable("needs a paired interval")
    return verdicts.claim_row(f"SPRINT keeps the lowest perplexity on human text at {speedup:g}×",
                              PAPER_BEST, here, verdict, "paired over calibration seeds (needs "
                              f"{MIN_SEEDS}); one seed evaluated on human text here")


def check_rows(diagnostic: Sequence[dict], ridge: float, tokens: int, live: Mapping[str, Any]) -> list[dict]:
    """The identities and contracts of notebook 04 (``utils.verdicts.check_row``), apart from the claims."""
    in_sample = [d["tuned_in"] / d["untuned_in"] for d in diagnostic if "tuned_in" in d]
    rows = []
    if in_sample:
        rows.append(verdicts.check_row("least-squares refit never raises its in-sample error",
                                       "tuned/untuned in-sample ≤ 1 for every candidate",
                                       f"max {max(in_sample):.3f}", max(in_sample) <= 1 + 1e-6))
    held = [d["tuned_held"] / d["untuned_held"] for d in diagnostic
            if d["ridge"] == ridge and d["tokens"] == tokens]
    if held:
        interval = bootstrap_interval([math.log(h) for h in held])
        here = (f"{math.exp(interval.estimate):.2f}× [{math.exp(interval.low):.2f}, "
                f"{math.exp(interval.high):.2f}] over {len(held)} candidates, ridge {ridge:g}")
        rows.append(verdicts.check_row("closed-form refit lowers the pruned window's held-out error",
                                       "tuned/untuned held-out < 1×", here, interval.high < 0))
    if live:
        rows.append(verdicts.check_row("ShortGPT's order recomputed here", "equals the recorded one",
                                       str(live["shortgpt_order_matches"]), live["shortgpt_order_matches"]))
        here_ppl, rec = live["dense_perplexity_here"], live["dense_perplexity_recorded"]
        rows.append(verdicts.check_row("dense perplexity recomputed here (model's own text)",
                                       f"equals the recorded {rec:.3f}", f"{here_ppl:.3f}",
                                       abs(here_ppl / rec - 1) < 1e-3))
    return rows


def found_sentences(matched: Sequence[dict], human: Sequence[dict], speedup: float) -> str:
    """Which method wins at matched speed-up on the model's own text (cloze, mean over seeds) and
    which keeps the lowest perplexity on human text, computed."""
    table = {r["method"]: r for r in matched_table(matched)}
    best = max(table, key=lambda m: table[m]["cloze accuracy"])
    rank = sorted(table, key=lambda m: -table[m]["cloze accuracy"]).index("sprint") + 1
    ppl = {r["method"]: r["perplexity"] for r in human if r["target"] == speedup}
    human_rank = sorted(ppl, key=ppl.get)
    return (f"At a matched {speedup:g}× speed-up on the model's own text, {best} keeps the highest "
            f"cloze accuracy ({100 * table[best]['cloze accuracy']:.1f}%); SPRINT ranks {rank} of "
            f"{len(table)}. On human text (first calibration seed, each method's first snapshot ≥ "
            f"{speedup:g}×) {human_rank[0]} has the lowest perplexity ({ppl[human_rank[0]]:.1f}); SPRINT "
            f"ranks {human_rank.index('sprint') + 1} of {len(human_rank)} ({ppl['sprint']:.1f}). "
            f"(Calibration: {CALIBRATION_NOTE}.)")


def coinciding(rows: Sequence[dict]) -> list[str]:
    """``"a = b"`` for every pair of methods that removed the same sublayers at every seed and target."""
    picks: dict[str, list] = {}
    for r in sorted(rows, key=lambda r: (r["seed"], r["target"])):
        picks.setdefault(r["method"], []).append(tuple(r["pruned"]))
    names = list(picks)
    return [f"{a} = {b}" for i, a in enumerate(names) for b in names[i + 1:] if picks[a] == picks[b]]
