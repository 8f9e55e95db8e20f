"""The greedy baselines' losses over calibration logits: utils.pruning's (JS in chunks of positions, NLL
by logsumexp) vs the whole-tensor formulas.

    .venv/bin/python benchmarks/bench_pruning_losses.py [--windows 16] [--ctx 128] [--threads 2]

FinerCut scores every candidate by the JS divergence between the dense and the pruned output
distributions, BlockPruner and SLEB by the calibration NLL; at notebook 04's default (16 x 128 tokens,
49,152-token vocabulary) each is computed thousands of times. The baselines here are the textbook
formulas over the whole [windows, ctx, vocab] tensor. Random logits with the embedded model's
vocabulary size stand in for the model's (the cost does not depend on the values). Prints CPU times,
the ratio (whole / utils.pruning; > 1 means utils.pruning wins) and the largest relative difference.
"""

from __future__ import annotations

import argparse

import torch
from benchlib import add_threads_option, timed

from utils import pruning

VOCAB = 49_152  # SmolLM2's vocabulary


def js_whole(p_logits: torch.Tensor, q_logits: torch.Tensor) -> float:
    """JS divergence with every intermediate the size of the logits."""
    logp, logq = p_logits.log_softmax(-1), q_logits.log_softmax(-1)
    logm = torch.logsumexp(torch.stack([logp, logq]), 0) - torch.log(torch.tensor(2.0))
    kl = lambda a: (a.exp() * (a - logm)).sum(-1)  # noqa: E731
    return float((0.5 * kl(logp) + 0.5 * kl(logq)).mean())


def nll_whole(logits: torch.Tensor, tokens: torch.Tensor) -> float:
    """Mean NLL through a full log-softmax."""
    return float(-logits[:, :-1].log_softmax(-1).gather(-1, tokens[:, 1:, None]).mean())


def main() -> None:
    """Time both ways for each loss and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=16)
    parser.add_argument("--ctx", type=int, default=128)
    add_threads_option(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    p = 3 * torch.randn(args.windows, args.ctx, VOCAB, generator=gen)
    q = p + 0.5 * torch.randn(p.shape, generator=gen)
    tokens = torch.randint(0, VOCAB, (args.windows, args.ctx), generator=gen)
    pairs = {"JS divergence (FinerCut)": (lambda: js_whole(p, q), lambda: pruning.js_divergence(p, q)),
             "mean NLL (BlockPruner, SLEB)": (lambda: nll_whole(q, tokens), lambda: pruning.mean_nll(q, tokens))}
    for name, (whole, ours) in pairs.items():
        a, b = whole(), ours()
        t_whole, t_ours = timed(whole), timed(ours)
        print(f"{name} over {args.windows} x {args.ctx} x {VOCAB}: whole {t_whole:.2f} s, utils.pruning {t_ours:.2f} s "
              f"-> ratio {t_whole / t_ours:.2f}; relative difference {abs(a - b) / abs(a):.1e}")


if __name__ == "__main__":
    main()
