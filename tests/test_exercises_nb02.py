"""Notebook 02's exercise checks pass the reference and fail wrong answers with a message naming the input."""

import math

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
