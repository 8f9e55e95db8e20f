"""Notebook 02's exercise checks pass the reference and fail wrong answers with a message naming the input."""

import math
from functools import partial

import pytest
import torch

from utils.checks import ExerciseFailed
from utils.exercises import nb02
from utils.transcoders import transcoder_loss


def forward(x, w_enc, b_enc, b_pre, w_dec, b_dec):
    acts = torch.relu((x - b_pre) @ w_enc + b_enc)
    return acts, acts @ w_dec + b_dec


def test_references_pass(capsys):
    nb02.check_transcoder_forward(forward)
    nb02.check_transcoder_loss(transcoder_loss)
    assert capsys.readouterr().out.count("✓") == 2


@pytest.mark.parametrize(
    "wrong",
    [
        lambda x, w_enc, b_enc, b_pre, w_dec, b_dec: forward(x, w_enc, b_enc, torch.zeros_like(b_pre), w_dec, b_dec),  # no pre-bias
        lambda x, w_enc, b_enc, b_pre, w_dec, b_dec: (
            (x - b_pre) @ w_enc + b_enc,
            ((x - b_pre) @ w_enc + b_enc) @ w_dec + b_dec,
        ),  # no ReLU
        lambda x, w_enc, b_enc, b_pre, w_dec, b_dec: forward(x, w_enc, b_enc, b_pre, w_dec, 0 * b_dec),  # no output bias
    ],
)
def test_wrong_forward_passes_fail(wrong):
    with pytest.raises(ExerciseFailed, match=r"input 1 of 2 \(x \[5, 4\]"):
        nb02.check_transcoder_forward(wrong)


def unweighted(pred, target, acts, w_dec, l1):
    """Forgets the decoder norms in the sparsity term."""
    d = target.shape[-1]
    mse = (pred - target).pow(2).sum(-1).mean() / d
    sparsity = acts.sum(-1).mean() / math.sqrt(d)
    return {"loss": mse + l1 * sparsity, "nmse": mse, "l1": sparsity}


def batch_normalised(pred, target, acts, w_dec, l1):
    """Divides by the batch's mean squared target norm (a sink in the batch would change every token's loss)."""
    out = transcoder_loss(pred, target, acts, w_dec, l1)
    mse = (pred - target).pow(2).sum(-1).mean() / target.pow(2).sum(-1).mean()
    return {**out, "nmse": mse, "loss": mse + l1 * out["l1"]}


@pytest.mark.parametrize("wrong, where", [(unweighted, "input 1 of 2"), (batch_normalised, "input 1 of 2")])
def test_wrong_losses_fail(wrong, where):
    with pytest.raises(ExerciseFailed, match=where):
        nb02.check_transcoder_loss(wrong)


def _training_step(tc, optimizer, x, y, l1, project=True, renormalise=True):
    """Written from the statement: loss, backward, no gradient along the decoder rows, step, unit rows."""
    with torch.enable_grad():
        acts = torch.relu((x - tc.b_pre) @ tc.W_enc + tc.b_enc)
        pred = acts @ tc.W_dec + tc.b_dec
        d = y.shape[-1]
        loss = (pred - y).pow(2).sum(-1).mean() / d + l1 * (acts * tc.W_dec.norm(dim=-1)).sum(-1).mean() / d**0.5
        optimizer.zero_grad()
        loss.backward()
    with torch.no_grad():
        if project:
            tc.W_dec.grad -= (tc.W_dec.grad * tc.W_dec).sum(1, keepdim=True) * tc.W_dec
        optimizer.step()
        if renormalise:
            tc.W_dec /= tc.W_dec.norm(dim=1, keepdim=True)
    return loss


def test_training_step_passes_a_written_solution_and_fails_without_its_decoder_steps(capsys):
    assert nb02.check_training_step(_training_step) is _training_step
    assert "✓ Exercise 2.3" in capsys.readouterr().out
    for wrong in (partial(_training_step, project=False), partial(_training_step, renormalise=False)):
        with pytest.raises(ExerciseFailed, match=r"Exercise 2.3 training_step: input \d of 3 .*W_dec"):
            nb02.check_training_step(wrong)
    with pytest.raises(ExerciseFailed, match="write it yourself"):
        nb02.check_training_step(lambda tc, optimizer, x, y, l1: tc.normalize_decoder())
