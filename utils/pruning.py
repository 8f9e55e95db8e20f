"""Notebook 04: SPRINT (Park et al. 2025) and the block/sublayer pruning baselines it is compared with.

Units are the 2L sublayers (``utils.sublayers``: 2i = layer i's attention, 2i+1 its MLP). Pruning a
sublayer skips it and its pre-norm: it is never computed, so measured speed-ups are real.

* ``LatencyModel`` / ``measure_latency_model``: per-sublayer latency by type, measured on this
  machine in generation mode; the estimated speed-up is the stopping rule of every method.
* ``Checkpoints``: the residual stream at every sublayer boundary of the current pruned model on the
  calibration tokens, refreshed only from the last change onwards.
* ``sprint``: latency- and tunability-aware iterative pruning with closed-form tuning of the next
  MLP's down-projection (``fit_down_projection``); ablations switch latency and/or tuning off.
* ``sleb``, ``shortgpt``, ``finercut``, ``blockpruner``: the baselines, on the same calibration
  tokens and stopping rule.
Every method returns a ``PruneResult`` holding one ``Snapshot`` per target speed-up; ``apply`` puts
a snapshot (skipped sublayers and tuned weights) on the model, ``restore`` undoes it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer
from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

from utils.data import token_batches
from utils.sublayers import KINDS, Sublayer, all_sublayers, set_skipped, skipped_now, sublayer

BASELINE_METHODS = ["sleb", "shortgpt", "finercut", "blockpruner"]
PRESETS = {
    "smoke": {  # about 2 min on 2 cores: every code path (live recomputation, latency, diagnostic) at toy sizes
        "model_name": "smollm2-135m", "source": "shipped", "device": "cpu", "targets": [1.02, 1.03], "n_calib_windows": 2, "calib_ctx": 12, "calib_seeds": [0],
        "n_val_tokens": 64, "val_ctx": 32, "n_task_items": 4, "n_cloze_items": 4, "cloze_ctx": 32,
        "ridge_grid": [0.1, 1.0], "diagnostic_windows": [2], "diagnostic_candidates": 3,
        "latency_prompt_len": 4, "latency_new_tokens": 2, "latency_repeats": 2, "recompute_baselines": True,
    },
    "dry_run": {  # a paper-scale rehearsal (dry_run=True): every branch, the smallest sizes
        "targets": [1.02], "n_calib_windows": 1, "n_val_tokens": 32, "n_task_items": 2, "n_cloze_items": 2,
        "ridge_grid": [1.0], "diagnostic_windows": [1], "diagnostic_candidates": 1, "latency_repeats": 1,
    },
    "default": {  # the recorded runs (data/pruning/runs.json) were made with exactly these values
        "model_name": "smollm2-135m", "source": "shipped", "device": "cpu", "targets": [1.1, 1.2, 1.3], "n_calib_windows": 16, "calib_ctx": 128, "calib_seeds": [0, 1, 2],
        "n_val_tokens": 4096, "val_ctx": 128, "n_task_items": 32, "n_cloze_items": 160, "cloze_ctx": 128,
        "ridge_grid": [0.01, 0.1, 1.0, 10.0], "diagnostic_windows": [16], "diagnostic_candidates": 12,
        "latency_prompt_len": 512, "latency_new_tokens": 128, "latency_repeats": 3, "recompute_baselines": False,
    },
    "paper": {  # a Llama-family model on one 80 GB GPU, 128 x 2048 WikiText-2 calibration, lm-eval tasks
        "model_name": "meta-llama/Llama-3.1-8B", "source": "wikitext", "device": "cuda",
        "targets": [1.1, 1.2, 1.3, 1.5], "n_calib_windows": 128, "calib_ctx": 2048, "calib_seeds": [0, 1, 2],
        "n_val_tokens": 262_144, "val_ctx": 2048, "n_task_items": 500, "n_cloze_items": 1000, "cloze_ctx": 1024,
        "ridge_grid": [0.01, 0.1, 1.0], "diagnostic_windows": [128], "diagnostic_candidates": 16,
        "latency_prompt_len": 1024, "latency_new_tokens": 512, "latency_repeats": 5, "recompute_baselines": True,
    },
}
RECORDED_RUNS = "data/pruning/runs.json"  # relative to the repository root
LATENCY_FRACTION = 0.25  # share of each sublayer type removed to measure its latency
MIN_LATENCY_S = 1e-6  # floor for a per-sublayer latency that timing noise made non-positive
SPRINT_VARIANTS = {  # name: (latency-aware, tunability-aware)
    "sprint": (True, True),
    "sprint_no_latency": (False, True),
    "sprint_no_tuning": (True, False),
    "sprint_no_both": (False, False),
}
SPEEDUP_FORMULAS = ("paper", "overhead")
JS_CHUNK_ROWS = 32  # positions per chunk of the JS divergence (measured fastest on a 2-core CPU)


# ----------------------------------------------------------------------------- latency model


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
    timer: Callable[[HookedTransformer, torch.Tensor, int], float] = generation_time,
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
    timer: Callable[[HookedTransformer, torch.Tensor, int], float] = generation_time,
) -> list[float]:
    """Median generation time of each skip configuration (``paired_samples``)."""
    return [statistics.median(s) for s in paired_samples(model, configs, prompt, new_tokens, repeats, warmup, timer)]


def spread(n_layers: int, count: int) -> list[int]:
    """``count`` layer indices spread evenly over the interior of ``n_layers`` layers."""
    step = n_layers / (count + 1)
    return sorted({min(n_layers - 1, round(step * (i + 1))) for i in range(count)})


def measure_latency_model(
    model: HookedTransformer,
    prompt_len: int,
    new_tokens: int,
    repeats: int,
    fraction: float = LATENCY_FRACTION,
    timer: Callable[[HookedTransformer, torch.Tensor, int], float] = generation_time,
    formula: str = "paper",
) -> tuple[LatencyModel, dict]:
    """SPRINT's latency model: time dense, and with ``fraction`` of the MLPs / attentions removed.

    Per-sublayer latency of a type = median time saved / number removed. Returns the model and the
    raw timings (every repeat, for the table and the noise of the attention/MLP ratio).
    """
    count = max(1, round(fraction * model.cfg.n_layers))
    layers = spread(model.cfg.n_layers, count)
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


def latency_ratio_test(raw: dict, min_repeats: int = 3):
    """(bootstrap interval of the median attention/MLP ratio or None, whether the ratio differs from 1):
    testable only with ``min_repeats`` valid repeats and an interval that excludes 1."""
    from utils.stats import bootstrap_interval

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


# ----------------------------------------------------------------------------- weights


def original_down_projections(model: HookedTransformer) -> dict[int, torch.Tensor]:
    """A copy of every MLP's down-projection W_out (to restore between methods)."""
    return {i: block.mlp.W_out.detach().clone() for i, block in enumerate(model.blocks)}


def restore(model: HookedTransformer, originals: dict[int, torch.Tensor]) -> None:
    """Undo all pruning and tuning: no sublayer skipped, original W_out everywhere."""
    set_skipped(model, [])
    for layer, weight in originals.items():
        model.blocks[layer].mlp.W_out.data.copy_(weight)


@dataclass
class Snapshot:
    """A pruned model: the skipped sublayers and the tuned down-projections, when a target was reached."""

    pruned: list[int]
    tuned: dict[int, torch.Tensor]
    estimated_speedup: float
    pruning_time_s: float


class Clock:
    """Pruning wall time that leaves out the time spent in per-step callbacks (evaluation)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.excluded = 0.0

    def elapsed(self) -> float:
        """Seconds since the start, callbacks excluded."""
        return time.perf_counter() - self.started - self.excluded

    def call_excluded(self, fn: Callable[[], dict], *args) -> dict:
        """Run ``fn`` and exclude its time."""
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.excluded += time.perf_counter() - start


def apply(model: HookedTransformer, snapshot: Snapshot, originals: dict[int, torch.Tensor]) -> None:
    """Put ``snapshot`` on ``model`` (restoring everything else first)."""
    restore(model, originals)
    for layer, weight in snapshot.tuned.items():
        model.blocks[layer].mlp.W_out.data.copy_(weight)
    set_skipped(model, snapshot.pruned)


@dataclass
class PruneResult:
    """One method's pruning run: the order it pruned in and a snapshot per target speed-up."""

    method: str
    order: list[int] = field(default_factory=list)
    snapshots: dict[float, Snapshot] = field(default_factory=dict)
    total_time_s: float = 0.0
    steps: list[dict] = field(default_factory=list)  # per step: pruned so far, time, estimate, callback metrics


# ----------------------------------------------------------------------------- checkpoints


def apply_sublayer(model: HookedTransformer, index: int, x: torch.Tensor, skipped: set[int]) -> torch.Tensor:
    """Residual after sublayer ``index`` given the residual ``x`` before it (identity if skipped)."""
    if index in skipped:
        return x
    s = sublayer(index)
    block = model.blocks[s.layer]
    if s.kind == "attn":
        normed = block.ln1(x)
        return x + block.hook_attn_out(block.attn(query_input=normed, key_input=normed, value_input=normed))
    return x + block.apply_mlp(block.ln2(x))


def run_range(model: HookedTransformer, x: torch.Tensor, start: int, stop: int, skipped: set[int]) -> torch.Tensor:
    """Residual after sublayers ``start .. stop-1`` starting from the residual ``x`` before ``start``."""
    for index in range(start, stop):
        x = apply_sublayer(model, index, x, skipped)
    return x


def final_logits(model: HookedTransformer, resid: torch.Tensor) -> torch.Tensor:
    """Logits from the final residual stream."""
    return model.unembed(model.ln_final(resid))


class Checkpoints:
    """Residual stream of the current pruned model at every sublayer boundary on calibration tokens.

    ``resid[j]`` is the input of sublayer j (``resid[2L]`` the final residual), each [n, pos, d].
    ``commit(index)`` re-computes only the boundaries after ``index``.
    """

    def __init__(self, model: HookedTransformer, tokens: torch.Tensor) -> None:
        self.model = model
        self.tokens = tokens.to(model.cfg.device)
        self.n_sublayers = 2 * model.cfg.n_layers
        self.skipped = {s.index for s in skipped_now(model)}
        self.resid: list[torch.Tensor] = [model(self.tokens, stop_at_layer=0)]
        self.refresh(0)

    def refresh(self, start: int) -> None:
        """Re-compute ``resid[start+1:]`` from ``resid[start]`` with the model's current weights."""
        del self.resid[start + 1 :]
        x = self.resid[start]
        for index in range(start, self.n_sublayers):
            x = apply_sublayer(self.model, index, x, self.skipped)
            self.resid.append(x)

    def commit(self, indices: Sequence[int]) -> None:
        """Skip ``indices`` on the model from now on and refresh the boundaries after the first one."""
        self.skipped |= set(indices)
        set_skipped(self.model, self.skipped)
        self.refresh(min(indices))

    def logits_without(self, indices: Sequence[int]) -> torch.Tensor:
        """Output logits if ``indices`` were also skipped (runs only from the first of them)."""
        start = min(indices)
        x = run_range(self.model, self.resid[start], start, self.n_sublayers, self.skipped | set(indices))
        return final_logits(self.model, x)


# ----------------------------------------------------------------------------- SPRINT


def relative_l1(y: torch.Tensor, y_hat: torch.Tensor) -> float:
    """SPRINT's sensitivity: sum over samples of sum|y - y_hat| / sum|y| (per sample = first dim)."""
    dims = tuple(range(1, y.dim()))
    return float(((y - y_hat).abs().sum(dims) / y.abs().sum(dims)).sum())


def fit_down_projection(x: torch.Tensor, target: torch.Tensor, w0: torch.Tensor, ridge: float = 0.0) -> torch.Tensor:
    """Least-squares W minimising |x W - target|^2 + ridge * scale * |W - w0|^2, solved in float32.

    ``x`` [..., d_in] (MLP hidden activations), ``target`` [..., d_out]; ``scale`` is the mean
    diagonal of xᵀx, so ``ridge`` is relative. With ridge 0 the system must be full rank.
    """
    x2 = x.reshape(-1, x.shape[-1]).float()
    t2 = target.reshape(-1, target.shape[-1]).float()
    xtx = x2.T @ x2
    xtt = x2.T @ t2
    lam = ridge * float(xtx.diagonal().mean())
    if lam > 0:
        xtx = xtx + lam * torch.eye(xtx.shape[0], dtype=xtx.dtype, device=xtx.device)
        xtt = xtt + lam * w0.float()
    return torch.linalg.solve(xtx, xtt).to(w0.dtype)


@dataclass
class Candidate:
    """One sublayer's SPRINT scores: its window [index, next_mlp] and sensitivities."""

    index: int
    next_mlp: int | None  # the next unpruned MLP after it (None: the window runs to the end)
    sensitivity: float
    tuned_sensitivity: float | None = None
    tuned_weight: torch.Tensor | None = None


class Sprint:
    """SPRINT's scoring on checkpoints: untuned and tuned sensitivity of each unpruned sublayer.

    With ``use_cache`` a commit refreshes only the boundaries after the pruned sublayer and keeps
    the scores of windows that end before it; without, everything is recomputed from the embedding.
    """

    def __init__(self, checkpoints: Checkpoints, ridge: float, use_cache: bool = True) -> None:
        self.cp = checkpoints
        self.model = checkpoints.model
        self.ridge = ridge
        self.use_cache = use_cache
        self.cache: dict[int, Candidate] = {}

    def next_mlp(self, index: int) -> int | None:
        """The first unpruned MLP sublayer after ``index``."""
        for j in range(index + 1, self.cp.n_sublayers):
            if j % 2 == 1 and j not in self.cp.skipped:
                return j
        return None

    def _window(self, index: int, capture: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, int | None]:
        """(y, y_hat, x_hidden of the next MLP, next MLP) when ``index`` is removed."""
        t = self.next_mlp(index)
        stop = self.cp.n_sublayers if t is None else t + 1
        skipped = self.cp.skipped | {index}
        if t is None or not capture:
            return self.cp.resid[stop], run_range(self.model, self.cp.resid[index], index, stop, skipped), None, t
        x_in = run_range(self.model, self.cp.resid[index], index, t, skipped)
        block = self.model.blocks[t // 2]
        store: dict[str, torch.Tensor] = {}
        point = block.mlp.hook_post  # hook this one point directly: model.hooks() walks every module
        point.add_hook(lambda act, hook: store.update(post=act))
        try:
            y_hat = x_in + block.apply_mlp(block.ln2(x_in))
        finally:
            point.remove_hooks()
        return self.cp.resid[stop], y_hat, store["post"], t

    def untuned(self, index: int) -> Candidate:
        """Sensitivity of removing ``index``, measured after the next unpruned MLP."""
        if index in self.cache:
            return self.cache[index]
        y, y_hat, _, t = self._window(index, capture=False)
        self.cache[index] = Candidate(index, t, relative_l1(y, y_hat))
        return self.cache[index]

    def tuned(self, index: int) -> Candidate:
        """Untuned scores plus the sensitivity after re-fitting the next MLP's W_out by least squares."""
        cand = self.untuned(index)
        if cand.tuned_sensitivity is not None:
            return cand
        if cand.next_mlp is None:  # nothing after it to tune
            cand.tuned_sensitivity = cand.sensitivity
            return cand
        y, y_hat, hidden, t = self._window(index, capture=True)
        mlp = self.model.blocks[t // 2].mlp
        rest = y_hat - hidden @ mlp.W_out  # residual minus the down-projection's part
        weight = fit_down_projection(hidden, y - rest, mlp.W_out.detach(), self.ridge)
        cand.tuned_weight = weight
        cand.tuned_sensitivity = relative_l1(y, rest + hidden @ weight)
        return cand

    def commit(self, cand: Candidate) -> None:
        """Prune ``cand`` (and keep its tuned W_out if any); drop cached scores it invalidates."""
        if cand.tuned_weight is not None:
            self.model.blocks[cand.next_mlp // 2].mlp.W_out.data.copy_(cand.tuned_weight)
        if self.use_cache:  # windows that end before the pruned sublayer are unchanged
            self.cp.commit([cand.index])
            self.cache = {i: c for i, c in self.cache.items() if c.next_mlp is not None and c.next_mlp < cand.index}
        else:  # from scratch: every boundary and every score is recomputed
            set_skipped(self.model, self.cp.skipped | {cand.index})
            self.cp = Checkpoints(self.model, self.cp.tokens)
            self.cache = {}

    def scores(self, latency: LatencyModel | None, top_k: int, tune: bool) -> list[tuple[float, Candidate]]:
        """(score, candidate) for every unpruned sublayer, lowest first.

        Tuned scores are computed for the ``top_k`` lowest untuned ones; cached tuned scores that are
        still valid compete too (as in the official code). Others are ranked by untuned score.
        """
        weight = (lambda i: latency.per_sublayer_s[sublayer(i).kind]) if latency else (lambda i: 1.0)
        live = [i for i in range(self.cp.n_sublayers) if i not in self.cp.skipped]
        by_untuned = sorted((self.untuned(i) for i in live), key=lambda c: c.sensitivity / weight(c.index))
        if tune:
            for cand in by_untuned[:top_k]:
                self.tuned(cand.index)
        value = lambda c: c.tuned_sensitivity if tune and c.tuned_sensitivity is not None else c.sensitivity
        return sorted(((value(c) / weight(c.index), c) for c in by_untuned), key=lambda p: p[0])


StepCallback = Callable[[HookedTransformer], dict]


def _after_step(
    result: PruneResult, model: HookedTransformer, latency: LatencyModel, pruned: list[int], tuned: dict,
    clock: Clock, targets: Sequence[float], on_step: StepCallback | None,
) -> None:
    """Record the step (time, estimate) and a snapshot for every target just reached; at such a step
    also ``on_step``'s metrics of the pruned model (its time left out of the pruning time)."""
    speed, elapsed = latency.estimate(pruned), clock.elapsed()
    reached = [t for t in targets if t not in result.snapshots and speed >= t]
    metrics = clock.call_excluded(on_step, model) if on_step and reached else {}
    result.steps.append({"pruned": list(pruned), "time_s": elapsed, "estimate": speed, **metrics})
    for target in reached:
        result.snapshots[target] = Snapshot(list(pruned), {k: v.clone() for k, v in tuned.items()}, speed, elapsed)


def sprint(
    model: HookedTransformer,
    calib: torch.Tensor,
    latency: LatencyModel,
    targets: Sequence[float],
    latency_aware: bool = True,
    tuning: bool = True,
    top_k: int = 5,
    ridge: float = 0.1,
    name: str = "sprint",
    use_cache: bool = True,
    on_step: StepCallback | None = None,
) -> PruneResult:
    """SPRINT: prune the lowest (tuned) sensitivity / latency sublayer until each target is reached."""
    clock = Clock()
    state = Sprint(Checkpoints(model, calib), ridge, use_cache)
    result, pruned, tuned = PruneResult(name), [], {}
    bar = tqdm(desc=name, total=2 * model.cfg.n_layers, leave=False)
    while len(result.snapshots) < len(targets) and len(pruned) < 2 * model.cfg.n_layers - 1:
        _, best = state.scores(latency if latency_aware else None, top_k, tuning)[0]
        if best.tuned_weight is not None and tuning:
            tuned[best.next_mlp // 2] = best.tuned_weight
        else:
            best.tuned_weight = None
        state.commit(best)
        pruned.append(best.index)
        bar.update()
        _after_step(result, model, latency, pruned, tuned, clock, targets, on_step)
    bar.close()
    result.order, result.total_time_s = pruned, clock.elapsed()
    return result


# ----------------------------------------------------------------------------- baselines


def mean_nll(logits: torch.Tensor, tokens: torch.Tensor) -> float:
    """Mean next-token negative log-likelihood (nats) of ``tokens`` under ``logits``."""
    scored = logits[:, :-1]
    return float((scored.logsumexp(-1) - scored.gather(-1, tokens[:, 1:, None]).squeeze(-1)).mean())


def js_divergence(p_logits: torch.Tensor, q_logits: torch.Tensor, rows: int = JS_CHUNK_ROWS) -> float:
    """Mean (over positions) Jensen-Shannon divergence (nats) between two logit tensors' distributions.

    Computed ``rows`` positions at a time, so the intermediates stay in cache (over 2,048 x 49K: 2.7x faster on
    one thread, 5x on two)."""
    p2, q2 = p_logits.reshape(-1, p_logits.shape[-1]), q_logits.reshape(-1, q_logits.shape[-1])
    total = 0.0
    for start in range(0, p2.shape[0], rows):
        logp, logq = p2[start : start + rows].log_softmax(-1), q2[start : start + rows].log_softmax(-1)
        logm = torch.logaddexp(logp, logq) - math.log(2.0)
        total += float((logp.exp() * (logp - logm) + logq.exp() * (logq - logm)).sum())
    return 0.5 * total / p2.shape[0]


def greedy(
    model: HookedTransformer,
    calib: torch.Tensor,
    latency: LatencyModel,
    targets: Sequence[float],
    units: list[tuple[int, ...]],
    loss: Callable[[torch.Tensor], float],
    name: str,
    on_step: StepCallback | None = None,
) -> PruneResult:
    """Remove, one at a time, the unit whose removal gives the lowest ``loss(logits)`` until each target."""
    clock = Clock()
    cp = Checkpoints(model, calib)
    result, pruned, remaining = PruneResult(name), [], list(units)
    bar = tqdm(desc=name, total=len(units), leave=False)
    while len(result.snapshots) < len(targets) and remaining:
        best = min(remaining, key=lambda u: loss(cp.logits_without(u)))
        remaining.remove(best)
        cp.commit(best)
        pruned.extend(best)
        bar.update()
        _after_step(result, model, latency, pruned, {}, clock, targets, on_step)
    bar.close()
    result.order, result.total_time_s = pruned, clock.elapsed()
    return result


def block_units(model: HookedTransformer, keep_ends: bool = False) -> list[tuple[int, int]]:
    """Whole layers as (attention, MLP) index pairs; ``keep_ends`` excludes the first and last."""
    layers = range(1, model.cfg.n_layers - 1) if keep_ends else range(model.cfg.n_layers)
    return [(2 * i, 2 * i + 1) for i in layers]


def sleb(model, calib, latency, targets, on_step=None) -> PruneResult:
    """SLEB: whole blocks, greedily by calibration NLL, first and last block kept."""
    units = block_units(model, keep_ends=True)
    return greedy(model, calib, latency, targets, units, lambda lg: mean_nll(lg, calib), "sleb", on_step)


def blockpruner(model, calib, latency, targets, on_step=None) -> PruneResult:
    """BlockPruner: sublayers, greedily by calibration perplexity (NLL gives the same order)."""
    units = [(s.index,) for s in all_sublayers(model)]
    return greedy(model, calib, latency, targets, units, lambda lg: mean_nll(lg, calib), "blockpruner", on_step)


def finercut(model, calib, latency, targets, on_step=None) -> PruneResult:
    """FinerCut: sublayers, greedily by JS divergence from the dense model's output distribution."""
    dense = Checkpoints(model, calib)
    reference = final_logits(model, dense.resid[-1])
    units = [(s.index,) for s in all_sublayers(model)]
    return greedy(model, calib, latency, targets, units, lambda lg: js_divergence(reference, lg), "finercut", on_step)


def block_influence(checkpoints: Checkpoints) -> list[float]:
    """ShortGPT's Block Influence per layer: 1 - mean cosine(layer input, layer output) over tokens."""
    cos = torch.nn.functional.cosine_similarity
    return [
        float(1 - cos(checkpoints.resid[2 * i], checkpoints.resid[2 * i + 2], dim=-1).mean())
        for i in range(checkpoints.n_sublayers // 2)
    ]


def shortgpt(model, calib, latency, targets, on_step=None) -> PruneResult:
    """ShortGPT: whole layers in one shot, lowest Block Influence first, until each target."""
    clock = Clock()
    influence = block_influence(Checkpoints(model, calib))
    result, pruned = PruneResult("shortgpt"), []
    try:
        for layer in sorted(range(len(influence)), key=influence.__getitem__):
            if len(result.snapshots) == len(targets):
                break
            pruned.extend((2 * layer, 2 * layer + 1))
            set_skipped(model, pruned)
            _after_step(result, model, latency, pruned, {}, clock, targets, on_step)
    finally:
        set_skipped(model, [])
    result.order, result.total_time_s = pruned, clock.elapsed()
    return result


BASELINES = {"sleb": sleb, "shortgpt": shortgpt, "finercut": finercut, "blockpruner": blockpruner}


def run_method(
    name: str,
    model: HookedTransformer,
    calib: torch.Tensor,
    latency: LatencyModel,
    targets: Sequence[float],
    originals: dict[int, torch.Tensor],
    top_k: int = 5,
    ridge: float = 0.1,
    on_step: StepCallback | None = None,
) -> PruneResult:
    """Run one method (a SPRINT variant or a baseline) from the dense model; restores it afterwards.

    ``on_step(model)`` is called after every pruning step with the model in its pruned (and tuned)
    state; its dict is stored in ``result.steps`` and its time is left out of the pruning time."""
    if name not in SPRINT_VARIANTS and name not in BASELINES:
        raise ValueError(f"unknown method {name!r}; choose from {[*SPRINT_VARIANTS, *BASELINES]}")
    calib = calib.to(model.cfg.device)  # the greedy losses compare logits with these tokens
    restore(model, originals)
    try:
        if name in SPRINT_VARIANTS:
            aware, tune = SPRINT_VARIANTS[name]
            return sprint(model, calib, latency, targets, aware, tune, top_k, ridge, name, on_step=on_step)
        return BASELINES[name](model, calib, latency, targets, on_step)
    finally:
        restore(model, originals)


# ----------------------------------------------------------------------------- calibration and the refit diagnostic


def calibration_split(
    model: HookedTransformer, n_windows: int, ctx: int, seed: int, source: str = "shipped"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Calibration windows [n_windows, ctx] and as many held-out windows, disjoint, from the train split.

    The shipped corpus is shuffled by ``seed``; a streamed corpus is read in order and seed s takes
    the s-th block of 2 * n_windows windows.
    """
    shuffle = seed if source == "shipped" else None
    blocks = 1 if source == "shipped" else seed + 1
    tokens = torch.cat(list(token_batches(model, "train", 2 * n_windows * ctx * blocks, ctx, 64, source, shuffle)))
    tokens = tokens[-2 * n_windows :]
    return tokens[:n_windows], tokens[n_windows:]


def tokens_hash(tokens: torch.Tensor) -> str:
    """A short content hash of a token tensor (shape and ids), to check that loaded runs match."""
    data = tokens.detach().cpu().to(torch.int64).numpy()
    return hashlib.sha256(str(data.shape).encode() + data.tobytes()).hexdigest()[:16]


@dataclass
class RefitData:
    """One candidate's window on some tokens: the next MLP's hidden activations, the rest, the target."""

    hidden: torch.Tensor
    rest: torch.Tensor
    y: torch.Tensor
    y_hat: torch.Tensor
    w0: torch.Tensor


def refit_data(state: Sprint, index: int) -> RefitData | None:
    """The refit problem of removing ``index`` on ``state``'s tokens (None when no MLP follows it)."""
    y, y_hat, hidden, t = state._window(index, capture=True)
    if t is None:
        return None
    w0 = state.model.blocks[t // 2].mlp.W_out.detach()
    return RefitData(hidden, y_hat - hidden @ w0, y, y_hat, w0)


def refit_errors(fit: RefitData, held: RefitData, ridge: float) -> dict[str, float]:
    """Relative L1 error per window, untuned and tuned (fitted on ``fit``), in-sample and held-out."""
    weight = fit_down_projection(fit.hidden, fit.y - fit.rest, fit.w0, ridge)
    per = lambda y, y_hat: relative_l1(y, y_hat) / y.shape[0]  # noqa: E731
    return {
        "untuned_in": per(fit.y, fit.y_hat), "untuned_held": per(held.y, held.y_hat),
        "tuned_in": per(fit.y, fit.rest + fit.hidden @ weight), "tuned_held": per(held.y, held.rest + held.hidden @ weight),
    }


@torch.no_grad()
def refit_diagnostic(
    model: HookedTransformer, calib: torch.Tensor, heldout: torch.Tensor, ridges: Sequence[float], n_candidates: int = 0
) -> list[dict]:
    """Is the closed-form refit well-posed? For each candidate sublayer of the dense model and ridge:
    untuned and tuned error in-sample (calibration) and held-out. ``n_candidates`` > 0 takes that many
    candidates spread over the model (0: all)."""
    restore_after = skipped_now(model)
    fit_state, held_state = Sprint(Checkpoints(model, calib), 0.0), Sprint(Checkpoints(model, heldout), 0.0)
    indices = [i for i in range(2 * model.cfg.n_layers) if fit_state.next_mlp(i) is not None]
    if n_candidates:
        indices = [indices[round(k * (len(indices) - 1) / max(n_candidates - 1, 1))] for k in range(min(n_candidates, len(indices)))]
    rows = []
    for index in tqdm(sorted(set(indices)), desc="refit diagnostic", leave=False):
        fit, held = refit_data(fit_state, index), refit_data(held_state, index)
        rows += [{"index": index, "ridge": r, "tokens": calib.numel(), **refit_errors(fit, held, r)} for r in ridges]
    set_skipped(model, restore_after)
    return rows


def diagnostic_summary(rows: Sequence[dict]) -> list[dict]:
    """Per (tokens, ridge): median tuned/untuned error ratio in-sample and held-out, and the Spearman
    correlation of each score's in-sample ranking of candidates with the held-out tuned error."""
    from scipy.stats import spearmanr

    groups: dict[tuple[int, float], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["tokens"], row["ridge"]), []).append(row)
    out = []
    for (tokens, ridge), group in sorted(groups.items()):
        col = {k: [g[k] for g in group] for k in ("untuned_in", "untuned_held", "tuned_in", "tuned_held")}
        rank = {k: float(spearmanr(col[k], col["tuned_held"]).statistic) if len(group) > 2 else float("nan")
                for k in ("tuned_in", "untuned_in")}
        out.append({"tokens": tokens, "ridge": ridge, "n_candidates": len(group),
                    "tuned/untuned in-sample": _median_ratio(col["tuned_in"], col["untuned_in"]),
                    "tuned/untuned held-out": _median_ratio(col["tuned_held"], col["untuned_held"]),
                    "rank corr tuned score": rank["tuned_in"], "rank corr untuned score": rank["untuned_in"]})
    return out


def _median_ratio(a: Sequence[float], b: Sequence[float]) -> float:
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def choose_ridge(summary: Sequence[dict], tokens: int) -> float:
    """The ridge with the lowest held-out tuned/untuned error ratio at ``tokens`` calibration tokens."""
    rows = [r for r in summary if r["tokens"] == tokens]
    if not rows:
        raise ValueError(f"the diagnostic has no rows at {tokens} calibration tokens")
    return min(rows, key=lambda r: r["tuned/untuned held-out"])["ridge"]


# ----------------------------------------------------------------------------- recorded runs


@dataclass
class Protocol:
    """What a recorded set of runs depends on: sizes, seeds, methods (the notebook's parameters)."""

    targets: list[float]
    n_calib_windows: int
    calib_ctx: int
    calib_seeds: list[int]
    n_val_tokens: int
    val_ctx: int
    n_task_items: int
    n_cloze_items: int
    cloze_ctx: int
    methods: list[str]
    top_k: int
    ridge_grid: list[float]
    diagnostic_windows: list[int]
    diagnostic_candidates: int = 0
    source: str = "shipped"

    @classmethod
    def from_params(cls, params: dict) -> Protocol:
        """The protocol from a dict holding (at least) every field."""
        return cls(**{k: params[k] for k in cls.__dataclass_fields__ if k in params})


@dataclass
class EvalData:
    """Held-out evaluation data: perplexity windows, cloze items and the templated probe tasks."""

    val_batches: list[torch.Tensor]
    cloze_items: list
    cloze_ctx: int
    tasks: dict


def eval_data(model: HookedTransformer, protocol: Protocol, seed: int = 0) -> EvalData:
    """Validation windows, cloze items from validation documents and the probe suite."""
    from utils import tasks as task_suite
    from utils.cloze import last_word_items
    from utils.data import corpus_texts, load_facts

    val = list(token_batches(model, "validation", protocol.n_val_tokens, protocol.val_ctx, 8, protocol.source))
    items = last_word_items(corpus_texts("validation", protocol.source), protocol.n_cloze_items)
    return EvalData(val, items, protocol.cloze_ctx, task_suite.build_tasks(load_facts(), protocol.n_task_items, seed))


def quality(model: HookedTransformer, data: EvalData, kept_tasks: Sequence[str]) -> dict[str, float]:
    """Perplexity, cloze accuracy, and probe accuracy above chance (kept tasks) of the model's current state."""
    from utils.cloze import cloze_correct
    from utils.evaluation import multiple_choice, perplexity
    from utils.tasks import chance_level

    correct = cloze_correct(model, data.cloze_items, data.cloze_ctx)
    probes = {t: multiple_choice(model, data.tasks[t])["acc"] - chance_level(data.tasks[t]) for t in kept_tasks}
    return {"perplexity": perplexity(model, data.val_batches), "cloze_acc": sum(correct) / len(correct),
            "probe_above_chance": statistics.mean(probes.values()) if probes else float("nan"),
            **{f"probe/{t}": v for t, v in probes.items()}}


def record_runs(
    model: HookedTransformer, latency_raw: dict, protocol: Protocol, ridge: float | None = None,
    on_progress: Callable[[dict], None] | None = None, resume: dict | None = None,
    methods: Sequence[str] | None = None, session: int = 0,
) -> dict:
    """Everything notebook 04 compares: the refit diagnostic (first seed), then for each calibration seed
    every method's order, measured cumulative pruning time and quality at each target.

    ``ridge`` None chooses it by the diagnostic (lowest held-out error at the protocol's calibration size).
    ``on_progress(partial payload)`` is called after every method (e.g. to save partial work).
    ``resume``, a partial payload of the same protocol, is continued: its latency model, diagnostic,
    ridge and finished methods are kept and only the missing (seed, method) runs are made.
    ``methods`` limits this call to those methods (the payload stays partial until every one is recorded);
    each run keeps ``session``, the index of the recording session (machine) that timed it.
    """
    from utils.evaluation import task_table

    data = eval_data(model, protocol)
    originals = original_down_projections(model)
    if resume is not None:
        payload = resumable(resume, protocol)
        latency_raw, chosen, kept = payload["latency"], payload["ridge"], payload["kept_tasks"]
    else:
        table = task_table(model, data.tasks)
        kept = [row["task"] for row in table if row["kept"]]
        diagnostic = []
        for n_windows in protocol.diagnostic_windows:
            calib, held = calibration_split(model, n_windows, protocol.calib_ctx, protocol.calib_seeds[0], protocol.source)
            diagnostic += refit_diagnostic(model, calib, held, protocol.ridge_grid, protocol.diagnostic_candidates)
        summary = diagnostic_summary(diagnostic)
        chosen = choose_ridge(summary, protocol.n_calib_windows * protocol.calib_ctx) if ridge is None else ridge
        payload = {"kind": "runs", "complete": False, "protocol": protocol.__dict__, "calibration_hashes": {},
                   "latency": latency_raw, "dense": quality(model, data, kept), "tasks": table, "kept_tasks": kept,
                   "diagnostic": diagnostic, "diagnostic_summary": summary, "ridge": chosen, "runs": {}}
    latency = latency_from_raw(latency_raw, model.cfg.n_layers)
    on_step = lambda m: quality(m, data, kept)  # noqa: E731
    unknown = set(methods or ()) - set(protocol.methods)
    if unknown:
        raise ValueError(f"methods {sorted(unknown)} are not in the protocol's {protocol.methods}")
    for seed in protocol.calib_seeds:
        calib, _ = calibration_split(model, protocol.n_calib_windows, protocol.calib_ctx, seed, protocol.source)
        digest = tokens_hash(calib)
        if payload["calibration_hashes"].setdefault(str(seed), digest) != digest:
            raise ValueError(f"cannot resume: seed {seed}'s calibration tokens differ from the partial recording's")
        runs = payload["runs"].setdefault(str(seed), {})
        todo = [m for m in protocol.methods if m not in runs and (methods is None or m in methods)]
        for name in tqdm(todo, desc=f"seed {seed}"):
            result = run_method(name, model, calib, latency, protocol.targets, originals, protocol.top_k, chosen, on_step)
            runs[name] = {"order": result.order, "total_time_s": result.total_time_s, "steps": result.steps, "session": session}
            if on_progress:
                on_progress(payload)
        payload["runs"][str(seed)] = {name: runs[name] for name in protocol.methods if name in runs}  # protocol order
    payload["complete"] = not any(missing_runs(payload).values())
    return payload


def missing_runs(payload: dict) -> dict[int, list[str]]:
    """Per calibration seed of a recording's protocol: the methods it has no run for yet."""
    protocol = payload["protocol"]
    return {s: [m for m in protocol["methods"] if m not in payload["runs"].get(str(s), {})] for s in protocol["calib_seeds"]}


def reference_pass_s(model: HookedTransformer, tokens: torch.Tensor, repeats: int = 3) -> float:
    """Median wall time of a dense forward pass over ``tokens``: the speed of the machine that times runs."""
    tokens = tokens.to(model.cfg.device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(tokens)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_scales(payload: dict) -> dict[int, float]:
    """Per recording session: the factor that puts its pruning times on the first session's machine
    (ratio of their timed dense passes); 1 for a recording made in one session."""
    passes = [s.get("reference_pass_s") for s in payload.get("sessions", [])]
    if not passes or None in passes:
        return {i: 1.0 for i in range(max(len(passes), 1))}
    return {i: passes[0] / p for i, p in enumerate(passes)}


def resumable(partial: dict, protocol: Protocol) -> dict:
    """A copy of a partial recording to continue, after checking it was made with ``protocol``."""
    if partial.get("complete", True):
        raise ValueError("cannot resume a complete recording; delete it or write to another file")
    recorded = Protocol.from_params(partial["protocol"])
    if recorded != protocol:
        raise ValueError(f"cannot resume: the partial recording used another protocol ({recorded} vs {protocol})")
    return json.loads(json.dumps(partial))


def check_recorded(payload: dict, protocol: Protocol, hashes: dict[str, str]) -> None:
    """Raise if loaded runs are partial, or were recorded with another protocol or other calibration tokens."""
    if not payload.get("complete", True):
        raise ValueError(f"the recorded runs are partial (missing, per calibration seed: {missing_runs(payload)}); continue them with "
                         f"`python scripts/record_baseline_orders.py --out {RECORDED_RUNS} --resume`")
    ignored = ("diagnostic_windows", "diagnostic_candidates")  # the diagnostic does not change the runs
    recorded = Protocol.from_params(payload["protocol"])
    diff = {k: (v, getattr(protocol, k)) for k, v in recorded.__dict__.items() if k not in ignored and getattr(protocol, k) != v}
    if diff:
        raise ValueError(f"the recorded runs used other parameters {diff} (recorded, here); "
                         "set recompute_baselines=True or re-run scripts/record_baseline_orders.py")
    if payload["calibration_hashes"] != hashes:
        raise ValueError("the recorded runs used other calibration tokens (hash mismatch: the corpus or tokenizer "
                         "changed); set recompute_baselines=True or re-run scripts/record_baseline_orders.py")


def snapshot_rows(payload: dict, latency: LatencyModel, targets: Sequence[float]) -> list[dict]:
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


# ----------------------------------------------------------------------------- comparisons over calibration seeds

HIGHER_IS_BETTER = {"cloze_acc": True, "probe_above_chance": True, "perplexity": False}
MIN_SEEDS = 3  # below this many calibration seeds a comparison says "too few"


def per_seed(rows: Sequence[dict], method: str, target: float, metric: str) -> dict[int, float]:
    """``metric`` of ``method`` at ``target`` for every calibration seed that reached it."""
    return {r["seed"]: r[metric] for r in rows if r["method"] == method and r["target"] == target}


def paired_advantage(rows: Sequence[dict], target: float, reference: str, other: str, metric: str):
    """Interval over seeds of how much ``reference`` beats ``other`` on ``metric`` (positive = better):
    accuracy difference in points, or log-perplexity ratio ``log(ppl_other / ppl_reference)``."""
    import math

    from utils.stats import paired_difference

    a, b = per_seed(rows, other, target, metric), per_seed(rows, reference, target, metric)
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ValueError(f"{reference} and {other} share no seed at target {target}")
    if HIGHER_IS_BETTER[metric]:
        return paired_difference([100 * a[s] for s in seeds], [100 * b[s] for s in seeds])
    return paired_difference([-math.log(a[s]) for s in seeds], [-math.log(b[s]) for s in seeds])


def load_or_record(
    model: HookedTransformer, protocol: Protocol, hashes: dict[str, str], recompute: bool, prompt_len: int,
    new_tokens: int, repeats: int, root: Path,
) -> tuple[LatencyModel, dict, dict, str]:
    """(latency model, its raw timings, the recorded runs, where they come from): measured and recorded
    in this run when ``recompute``, else loaded from the shipped files under ``root`` and checked."""
    if recompute:
        latency, raw = measure_latency_model(model, prompt_len, new_tokens, repeats)
        raw["machine"] = {"cpu": "this run's machine", "load_average": list(os.getloadavg())}
        return latency, raw, record_runs(model, raw, protocol), "computed in this run"
    path = root / RECORDED_RUNS
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: record it with `python scripts/record_baseline_orders.py --device cuda --out {RECORDED_RUNS}` "
            "(over 10 minutes on one H200 GPU; hours on two CPU cores), or set recompute_baselines=True")
    recorded = json.loads(path.read_text())
    check_recorded(recorded, protocol, hashes)
    raw, where = recorded["latency"], recorded["machine"]["gpu"] or recorded["machine"]["cpu"]
    note = (f"LOADED, not computed in this run: runs and latency model from {RECORDED_RUNS}, recorded on {where} "
            f"({recorded['machine']['date_utc']}, latency {raw['prompt_len']}+{raw['new_tokens']} tokens on that device)")
    scales = time_scales(recorded)
    if len(scales) > 1:
        note += (f"; runs timed in {len(scales)} sessions, their pruning times put on the first session's machine by "
                 f"the ratio of timed dense passes (factors {', '.join(f'{s:.2f}' for s in scales.values())})")
    return latency_from_raw(raw, model.cfg.n_layers), raw, recorded, note


def live_check(model: HookedTransformer, recorded: dict, calib: torch.Tensor, latency: LatencyModel,
               protocol: Protocol, seed: str) -> dict:
    """Recompute here what is cheap, to check the loaded runs: ShortGPT's order on the first seed and the
    dense perplexity."""
    from utils.evaluation import perplexity

    order = run_method("shortgpt", model, calib, latency, protocol.targets, original_down_projections(model)).order
    shipped = recorded["runs"][seed]["shortgpt"]["order"]
    data = eval_data(model, protocol)
    return {"shortgpt_order_matches": order[: len(shipped)] == shipped, "dense_perplexity_here": perplexity(model, data.val_batches),
            "dense_perplexity_recorded": recorded["dense"]["perplexity"]}


def closing_table(rows: Sequence[dict], target: float) -> list[dict]:
    """Per method at ``target``: mean speed-ups and quality over seeds with bootstrap intervals."""
    from utils.stats import bootstrap_interval

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
    return out


def log_time_ratios(rows: Sequence[dict], target: float, others: Sequence[str], reference: str = "sprint") -> list[float]:
    """Per seed: log(fastest of ``others``' pruning time / ``reference``'s) to reach ``target``."""
    ratios = []
    for seed in sorted({r["seed"] for r in rows}):
        t = {r["method"]: r["pruning_time_s"] for r in rows if r["seed"] == seed and r["target"] == target}
        if reference in t and any(o in t for o in others):
            ratios.append(math.log(min(t[o] for o in others if o in t) / t[reference]))
    return ratios
