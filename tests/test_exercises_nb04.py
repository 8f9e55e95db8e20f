from functools import partial

import pytest
import torch

from utils.checks import ExerciseFailed
from utils.exercises import nb04
from utils.pruning import fit_down_projection, relative_l1

REFIT = partial(fit_down_projection)  # a handle the check does not hide (wrong answers build on it)


def test_references_pass():
    nb04.check_fit_down_projection(fit_down_projection)
    nb04.check_relative_l1(relative_l1)


def _refit_no_ridge(x, target, w0, ridge=0.0):
    return REFIT(x, target, w0, 0.0)


def _refit_ridge_to_zero(x, target, w0, ridge=0.0):
    return REFIT(x, target, torch.zeros_like(w0), ridge)


def _refit_absolute_ridge(x, target, w0, ridge=0.0):
    x2, t2 = x.reshape(-1, x.shape[-1]), target.reshape(-1, target.shape[-1])
    a = x2.T @ x2 + ridge * torch.eye(x2.shape[-1])
    return torch.linalg.solve(a, x2.T @ t2 + ridge * w0)


@pytest.mark.parametrize("wrong, where", [(_refit_no_ridge, "ridge 0.5"), (_refit_ridge_to_zero, "ridge 0.5"),
                                          (_refit_absolute_ridge, "ridge 0.5")])
def test_wrong_refits_fail_naming_the_input(wrong, where):
    with pytest.raises(ExerciseFailed, match=where):
        nb04.check_fit_down_projection(wrong)


def _l1_mean(y, y_hat):
    dims = tuple(range(1, y.dim()))
    return float(((y - y_hat).abs().sum(dims) / y.abs().sum(dims)).mean())


def _l1_global(y, y_hat):
    return float((y - y_hat).abs().sum() / y.abs().sum())


@pytest.mark.parametrize("wrong, where", [(_l1_mean, "input 1"), (_l1_global, "input 1 of 4")])
def test_wrong_sensitivities_fail_naming_the_input(wrong, where):
    with pytest.raises(ExerciseFailed, match=where):
        nb04.check_relative_l1(wrong)


def test_refit_in_float64_fails_on_the_dtype():
    """The contract asks for w0's dtype: a refit that always answers in float64 fails on its dtype."""
    with pytest.raises(ExerciseFailed, match="expected dtype torch.float32.*got torch.float64"):
        nb04.check_fit_down_projection(lambda x, target, w0, ridge=0.0: REFIT(x, target, w0, ridge).double())


def _ranking(scorer, latency, top_k, tune_first=True):
    """A ranking written from the statement (no reference inside); ``tune_first`` False skips tuning."""
    cost = (lambda i: latency.per_sublayer_s["attn" if i % 2 == 0 else "mlp"]) if latency else (lambda i: 1.0)
    live = [i for i in range(scorer.cp.n_sublayers) if i not in scorer.cp.skipped]
    cands = sorted((scorer.untuned(i) for i in live), key=lambda c: c.sensitivity / cost(c.index))
    for cand in cands[: top_k if tune_first else 0]:
        scorer.tuned(cand.index)
    value = lambda c: c.sensitivity if c.tuned_sensitivity is None else c.tuned_sensitivity  # noqa: E731
    return sorted(((value(c) / cost(c.index), c.index) for c in cands), key=lambda pair: pair[0])


def test_sprint_ranking_passes_a_written_solution_and_fails_without_tuning(capsys):
    assert nb04.check_sprint_ranking(_ranking) is _ranking
    assert "✓ Exercise 4.3" in capsys.readouterr().out
    with pytest.raises(ExerciseFailed, match=r"input 1 of 4 \(dense tiny model"):
        nb04.check_sprint_ranking(partial(_ranking, tune_first=False))


def test_sprint_ranking_cannot_call_the_reference():
    with pytest.raises(ExerciseFailed, match="write it yourself"):
        nb04.check_sprint_ranking(lambda scorer, latency, top_k: [(s, c.index) for s, c in scorer.scores(latency, top_k, True)])
