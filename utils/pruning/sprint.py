"""SPRINT (Park et al. 2025, IJCAI): latency- and tunability-aware iterative sublayer pruning.

The method, step by step, and where each step is:

1. **Latency information**: each sublayer type's latency, measured on the target hardware
   (``utils.pruning.latency``); it divides every sensitivity and defines the stopping speed-up.
2. **Sensitivity** of removing a sublayer: run the current pruned model on the calibration tokens
   from the residual checkpoint before it (``utils.pruning.pruned_model.Checkpoints``) up to the
   output of the next unpruned MLP, with and without the sublayer, and compare the two by
   ``relative_l1`` (``SprintScorer.untuned``, over ``SprintScorer.window``).
3. **Tunability**: refit that next MLP's down-projection W_out in closed form so that the window's
   output comes back (``fit_down_projection``: ridge-regularised least squares), and score the
   sensitivity after tuning (``SprintScorer.tuned``). Where a norm follows the MLP (Gemma), the
   residual's shortfall is carried back through it first (``SprintScorer.refit_target``,
   ``pre_norm_target``); the paper's Llama models have none. Only the ``top_k`` candidates with the lowest
   untuned score are tuned each step; still-valid tuned scores from earlier steps compete too.
4. **Prune** the candidate with the lowest (tuned) sensitivity / latency, keep its tuned W_out, and
   refresh only the checkpoints after it; cached scores of windows that end before it stay valid
   (``SprintScorer.commit``).
5. **Repeat** until the latency model's estimated speed-up reaches each target (``run_sprint``).

``SPRINT_VARIANTS`` names the full method and the paper's ablations (latency and/or tuning off).

Public names: ``run_sprint``, ``SprintScorer``, ``Candidate``, ``fit_down_projection``,
``pre_norm_target``, ``apply_norms``, ``relative_l1``, ``SPRINT_VARIANTS``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer
from transformer_lens.components import RMSNorm

from utils import hooks
from utils.pruning.latency import LatencyModel
from utils.pruning.pruned_model import (
    Checkpoints,
    PruneResult,
    PruningClock,
    StepCallback,
    record_step,
    run_range,
)
from utils.sublayers import mlp_write, norms_after_mlp, set_skipped, sublayer

__all__ = [
    "SPRINT_VARIANTS", "Candidate", "SprintScorer", "apply_norms", "fit_down_projection", "pre_norm_target", "relative_l1",
    "run_sprint",
]

SPRINT_VARIANTS = {  # name: (latency-aware, tunability-aware)
    "sprint": (True, True),
    "sprint_no_latency": (False, True),
    "sprint_no_tuning": (True, False),
    "sprint_no_both": (False, False),
}


def relative_l1(y: torch.Tensor, y_hat: torch.Tensor) -> float:
    """SPRINT's sensitivity: sum over samples of sum|y - y_hat| / sum|y| (y, y_hat [sample, ...])."""
    dims = tuple(range(1, y.dim()))
    return float(((y - y_hat).abs().sum(dims) / y.abs().sum(dims)).sum())


def fit_down_projection(x: torch.Tensor, target: torch.Tensor, w0: torch.Tensor, ridge: float = 0.0) -> torch.Tensor:
    """Least-squares W [d_in, d_out] minimising |x W - target|^2 + ridge * scale * |W - w0|^2, solved in float32.

    ``x`` [..., d_in] (MLP hidden activations), ``target`` [..., d_out], ``w0`` [d_in, d_out];
    ``scale`` is the mean diagonal of xᵀx, so ``ridge`` is relative. With ridge 0 the system must
    be full rank.
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


def apply_norms(norms: Sequence[torch.nn.Module], x: torch.Tensor) -> torch.Tensor:
    """``x`` through ``norms`` in order (the norms a block applies to its MLP's output)."""
    for norm in norms:
        x = norm(x)
    return x


def pre_norm_target(norms: Sequence[torch.nn.Module], current: torch.Tensor, shortfall: torch.Tensor) -> torch.Tensor:
    """What to feed ``norms`` (RMSNorms, applied in order) for their output to move by ``shortfall`` [..., d],
    linearised at ``current``, what they are fed now. An RMSNorm's output has one RMS per token (after its
    weight is divided out), so only the direction of the wanted output (now's plus ``shortfall``) can be
    reached: each norm is undone with that direction at the RMS of what it is fed now (a token whose wanted
    output is zero keeps its input). Exact for any input of ``current``'s RMS."""
    inputs = []
    for norm in norms:
        if not isinstance(norm, RMSNorm):
            raise NotImplementedError(f"refitting W_out through a {type(norm).__name__} after the MLP is not "
                                      "supported; only RMSNorm (Gemma's ln2_post, OLMo 2's ln2) is")
        inputs.append(current)
        current = norm(current)
    wanted = current + shortfall  # what the norms should output
    rms = lambda v: v.pow(2).mean(-1, keepdim=True).sqrt()  # noqa: E731
    for norm, x in zip(reversed(norms), reversed(inputs), strict=True):
        x, weight = x.float(), norm.w.float()
        direction = wanted.float() / torch.where(weight == 0, torch.ones_like(weight), weight)
        size = rms(direction)
        scale = (x.pow(2).mean(-1, keepdim=True) + norm.eps).sqrt()  # what the norm divides x by
        wanted = torch.where(size > 0, direction / size.clamp_min(1e-30) * scale, x)
    return wanted.to(current.dtype)


@dataclass
class Candidate:
    """One sublayer's SPRINT scores: its window [index, next_mlp] and sensitivities."""

    index: int
    next_mlp: int | None  # the next unpruned MLP after it (None: the window runs to the end)
    sensitivity: float
    tuned_sensitivity: float | None = None
    tuned_weight: torch.Tensor | None = None


class SprintScorer:
    """SPRINT's scoring on checkpoints: untuned and tuned sensitivity of each unpruned sublayer.

    With ``use_cache`` a commit refreshes only the boundaries after the pruned sublayer and keeps
    the scores of windows that end before it; without, everything is recomputed from the embedding.
    """

    def __init__(
        self,
        checkpoints: Checkpoints,
        ridge: float,
        use_cache: bool = True,
        sensitivity: Callable[[torch.Tensor, torch.Tensor], float] | None = None,
        refit: Callable[..., torch.Tensor] | None = None,
    ) -> None:
        self.sensitivity = sensitivity or relative_l1  # a learner's own functions may replace these
        self.refit = refit or fit_down_projection
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

    def window(self, index: int, capture: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, int | None]:
        """(y, y_hat [n, pos, d_model], the next MLP's hidden activations [n, pos, d_mlp] or None, next MLP)
        when ``index`` is removed: y is the current model's residual after the next MLP, y_hat the same
        without ``index``; the activations are captured only with ``capture`` and a next MLP."""
        t = self.next_mlp(index)
        stop = self.cp.n_sublayers if t is None else t + 1
        skipped = self.cp.skipped | {index}
        if t is None or not capture:
            return self.cp.resid[stop], run_range(self.model, self.cp.resid[index], index, stop, skipped), None, t
        x_in = run_range(self.model, self.cp.resid[index], index, t, skipped)
        block = self.model.blocks[t // 2]
        store: dict[str, torch.Tensor] = {}
        point = hooks.mlp_post(t // 2)
        with hooks.attached(self.model, hooks.capture([point], store)):
            y_hat = x_in + mlp_write(block, x_in)
        return self.cp.resid[stop], y_hat, store[point], t

    def untuned(self, index: int) -> Candidate:
        """Sensitivity of removing ``index``, measured after the next unpruned MLP."""
        if index in self.cache:
            return self.cache[index]
        y, y_hat, _, t = self.window(index, capture=False)
        self.cache[index] = Candidate(index, t, self.sensitivity(y, y_hat))
        return self.cache[index]

    def tuned(self, index: int) -> Candidate:
        """Untuned scores plus the sensitivity after re-fitting the next MLP's W_out by least squares."""
        cand = self.untuned(index)
        if cand.tuned_sensitivity is not None:
            return cand
        if cand.next_mlp is None:  # nothing after it to tune
            cand.tuned_sensitivity = cand.sensitivity
            return cand
        y, y_hat, hidden, t = self.window(index, capture=True)
        mlp = self.model.blocks[t // 2].mlp
        weight = self.refit(hidden, self.refit_target(t, y, y_hat, hidden), mlp.W_out.detach(), self.ridge)
        cand.tuned_weight = weight
        cand.tuned_sensitivity = self.sensitivity(y, self.window_with(t, y_hat, hidden, weight))
        return cand

    def refit_target(self, t: int, y: torch.Tensor, y_hat: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """What ``hidden @ W_out`` of MLP sublayer ``t`` should be for the window to output ``y`` (``y_hat``:
        its output now): the residual's shortfall added to the current down-projection. Where norms
        follow the MLP (Gemma's ``ln2_post``), the shortfall is in the norms' output space, so it is
        carried back through them, linearised at the current write (``pre_norm_target``)."""
        block = self.model.blocks[t // 2]
        mlp, norms = block.mlp, norms_after_mlp(block)
        if not norms:
            return y - (y_hat - hidden @ mlp.W_out)  # the residual minus the down-projection's part
        write = hidden @ mlp.W_out + mlp.b_out  # the MLP's output before its norms
        return pre_norm_target(norms, write, y - y_hat) - mlp.b_out

    def window_with(self, t: int, y_hat: torch.Tensor, hidden: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """The window's output ``y_hat`` had MLP sublayer ``t``'s W_out been ``weight`` (``hidden``: its
        activations). Linear in W_out, except where norms follow the MLP (Gemma's ``ln2_post``), which
        are applied as the block applies them: the refit is then fitted linearly (as the paper does) but
        scored on what the model really computes after the commit."""
        block = self.model.blocks[t // 2]
        mlp, norms = block.mlp, norms_after_mlp(block)
        if not norms:
            return (y_hat - hidden @ mlp.W_out) + hidden @ weight
        write = lambda w: apply_norms(norms, hidden @ w + mlp.b_out)  # noqa: E731
        return (y_hat - write(mlp.W_out)) + write(weight)

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


def run_sprint(
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
    """SPRINT on calibration tokens ``calib`` [n, pos]: prune the lowest (tuned) sensitivity / latency
    sublayer until each target speed-up is reached (the model is left pruned and tuned)."""
    clock = PruningClock()
    state = SprintScorer(Checkpoints(model, calib), ridge, use_cache)
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
        record_step(result, model, latency, pruned, tuned, clock, targets, on_step)
    bar.close()
    result.order, result.total_time_s = pruned, clock.elapsed()
    return result
