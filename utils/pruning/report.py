"""Notebook 04's tables, verdicts and computed sentences, from the runs' rows (no model needed).

* ``LATENCY_ESTIMATOR`` / ``latency_ratio``: the one attention/MLP latency-ratio estimator used in
  the figure title, the prose and the verdict (the median of the per-repeat ratios, bootstrapped).
* ``latency_table``: median time and repeats of each timed configuration.
* ``matched_table``: per method, quality at a matched speed-up (means over seeds of ``matched_rows``)
  with the speed-ups of the snapshots it is interpolated between.
* ``text_table``: per method, the recorded quality of a snapshot and the same snapshot's quality on
  another text, human text first and "the model's own text" last.
* ``calibration_note``: where the recorded orders' calibration tokens came from, in words.
* ``calibration_table`` / ``calibration_sentence``: the same text's quality of snapshots calibrated on
  two texts (this recording's and another's), and SPRINT's rank under each.
* ``claim_rows``: every paper-vs-here row (``utils.verdicts.claim_row``); ``check_rows``: the
  identities and contracts (``check_row``), apart from the claims.
* ``found_sentences``: which method wins at matched speed-up on each text, computed.
* ``coinciding``: methods that removed the same sublayers at every seed and target.

Public names: ``LATENCY_ESTIMATOR``, ``calibration_note``, ``calibration_table``, ``calibration_sentence``,
``latency_ratio``, ``latency_table``, ``matched_table``,
``text_table``, ``claim_rows``, ``check_rows``, ``found_sentences``, ``coinciding``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from utils import verdicts
from utils.data import text_name
from utils.pruning.compare import MIN_SEEDS, paired_advantage
from utils.pruning.latency import latency_ratio_test
from utils.stats import Interval, bootstrap_interval

__all__ = [
    "LATENCY_ESTIMATOR",
    "calibration_note",
    "calibration_sentence",
    "calibration_table",
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


def calibration_note(source: str) -> str:
    """Where the orders' calibration tokens came from: ``source``'s training split, named by ``text_name``."""
    return f"orders recorded with calibration on {text_name(source)} (the {source!r} corpus, training split)"


def text_table(recorded: Sequence[dict], other: Sequence[dict], dense: Mapping[str, float],
               dense_other: Mapping[str, float], source: str, other_source: str) -> list[dict]:
    """Per method (and the dense model): a snapshot's quality on the recording's text (``recorded``
    rows, matched to ``other`` by method and target) and on another text; each column is named by
    its text (``text_name``), human text first and the model's own text last."""
    texts = sorted([(text_name(source), 0), (text_name(other_source), 1)],
                   key=lambda t: t[0] == text_name("shipped"))
    by_key = {(r["method"], r["target"]): r for r in recorded}
    rows = [("dense", 1.0, (dense, dense_other))]
    rows += [(o["method"], o["speedup_paper"], (by_key[(o["method"], o["target"])], o)) for o in other]
    return [{"method": name, "speed-up": speed,
             **{f"{metric} ({text})": pair[i][key] for metric, key in (("perplexity", "perplexity"),
                                                                      ("cloze", "cloze_acc"))
                for text, i in texts}}
            for name, speed, pair in rows]


def _calibration_pairs(recorded: Sequence[dict], other: Sequence[dict]) -> list[tuple[dict, dict]]:
    """Each ``other`` row with the ``recorded`` row of the same method and target, in ``other``'s order."""
    by_key = {(r["method"], r["target"]): r for r in recorded}
    return [(by_key[(o["method"], o["target"])], o) for o in other]


def calibration_table(recorded: Sequence[dict], other: Sequence[dict], source: str, other_source: str) -> list[dict]:
    """Per method, matched by method and target: speed-up, perplexity, cloze and sublayers removed of its
    snapshot calibrated on ``source`` (``recorded``) and on ``other_source`` (``other``), both measured
    on the same text; columns name the calibration text. No cloze columns where ``other`` has no cloze."""
    named = [(f"calibrated on {text_name(src)}", i) for i, src in enumerate((source, other_source))]
    fields = (("speed-up", lambda r: r["speedup_paper"]), ("perplexity", lambda r: r["perplexity"]),
              ("cloze", lambda r: r["cloze_acc"]), ("attn/MLP removed", lambda r: f"{r['n_attn']}/{r['n_mlp']}"))
    if not all("cloze_acc" in o for o in other):
        fields = tuple(f for f in fields if f[0] != "cloze")
    return [{"method": pair[1]["method"], **{f"{field} ({name})": get(pair[i]) for field, get in fields
                                             for name, i in named}}
            for pair in _calibration_pairs(recorded, other)]


def calibration_sentence(recorded: Sequence[dict], other: Sequence[dict], source: str, other_source: str) -> str:
    """SPRINT's rank by perplexity on this recording's text under each calibration, with what it removed,
    and how many methods reach a lower perplexity there when calibrated on that text."""
    parts = []
    for rows, src in ((recorded, source), (other, other_source)):
        ppl = {r["method"]: r["perplexity"] for r in rows}
        sprint = next(r for r in rows if r["method"] == "sprint")
        rank = sorted(ppl, key=ppl.get).index("sprint") + 1
        parts.append(f"calibrated on {text_name(src)}, SPRINT ranks {rank} of {len(ppl)} by perplexity "
                     f"({sprint['perplexity']:.1f}; it removed {sprint['n_attn']} attention and {sprint['n_mlp']} "
                     "MLP sublayers)")
    gains = sum(mine["perplexity"] < theirs["perplexity"] for mine, theirs in _calibration_pairs(recorded, other))
    return (f"Measured on {text_name(source)}: " + "; ".join(parts) + f". {gains} of {len(other)} methods reach a "
            f"lower perplexity on {text_name(source)} when calibrated on it than when calibrated on "
            f"{text_name(other_source)}.")


def _speeds(matched: Sequence[dict], name: str) -> str:
    sel = [r for r in matched if r["method"] == name]
    low = statistics.mean(r["speedup_below"] for r in sel)
    high = statistics.mean(r["speedup_above"] for r in sel)
    return f"{name} between snapshots at {low:.3f}× and {high:.3f}×"


def claim_rows(
    matched: Sequence[dict], baselines: Sequence[str], ablations: Mapping[str, str], latency_text: str,
    latency_testable: bool, time_ratios: Sequence[float], other: Sequence[dict], source: str, other_source: str,
) -> list[dict]:
    """Every paper-vs-here row of notebook 04 (``utils.verdicts.claim_row``): the comparisons on the
    recording's text (``source``), then SPRINT's rank on ``other_source`` (``other``: one seed), then the
    pruning-time claim (``time_ratios``: log greedy / SPRINT time per seed; no row when there are none,
    so the claim reads as not run, like a comparison with a baseline that was not run)."""
    speedup = matched[0]["target"]
    rows = []
    for rival in [*baselines, *ablations]:
        cloze = paired_advantage(matched, speedup, "sprint", rival, "cloze_acc")
        ppl = paired_advantage(matched, speedup, "sprint", rival, "perplexity")
        here = (f"cloze {cloze.format(digits=1)} pts, log perplexity ratio {ppl.format()} "
                f"(on {text_name(source)}; {_speeds(matched, 'sprint')}, {_speeds(matched, rival)})")
        if rival in ablations:
            claim = f"{ablations[rival]}-awareness helps: SPRINT vs {rival} at {speedup:g}× (cloze)"
            paper = "full SPRINT beats each ablation"
        else:
            claim, paper = f"SPRINT is more accurate than {rival} at {speedup:g}× (cloze)", PAPER_BEST
        verdict = verdicts.from_interval(cloze, "rise", MIN_SEEDS)
        if ablations.get(rival) == "latency" and not latency_testable:
            verdict = verdicts.not_testable(f"attention/MLP latency ratio {latency_text} contains 1")
        rows.append(verdicts.claim_row(claim, paper, here, verdict, PAIRED_RULE + " (cloze points)"))
    rows.append(_other_text_row(other, speedup, other_source))
    if not time_ratios:  # no greedy sublayer baseline was run (another model's recording may lack them)
        return rows
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


def _other_text_row(other: Sequence[dict], speedup: float, source: str) -> dict:
    """SPRINT's rank by perplexity on ``source``'s text (first calibration seed only: n = 1 seed)."""
    ppl = {r["method"]: r["perplexity"] for r in other if r["target"] == speedup}
    speed = {r["method"]: r["speedup_paper"] for r in other if r["target"] == speedup}
    best, text = min(ppl, key=ppl.get), text_name(source)
    here = (f"perplexity on {text}: SPRINT {ppl['sprint']:.1f} at {speed['sprint']:.3f}×, "
            f"lowest {best} {ppl[best]:.1f} at {speed[best]:.3f}× (first snapshot ≥ {speedup:g}×)")
    seeds = len({r.get("seed", 0) for r in other})
    verdict = verdicts.too_few(seeds, MIN_SEEDS) or verdicts.not_testable("needs a paired interval")
    return verdicts.claim_row(f"SPRINT keeps the lowest perplexity on {text} at {speedup:g}×",
                              PAPER_BEST, here, verdict, "paired over calibration seeds (needs "
                              f"{MIN_SEEDS}); one seed evaluated on {text} here")


def check_rows(
    diagnostic: Sequence[dict], ridge: float, tokens: int, live: Mapping[str, Any], source: str,
    linear_refit: bool = True,
) -> list[dict]:
    """The identities and contracts of notebook 04 (``utils.verdicts.check_row``), apart from the claims.
    ``linear_refit`` False: a norm follows the MLP (Gemma), so the refit is a fit linearised through it and
    only its median in-sample error must fall, not every candidate's."""
    in_sample = [d["tuned_in"] / d["untuned_in"] for d in diagnostic if "tuned_in" in d]
    rows = []
    if in_sample and linear_refit:
        rows.append(verdicts.check_row("least-squares refit never raises its in-sample error",
                                       "tuned/untuned in-sample ≤ 1 for every candidate",
                                       f"max {max(in_sample):.3f}", max(in_sample) <= 1 + 1e-6))
    elif in_sample:
        median = statistics.median(in_sample)
        rows.append(verdicts.check_row("refit through the norm after the MLP lowers the in-sample error",
                                       "median tuned/untuned in-sample < 1 (a linearised fit: not every candidate)",
                                       f"median {median:.3f}, max {max(in_sample):.3f}", median < 1))
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
        rows.append(verdicts.check_row(f"dense perplexity recomputed here ({text_name(source)})",
                                       f"equals the recorded {rec:.3f}", f"{here_ppl:.3f}",
                                       abs(here_ppl / rec - 1) < 1e-3))
    return rows


def found_sentences(
    matched: Sequence[dict], other: Sequence[dict], speedup: float, source: str, other_source: str
) -> str:
    """Which method wins at matched speed-up on the recording's text (cloze, mean over seeds) and
    which keeps the lowest perplexity on the other text (first seed), computed."""
    table = {r["method"]: r for r in matched_table(matched)}
    best = max(table, key=lambda m: table[m]["cloze accuracy"])
    rank = sorted(table, key=lambda m: -table[m]["cloze accuracy"]).index("sprint") + 1
    ppl = {r["method"]: r["perplexity"] for r in other if r["target"] == speedup}
    other_rank = sorted(ppl, key=ppl.get)
    return (f"At a matched {speedup:g}× speed-up on {text_name(source)}, {best} keeps the highest "
            f"cloze accuracy ({100 * table[best]['cloze accuracy']:.1f}%); SPRINT ranks {rank} of "
            f"{len(table)}. On {text_name(other_source)} (first calibration seed, each method's first "
            f"snapshot ≥ {speedup:g}×) {other_rank[0]} has the lowest perplexity ({ppl[other_rank[0]]:.1f}); "
            f"SPRINT ranks {other_rank.index('sprint') + 1} of {len(other_rank)} ({ppl['sprint']:.1f}). "
            f"(Calibration: {calibration_note(source)}.)")


def coinciding(rows: Sequence[dict]) -> list[str]:
    """``"a = b"`` for every pair of methods that removed the same sublayers at every seed and target."""
    picks: dict[str, list] = {}
    for r in sorted(rows, key=lambda r: (r["seed"], r["target"])):
        picks.setdefault(r["method"], []).append(tuple(r["pruned"]))
    names = list(picks)
    return [f"{a} = {b}" for i, a in enumerate(names) for b in names[i + 1:] if picks[a] == picks[b]]
