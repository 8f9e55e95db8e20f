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

import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer
from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

from utils.sublayers import KINDS, Sublayer, all_sublayers, set_skipped, skipped_now, sublayer

PRESETS = {
    "smoke": {  # <= 90 s on 2 cores: two sublayers reach both targets, so greedy baselines take 2 steps
        "targets": [1.02, 1.03],
        "n_calib_windows": 2,
        "calib_ctx": 12,
        "n_val_tokens": 64,
        "val_ctx": 32,
        "n_task_items": 4,
        "latency_prompt_len": 4,
        "latency_new_tokens": 2,
        "latency_repeats": 1,
        "baseline_methods": ["sleb", "shortgpt", "finercut", "blockpruner"],
    },
    "default": {
        "targets": [1.1, 1.2, 1.3],
        "n_calib_windows": 4,
        "calib_ctx": 32,
        "n_val_tokens": 1024,
        "val_ctx": 128,
        "n_task_items": 32,
        "latency_prompt_len": 16,
        "latency_new_tokens": 8,
        "latency_repeats": 3,
        "baseline_methods": ["sleb", "shortgpt", "finercut", "blockpruner"],
    },
    "paper": {
        "targets": [1.1, 1.2, 1.3, 1.5],
        "n_calib_windows": 128,
        "calib_ctx": 2048,
        "n_val_tokens": 262_144,
        "val_ctx": 2048,
        "n_task_items": 500,
        "latency_prompt_len": 128,
        "latency_new_tokens": 128,
        "latency_repeats": 10,
        "baseline_methods": ["sleb", "shortgpt", "finercut", "blockpruner"],
    },
}
LATENCY_FRACTION = 0.25  # share of each sublayer type removed to measure its latency
MIN_LATENCY_S = 1e-6  # floor for a per-sublayer latency that timing noise made non-positive
SPRINT_VARIANTS = {  # name: (latency-aware, tunability-aware)
    "sprint": (True, True),
    "sprint_no_latency": (False, True),
    "sprint_no_tuning": (True, False),
    "sprint_no_both": (False, False),
}


# ----------------------------------------------------------------------------- latency model


@dataclass
class LatencyModel:
    """Generation-mode latency of the dense model and of one sublayer of each type (seconds)."""

    dense_s: float
    per_sublayer_s: dict[str, float]

    def remaining_s(self, pruned: Sequence[Sublayer | int]) -> float:
        """Estimated latency once ``pruned`` are skipped."""
        units = [s if isinstance(s, Sublayer) else sublayer(s) for s in pruned]
        return self.dense_s - sum(self.per_sublayer_s[s.kind] for s in set(units))

    def speedup(self, pruned: Sequence[Sublayer | int]) -> float:
        """Estimated speed-up (dense latency / remaining latency) once ``pruned`` are skipped."""
        remaining = self.remaining_s(pruned)
        if remaining <= 0:
            raise ValueError("the latency model predicts a non-positive latency; it was measured with too much noise")
        return self.dense_s / remaining


def generation_time(model: HookedTransformer, prompt: torch.Tensor, new_tokens: int) -> float:
    """Seconds for a greedy generation of ``new_tokens`` after ``prompt`` ([batch, pos]) with a KV cache."""
    start = time.perf_counter()
    cache = TransformerLensKeyValueCache.init_cache(model.cfg, model.cfg.device, prompt.shape[0])
    logits = model(prompt, past_kv_cache=cache, attention_mask=torch.ones_like(prompt))
    for _ in range(new_tokens):
        token = logits[:, -1].argmax(-1, keepdim=True)
        logits = model(token, past_kv_cache=cache, attention_mask=torch.ones_like(token))
    return time.perf_counter() - start


def timing_prompt(model: HookedTransformer, length: int, seed: int = 0) -> torch.Tensor:
    """A fixed random prompt [1, length] for latency measurements."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.cfg.d_vocab, (1, length), generator=generator).to(model.cfg.device)


def paired_times(
    model: HookedTransformer,
    configs: Sequence[Sequence[Sublayer | int]],
    prompt: torch.Tensor,
    new_tokens: int,
    repeats: int,
    warmup: int = 1,
    timer: Callable[[HookedTransformer, torch.Tensor, int], float] = generation_time,
) -> list[float]:
    """Median generation time of each skip configuration, interleaved so load drifts hit all alike."""
    before = skipped_now(model)
    samples: list[list[float]] = [[] for _ in configs]
    try:
        for rep in range(warmup + repeats):
            for i, config in enumerate(configs):
                set_skipped(model, config)
                seconds = timer(model, prompt, new_tokens)
                if rep >= warmup:
                    samples[i].append(seconds)
    finally:
        set_skipped(model, before)
    return [statistics.median(s) for s in samples]


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
) -> tuple[LatencyModel, dict]:
    """SPRINT's latency model: time dense, and with ``fraction`` of the MLPs / attentions removed.

    Per-sublayer latency of a type = time saved / number removed. Returns the model and the raw
    timings (for the notebook's table).
    """
    count = max(1, round(fraction * model.cfg.n_layers))
    layers = spread(model.cfg.n_layers, count)
    removed = {kind: [Sublayer(layer, kind) for layer in layers] for kind in KINDS}
    prompt = timing_prompt(model, prompt_len)
    dense, attn, mlp = paired_times(model, [[], removed["attn"], removed["mlp"]], prompt, new_tokens, repeats, timer=timer)
    per = {}
    for kind, t in zip(KINDS, (attn, mlp), strict=True):
        saved = (dense - t) / len(layers)
        if saved <= 0:
            warnings.warn(f"removing {kind} sublayers did not save time (noise); using {MIN_LATENCY_S} s", stacklevel=2)
        per[kind] = max(saved, MIN_LATENCY_S)
    raw = {"dense_s": dense, "attn_removed_s": attn, "mlp_removed_s": mlp, "n_removed": len(layers), "layers": layers}
    return LatencyModel(dense, per), raw


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
        self.tokens = tokens
        self.n_sublayers = 2 * model.cfg.n_layers
        self.skipped = {s.index for s in skipped_now(model)}
        self.resid: list[torch.Tensor] = [model(tokens, stop_at_layer=0)]
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
        """(score, candidate) for every unpruned sublayer, lowest first; tuned scores for the top_k."""
        weight = (lambda i: latency.per_sublayer_s[sublayer(i).kind]) if latency else (lambda i: 1.0)
        live = [i for i in range(self.cp.n_sublayers) if i not in self.cp.skipped]
        ranked = sorted(((self.untuned(i).sensitivity / weight(i), self.untuned(i)) for i in live), key=lambda p: p[0])
        if tune:
            head = [(c.tuned_sensitivity / weight(c.index), c) for c in (self.tuned(c.index) for _, c in ranked[:top_k])]
            ranked = sorted(head, key=lambda p: p[0]) + ranked[top_k:]
        return ranked


def _record_targets(result: PruneResult, latency: LatencyModel, pruned: list[int], tuned: dict, started: float, targets: Sequence[float]) -> None:
    """Snapshot the current state for every target the estimated speed-up has just reached."""
    speed = latency.speedup(pruned)
    for target in targets:
        if target not in result.snapshots and speed >= target:
            weights = {k: v.clone() for k, v in tuned.items()}
            result.snapshots[target] = Snapshot(list(pruned), weights, speed, time.perf_counter() - started)


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
) -> PruneResult:
    """SPRINT: prune the lowest (tuned) sensitivity / latency sublayer until each target is reached."""
    started = time.perf_counter()
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
        _record_targets(result, latency, pruned, tuned, started, targets)
    bar.close()
    result.order, result.total_time_s = pruned, time.perf_counter() - started
    return result


# ----------------------------------------------------------------------------- baselines


def mean_nll(logits: torch.Tensor, tokens: torch.Tensor) -> float:
    """Mean next-token negative log-likelihood (nats) of ``tokens`` under ``logits``."""
    logp = logits[:, :-1].log_softmax(-1)
    return float(-logp.gather(-1, tokens[:, 1:, None]).mean())


def js_divergence(p_logits: torch.Tensor, q_logits: torch.Tensor) -> float:
    """Mean (over positions) Jensen-Shannon divergence (nats) between two logit tensors' distributions."""
    logp, logq = p_logits.log_softmax(-1), q_logits.log_softmax(-1)
    logm = torch.logsumexp(torch.stack([logp, logq]), 0) - torch.log(torch.tensor(2.0))
    kl = lambda a: (a.exp() * (a - logm)).sum(-1)
    return float((0.5 * kl(logp) + 0.5 * kl(logq)).mean())


def greedy(
    model: HookedTransformer,
    calib: torch.Tensor,
    latency: LatencyModel,
    targets: Sequence[float],
    units: list[tuple[int, ...]],
    loss: Callable[[torch.Tensor], float],
    name: str,
) -> PruneResult:
    """Remove, one at a time, the unit whose removal gives the lowest ``loss(logits)`` until each target."""
    started = time.perf_counter()
    cp = Checkpoints(model, calib)
    result, pruned, remaining = PruneResult(name), [], list(units)
    bar = tqdm(desc=name, total=len(units), leave=False)
    while len(result.snapshots) < len(targets) and remaining:
        best = min(remaining, key=lambda u: loss(cp.logits_without(u)))
        remaining.remove(best)
        cp.commit(best)
        pruned.extend(best)
        bar.update()
        _record_targets(result, latency, pruned, {}, started, targets)
    bar.close()
    result.order, result.total_time_s = pruned, time.perf_counter() - started
    return result


def block_units(model: HookedTransformer, keep_ends: bool = False) -> list[tuple[int, int]]:
    """Whole layers as (attention, MLP) index pairs; ``keep_ends`` excludes the first and last."""
    layers = range(1, model.cfg.n_layers - 1) if keep_ends else range(model.cfg.n_layers)
    return [(2 * i, 2 * i + 1) for i in layers]


def sleb(model, calib, latency, targets) -> PruneResult:
    """SLEB: whole blocks, greedily by calibration NLL, first and last block kept."""
    return greedy(model, calib, latency, targets, block_units(model, keep_ends=True), lambda lg: mean_nll(lg, calib), "sleb")


def blockpruner(model, calib, latency, targets) -> PruneResult:
    """BlockPruner: sublayers, greedily by calibration perplexity (NLL gives the same order)."""
    units = [(s.index,) for s in all_sublayers(model)]
    return greedy(model, calib, latency, targets, units, lambda lg: mean_nll(lg, calib), "blockpruner")


def finercut(model, calib, latency, targets) -> PruneResult:
    """FinerCut: sublayers, greedily by JS divergence from the dense model's output distribution."""
    dense = Checkpoints(model, calib)
    reference = final_logits(model, dense.resid[-1])
    units = [(s.index,) for s in all_sublayers(model)]
    return greedy(model, calib, latency, targets, units, lambda lg: js_divergence(reference, lg), "finercut")


def block_influence(checkpoints: Checkpoints) -> list[float]:
    """ShortGPT's Block Influence per layer: 1 - mean cosine(layer input, layer output) over tokens."""
    cos = torch.nn.functional.cosine_similarity
    return [
        float(1 - cos(checkpoints.resid[2 * i], checkpoints.resid[2 * i + 2], dim=-1).mean())
        for i in range(checkpoints.n_sublayers // 2)
    ]


def shortgpt(model, calib, latency, targets) -> PruneResult:
    """ShortGPT: whole layers in one shot, lowest Block Influence first, until each target."""
    started = time.perf_counter()
    influence = block_influence(Checkpoints(model, calib))
    result, pruned = PruneResult("shortgpt"), []
    for layer in sorted(range(len(influence)), key=influence.__getitem__):
        if len(result.snapshots) == len(targets):
            break
        pruned.extend((2 * layer, 2 * layer + 1))
        _record_targets(result, latency, pruned, {}, started, targets)
    result.order, result.total_time_s = pruned, time.perf_counter() - started
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
) -> PruneResult:
    """Run one method (a SPRINT variant or a baseline) from the dense model; restores it afterwards."""
    if name not in SPRINT_VARIANTS and name not in BASELINES:
        raise ValueError(f"unknown method {name!r}; choose from {[*SPRINT_VARIANTS, *BASELINES]}")
    restore(model, originals)
    try:
        if name in SPRINT_VARIANTS:
            aware, tune = SPRINT_VARIANTS[name]
            return sprint(model, calib, latency, targets, aware, tune, top_k, ridge, name)
        return BASELINES[name](model, calib, latency, targets)
    finally:
        restore(model, originals)


def evaluate_methods(
    model: HookedTransformer,
    results: dict[str, PruneResult],
    originals: dict[int, torch.Tensor],
    evaluate_fn: Callable[[HookedTransformer], dict[str, float]],
    prompt_len: int,
    new_tokens: int,
    repeats: int,
) -> list[dict]:
    """One row per method and target: estimated and measured speed-up, ``evaluate_fn``'s metrics,
    pruning time and the pruned sublayers. Restores the dense model afterwards."""
    jobs = [(name, target, snap) for name, res in results.items() for target, snap in sorted(res.snapshots.items())]
    rows = []
    try:
        for name, target, snap in tqdm(jobs, desc="evaluate"):
            apply(model, snap, originals)
            speed = measured_speedup(model, snap.pruned, prompt_len, new_tokens, repeats)
            kinds = [sublayer(i).kind for i in snap.pruned]
            rows.append({
                "method": name, "target": target, "estimated_speedup": snap.estimated_speedup,
                "measured_speedup": speed, **evaluate_fn(model), "pruning_time_s": snap.pruning_time_s,
                "n_attn": kinds.count("attn"), "n_mlp": kinds.count("mlp"), "pruned": sorted(snap.pruned),
            })
    finally:
        restore(model, originals)
    return rows
