"""Checks for notebook 02's exercises: a transcoder's forward pass and its training loss.

``check_transcoder_forward`` compares ``fn(x, W_enc, b_enc, b_pre, W_dec, b_dec) -> (acts, pred)``
with ``utils.transcoders.SparseTranscoder``; ``check_transcoder_loss`` compares
``fn(pred, target, acts, W_dec, l1) -> {"loss", "nmse", "l1"}`` with
``utils.transcoders.transcoder_loss`` (decoder rows of unequal norm, so the norm weighting shows).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from utils.checks import Case, check
from utils.transcoders import SparseTranscoder, transcoder_loss

__all__ = ["check_transcoder_forward", "check_transcoder_loss"]


def _reference_forward(x, w_enc, b_enc, b_pre, w_dec, b_dec):
    tc = SparseTranscoder(w_enc.shape[0], w_enc.shape[1], w_dec.shape[1])
    with torch.no_grad():
        for name, value in (("W_enc", w_enc), ("b_enc", b_enc), ("b_pre", b_pre), ("W_dec", w_dec), ("b_dec", b_dec)):
            getattr(tc, name).copy_(value)
        acts = tc.encode(x)
        return acts, tc.decode(acts)


def _forward_cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)

    def params(d_in: int, d_sae: int, d_out: int) -> tuple:
        return (
            torch.randn(d_in, d_sae, generator=g),
            torch.randn(d_sae, generator=g),
            torch.randn(d_in, generator=g),
            torch.randn(d_sae, d_out, generator=g),
            torch.randn(d_out, generator=g),
        )

    return [
        Case("x [5, 4], d_sae 6, d_out 4", (torch.randn(5, 4, generator=g), *params(4, 6, 4))),
        Case("x [2, 3, 8] (batch, pos, d_in), d_sae 16, d_out 5", (torch.randn(2, 3, 8, generator=g), *params(8, 16, 5))),
    ]


def check_transcoder_forward(fn: Callable) -> Callable:
    """Check ``fn(x, W_enc, b_enc, b_pre, W_dec, b_dec) -> (acts, pred)``."""
    return check("Exercise 2.1 transcoder_forward", fn, _reference_forward, _forward_cases(),
                 hide=[SparseTranscoder.encode, SparseTranscoder.decode])


def _loss_cases() -> list[Case]:
    g = torch.Generator().manual_seed(1)
    w_dec = torch.randn(6, 4, generator=g) * torch.tensor([0.5, 1.0, 2.0, 1.0, 3.0, 1.0])[:, None]
    return [
        Case(
            "8 tokens, d 4, 6 features, l1 0.1",
            (torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g), torch.rand(8, 6, generator=g), w_dec, 0.1),
        ),
        Case(
            "3 tokens, targets 100x larger, l1 0",
            (torch.randn(3, 4, generator=g), 100 * torch.randn(3, 4, generator=g), torch.rand(3, 6, generator=g), w_dec, 0.0),
        ),
    ]


def check_transcoder_loss(fn: Callable) -> Callable:
    """Check ``fn(pred, target, acts, W_dec, l1) -> {"loss", "nmse", "l1"}``."""
    return check("Exercise 2.2 transcoder_loss", fn, transcoder_loss, _loss_cases())
