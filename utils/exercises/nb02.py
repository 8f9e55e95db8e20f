"""Checks for notebook 02's exercises: a transcoder's forward pass, its training loss, one training step.

``check_transcoder_forward`` compares ``fn(x, W_enc, b_enc, b_pre, W_dec, b_dec) -> (acts, pred)``
with ``utils.transcoders.SparseTranscoder``; ``check_transcoder_loss`` compares
``fn(pred, target, acts, W_dec, l1) -> {"loss", "nmse", "l1"}`` with
``utils.transcoders.transcoder_loss`` (decoder rows of unequal norm, so the norm weighting shows);
``check_training_step`` compares one training step ``fn(tc, optimizer, x, y, l1) -> loss`` with
``TranscoderTrainer.step``'s (the loss and every parameter after the step, Adam and SGD).

Public names: ``check_transcoder_forward``, ``check_transcoder_loss``, ``check_training_step``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from utils.checks import Case, check, skipped
from utils.transcoders import SparseTranscoder, TranscoderTrainer, transcoder_loss

__all__ = ["check_training_step", "check_transcoder_forward", "check_transcoder_loss"]


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


def _reference_step(tc: SparseTranscoder, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                    l1: float) -> torch.Tensor:
    """The training step of ``TranscoderTrainer.step``, without its bookkeeping: the loss it stepped on."""
    with torch.enable_grad():
        acts = tc.encode(x)
        losses = transcoder_loss(tc.decode(acts), y, acts, tc.W_dec, l1)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
    tc.remove_parallel_decoder_grad()
    optimizer.step()
    tc.normalize_decoder()
    return losses["loss"].detach()


def _after_step(step: Callable) -> Callable:
    """``step`` returning (its loss, the transcoder's parameters after it): what the check compares."""

    def run(tc: SparseTranscoder, optimizer: torch.optim.Optimizer, *rest: object) -> tuple:
        loss = step(tc, optimizer, *rest)
        return float(torch.as_tensor(loss).detach()), {name: p.detach().clone() for name, p in tc.named_parameters()}

    return run


def _step_cases() -> list[Case]:
    g = torch.Generator().manual_seed(2)
    cases = []
    for d_in, d_sae, d_out, l1, optimiser in [(6, 12, 5, 0.1, "Adam"), (4, 16, 4, 0.0, "Adam"), (5, 10, 3, 1.0, "SGD")]:
        tc = SparseTranscoder(d_in, d_sae, d_out, seed=d_sae)
        with torch.no_grad():
            tc.b_pre.normal_(generator=g)
            tc.b_enc.normal_(generator=g)
        make = torch.optim.Adam if optimiser == "Adam" else torch.optim.SGD
        optimizer = make(tc.parameters(), lr=0.05)
        x, y = torch.randn(16, d_in, generator=g), torch.randn(16, d_out, generator=g)
        cases.append(Case(f"{optimiser}, x [16, {d_in}], {d_sae} features, y [16, {d_out}], l1 {l1}",
                          (tc, optimizer, x, y, l1)))
    return cases


def check_training_step(fn: Callable) -> Callable:
    """Exercise 2.3: ``fn(tc, optimizer, x, y, l1) -> loss``, one training step (parameters compared after it)."""
    check("Exercise 2.3 training_step", _after_step(fn), _after_step(_reference_step), _step_cases(),
                   atol=1e-4, rtol=1e-3,
                   hide=[SparseTranscoder.remove_parallel_decoder_grad, SparseTranscoder.normalize_decoder,
                         TranscoderTrainer.step])
    return _reference_step if skipped("Exercise 2.3") else fn
