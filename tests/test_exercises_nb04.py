import pytest
import torch

from utils.checks import ExerciseFailed
from utils.exercises import nb04
from utils.pruning import fit_down_projection, relative_l1


def test_references_pass():
    nb04.check_fit_down_projection(fit_down_projection)
    nb04.check_relative_l1(relative_l1)


def _refit_no_ridge(x, target, w0, ridge=0.0):
    return fit_down_projection(x, target, w0, 0.0)


def _refit_ridge_to_zero(x, target, w0, ridge=0.0):
    return fit_down_projection(x, target, torch.zeros_like(w0), ridge)


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


@pytest.mark.parametrize("wrong, where", [(_l1_mean, "input 1"), (_l1_global, "input 1 of 3")])
def test_wrong_sensitivities_fail_naming_the_input(wrong, where):
    with pytest.raises(ExerciseFailed, match=where):
        nb04.check_relative_l1(wrong)
