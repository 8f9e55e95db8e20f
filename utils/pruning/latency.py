"""SPRINT's latency information: how long each sublayer type takes, measured in generation mode.

The paper weighs a sublayer's sensitivity by its latency (attention and MLP cost differently) and
stops pruning at a target speed-up. Here:

* ``measure_latency_model`` times the dense model and the model with ``LATENCY_FRACTION`` of its
  attentions (then of its MLPs) skipped, in interleaved repeats (``paired_samples``) of KV-cache
  generation (``generation_time``); ``latency_from_raw`` turns those timings into a ``LatencyModel``
  (per-sublayer latency of each type = median time saved / number removed).
* ``LatencyModel.estimate`` is the speed-up every method stops at: the paper's formula
  (Σ all sublayer latencies / Σ remaining ones) or, with ``formula="overhead"``, dense time /
  remaining time.
* ``latency_ratios`` / ``latency_ratio_test``: is the attention/MLP ratio distinguishable from 1 on
  this hardware (if not, the latency ablation cannot be tested).
* ``measured_speedup``: the real, timed speed-up of a pruned model.

Public names: ``LatencyModel``, ``measure_latency_model``, ``latency_from_raw``, ``generation_time``,
``timing_prompt``, ``paired_samples``, ``paired_times``, ``measured_speedup``, ``latency_ratios``,
``latency_ratio_test``, ``LATENCY_FRACTION``, ``MIN_LATENCY_S``, ``SPEEDUP_FORMULAS``.
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer
from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

from utils.stats import Interval, bootstrap_interval
from utils.sublayers import KINDS, Sublayer, set_skipped, skipped_now, sublayer

__all__ = [
    "LATENCY_FRACTION",
    "MIN_LATENCY_S",
    "SPEEDUP_FORMULAS",
    "LatencyModel",
    "Timer",
    "generation_time",
    "latency_from_raw",
    "latency_ratio_test",
    "latency_ratios",
    "measure_latency_model",
    "measured_speedup",
    "paired_samples",
    "paired_times",
    "timing_prompt",
]

LATENCY_FRACTION = 0.25  # share of each sublayer type removed to measure its latency
MIN_LATENCY_S = 1e-6  # floor for a per-sublayer latency that timing noise made non-positive
SPEEDUP_FORMULAS = ("paper", "overhead")

Timer = Callable[[HookedTransformer, torch.Tensor, int], float]  # (model, prompt, new tokens) -> seconds


@dataclass
class LatencyModel:
    """Generation-mode latency of the dense model and of one sublayer of each type (seconds).

    Two speed-up formulas: ``speedup`` (dense time / remaining time, overhead included: what a
    user measures) and ``paper_speedup`` (SPRINT's Σ all sublayer latencies / Σ remaining ones,
    overhead ignored). ``estimate`` is the one ``formula`` names: the stopping rule of every method.
    """

    dense_s: float
    per_sublayer_s: dict[str, float]
    n_layers: int
    formula: str = "paper"

    def __post_init__(self) -> None:
        if self.formula not in SPEEDUP_FORMULAS:
            raise ValueError(f"formula must be one of {SPEEDUP_FORMULAS}, got {self.formula!r}")

    def removed_s(self, pruned: Sequence[Sublayer | int]) -> float:
        """Summed latency of the distinct sublayers in ``pruned``."""
        units = {s if isinstance(s, Sublayer) else sublayer(s) for s in pruned}
        return sum(self.per_sublayer_s[s.kind] for s in units)

    @property
    def body_s(self) -> float:
        """Summed latency of all 2L sublayers."""
        return self.n_layers * sum(self.per_sublayer_s.values())

    def remaining_s(self, pruned: Sequence[Sublayer | int]) -> float:
        """Estimated latency once ``pruned`` are skipped."""
        return self.dense_s - self.removed_s(pruned)

    def speedup(self, pruned: Sequence[Sublayer | int]) -> float:
        """Estimated speed-up with overhead: dense latency / remaining latency."""
        remaining = self.remaining_s(pruned)
        if remaining <= 0:
            raise ValueError("the latency model predicts a non-positive latency; it was measured with too much noise")
        return self.dense_s / remaining

    def paper_speedup(self, pruned: Sequence[Sublayer | int]) -> float:
        """SPRINT's speed-up: Σ all sublayer latencies / Σ remaining sublayer latencies."""
        remaining = self.body_s - self.removed_s(pruned)
        return self.body_s / remaining if remaining > 0 else float("inf")

    def estimate(self, pruned: Sequence[Sublayer | int]) -> float:
        """The speed-up used as the stopping rule (``formula``)."""
        return self.paper_speedup(pruned) if self.formula == "paper" else self.speedup(pruned)


def generation_time(model: HookedTransformer, prompt: torch.Tensor, new_tokens: int) -> float:
    """Seconds for a greedy generation of ``new_tokens`` after ``prompt`` ([batch, pos]) with a KV cache."""
    sync = torch.cuda.synchronize if prompt.is_cuda else (lambda: None)  # time the GPU's work, not its queueing
    sync()
    start = time.perf_counter()
    cache = TransformerLensKeyValueCache.init_cache(model.cfg, model.cfg.device, prompt.shape[0])
    logits = model(prompt, past_kv_cache=cache, attention_mask=torch.ones_like(prompt))
    for _ in range(new_tokens):
        token = logits[:, -1].argmax(-1, keepdim=True)
        logits = model(token, past_kv_cache=cache, attention_mask=torch.ones_like(token))
    sync()
    return time.perf_counter() - start


def timing_prompt(model: HookedTransformer, length: int, seed: int = 0) -> torch.Tensor:
    """A fixed random prompt [1, length] for latency measurements."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.cfg.d_vocab, (1, length), generator=generator).to(model.cfg.device)


def paired_samples(
    model: HookedTransformer,
    configs: Sequence[Sequence[Sublayer | int]],
    prompt: torch.Tensor,
    new_tokens: int,
    repeats: int,
    warmup: int = 1,
    timer: Timer = generation_time,
) -> list[list[float]]:
    """Generation times of each skip configuration per repeat, interleaved so load drifts hit all alike."""
    before = skipped_now(model)
    samples: list[list[float]] = [[] for _ in configs]
    try:
        for rep in tqdm(range(warmup + repeats), desc="timing", leave=False):
            for i, config in enumerate(configs):
                set_skipped(model, config)
                seconds = timer(model, prompt, new_tokens)
                if rep >= warmup:
                    samples[i].append(seconds)
    finally:
        set_skipped(model, before)
    return samples


def paired_times(
    model: HookedTransformer,
    configs: Sequence[Sequence[Sublayer | int]],
    prompt: torch.Tensor,
    new_tokens: int,
    repeats: int,
    warmup: int = 1,
    timer: Timer = generation_time,
) -> list[float]:
    """Median generation time of each skip configuration (``paired_samples``)."""
    return [statistics.median(s) for s in paired_samples(model, configs, prompt, new_tokens, repeats, warmup, timer)]


def _spread(n_layers: int, count: int) -> list[int]:
    """``count`` layer indices spread evenly over the interior of ``n_layers`` layers."""
    step = n_layers / (count + 1)
    return sorted({min(n_layers - 1, round(step * (i + 1))) for i in range(count)})


def measure_latency_model(
    model: HookedTransformer,
    prompt_len: int,
    new_tokens: int,
    repeats: int,
    fraction: float = LATENCY_FRACTION,
    timer: Timer = generation_time,
    formula: str = "paper",
) -> tuple[LatencyModel, dict]:
    """SPRINT's latency model: time dense, and with ``fraction`` of the MLPs / attentions removed.

    Per-sublayer latency of a type = median time saved / number removed. Returns the model and the
    raw timings (every repeat, for the table and the noise of the attention/MLP ratio).
    """
    count = max(1, round(fraction * model.cfg.n_layers))
    layers = _spread(model.cfg.n_layers, count)
    removed = {kind: [Sublayer(layer, kind) for layer in layers] for kind in KINDS}
    prompt = timing_prompt(model, prompt_len)
    samples = paired_samples(model, [[], removed["attn"], removed["mlp"]], prompt, new_tokens, repeats, timer=timer)
    raw = {"samples_s": dict(zip(("dense", "attn_removed", "mlp_removed"), samples, strict=True)),
           "n_removed": len(layers), "layers": layers, "prompt_len": prompt_len, "new_tokens": new_tokens}
    return latency_from_raw(raw, model.cfg.n_layers, formula), raw


def latency_from_raw(raw: dict, n_layers: int, formula: str = "paper") -> LatencyModel:
    """The latency model from ``measure_latency_model``'s raw timings (also when loaded from a file)."""
    dense, attn, mlp = (statistics.median(raw["samples_s"][k]) for k in ("dense", "attn_removed", "mlp_removed"))
    per = {}
    for kind, t in zip(KINDS, (attn, mlp), strict=True):
        saved = (dense - t) / raw["n_removed"]
        if saved <= 0:
            warnings.warn(f"removing {kind} sublayers did not save time (noise); using {MIN_LATENCY_S} s", stacklevel=2)
        per[kind] = max(saved, MIN_LATENCY_S)
    return LatencyModel(dense, per, n_layers, formula)


def latency_ratios(raw: dict) -> list[float]:
    """Attention/MLP latency ratio of each repeat where both removals saved time (others are undefined)."""
    s = raw["samples_s"]
    pairs = zip(s["dense"], s["attn_removed"], s["mlp_removed"], strict=True)
    return [(d - a) / (d - m) for d, a, m in pairs if d - a > 0 and d - m > 0]


def latency_ratio_test(raw: dict, min_repeats: int = 3) -> tuple[Interval | None, bool]:
    """(bootstrap interval of the median attention/MLP ratio or None, whether the ratio differs from 1):
    testable only with ``min_repeats`` valid repeats and an interval that excludes 1."""
    ratios = latency_ratios(raw)
    if not ratios:
        return None, False
    interval = bootstrap_interval(ratios, statistic=statistics.median)
    return interval, len(ratios) >= min_repeats and not interval.low <= 1 <= interval.high


def measured_speedup(
    model: HookedTransformer, pruned: Sequence[Sublayer | int], prompt_len: int, new_tokens: int, repeats: int
) -> float:
    """Real speed-up of skipping ``pruned``: dense median time / pruned median time, interleaved."""
    dense, pruned_s = paired_times(model, [[], list(pruned)], timing_prompt(model, prompt_len), new_tokens, repeats)
    return dense / pruned_s
