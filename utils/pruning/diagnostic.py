"""Is SPRINT's closed-form refit well-posed? The held-out refit diagnostic that picks notebook 04's ridge.

Not a step of the paper: the paper fits W_out in-sample on its calibration tokens; with fewer
tokens than the MLP has hidden units a plain least-squares fit is exact in-sample and says nothing.
So for candidate sublayers of the dense model, fit the next MLP's W_out on calibration tokens
(``fit_down_projection``) and measure the window's error in-sample and on held-out tokens
(``refit_data``, ``refit_errors``, ``refit_diagnostic``); summarise per calibration size and ridge
(``diagnostic_summary``) and choose the ridge with the lowest held-out error (``choose_ridge``).

Public names: ``refit_diagnostic``, ``diagnostic_summary``, ``choose_ridge``, ``refit_data``,
``refit_errors``, ``RefitData``.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from scipy.stats import spearmanr
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from utils.pruning.pruned_model import Checkpoints
from utils.pruning.sprint import SprintScorer, fit_down_projection, relative_l1
from utils.sublayers import set_skipped, skipped_now

__all__ = ["RefitData", "choose_ridge", "diagnostic_summary", "refit_data", "refit_diagnostic", "refit_errors"]


@dataclass
class RefitData:
    """One candidate's window on some tokens: the next MLP's hidden activations and what the refit fits.

    ``hidden`` [n, pos, d_mlp]; ``target`` [n, pos, d_model], what ``hidden @ W_out`` should be
    (``SprintScorer.refit_target``); ``y``, ``y_hat`` [n, pos, d_model]; ``w0`` [d_mlp, d_model];
    ``output(weight)``: the window's output with ``weight`` as W_out (``SprintScorer.window_with``:
    ``rest + hidden @ weight`` unless a norm follows the MLP, as in Gemma).
    """

    hidden: torch.Tensor
    target: torch.Tensor
    y: torch.Tensor
    y_hat: torch.Tensor
    w0: torch.Tensor
    output: Callable[[torch.Tensor], torch.Tensor]


def refit_data(state: SprintScorer, index: int) -> RefitData | None:
    """The refit problem of removing ``index`` on ``state``'s tokens (None when no MLP follows it)."""
    y, y_hat, hidden, t = state.window(index, capture=True)
    if t is None:
        return None
    w0 = state.model.blocks[t // 2].mlp.W_out.detach()
    output = lambda weight: state.window_with(t, y_hat, hidden, weight)  # noqa: E731
    return RefitData(hidden, state.refit_target(t, y, y_hat, hidden), y, y_hat, w0, output)


def refit_errors(fit: RefitData, held: RefitData, ridge: float) -> dict[str, float]:
    """Relative L1 error per window, untuned and tuned (fitted on ``fit``), in-sample and held-out."""
    weight = fit_down_projection(fit.hidden, fit.target, fit.w0, ridge)
    per = lambda y, y_hat: relative_l1(y, y_hat) / y.shape[0]  # noqa: E731
    return {
        "untuned_in": per(fit.y, fit.y_hat), "untuned_held": per(held.y, held.y_hat),
        "tuned_in": per(fit.y, fit.output(weight)), "tuned_held": per(held.y, held.output(weight)),
    }


@torch.no_grad()
def refit_diagnostic(
    model: HookedTransformer, calib: torch.Tensor, heldout: torch.Tensor, ridges: Sequence[float], n_candidates: int = 0
) -> list[dict]:
    """Is the closed-form refit well-posed? For each candidate sublayer of the dense model and ridge:
    untuned and tuned error in-sample (calibration tokens ``calib`` [n, pos]) and held-out (``heldout``
    [m, pos]). ``n_candidates`` > 0 takes that many candidates spread over the model (0: all)."""
    restore_after = skipped_now(model)
    fit_state, held_state = SprintScorer(Checkpoints(model, calib), 0.0), SprintScorer(Checkpoints(model, heldout), 0.0)
    indices = [i for i in range(2 * model.cfg.n_layers) if fit_state.next_mlp(i) is not None]
    if n_candidates:
        indices = [indices[round(k * (len(indices) - 1) / max(n_candidates - 1, 1))] for k in range(min(n_candidates, len(indices)))]
    rows = []
    for index in tqdm(sorted(set(indices)), desc="refit diagnostic", leave=False):
        fit, held = refit_data(fit_state, index), refit_data(held_state, index)
        rows += [{"index": index, "ridge": r, "tokens": calib.numel(), **refit_errors(fit, held, r)} for r in ridges]
    set_skipped(model, restore_after)
    return rows


def _median_ratio(a: Sequence[float], b: Sequence[float]) -> float:
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def diagnostic_summary(rows: Sequence[dict]) -> list[dict]:
    """Per (tokens, ridge): median tuned/untuned error ratio in-sample and held-out, and the Spearman
    correlation of each score's in-sample ranking of candidates with the held-out tuned error."""
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


def choose_ridge(summary: Sequence[dict], tokens: int) -> float:
    """The ridge with the lowest held-out tuned/untuned error ratio at ``tokens`` calibration tokens."""
    rows = [r for r in summary if r["tokens"] == tokens]
    if not rows:
        raise ValueError(f"the diagnostic has no rows at {tokens} calibration tokens")
    return min(rows, key=lambda r: r["tuned/untuned held-out"])["ridge"]
