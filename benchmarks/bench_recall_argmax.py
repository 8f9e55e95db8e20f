"""Top-1 tokens of many vectors read through a vocabulary matrix: in cache-sized blocks
(utils.recall.argmax_of_product) vs the whole [rows, vocab] product then argmax.

    .venv/bin/python benchmarks/bench_recall_argmax.py [--rows 2048] [--threads 1]

Two shapes from notebook 01, on the embedded model's unembedding: a head's write read through its
[d_head, vocab] readout (inner dimension 64: limited by memory) and a sublayer's write read through
W_U (inner dimension d_model). Prints CPU times, the ratio (whole / blocked; > 1 means blocks win) and
whether both give the same tokens.
"""

from __future__ import annotations

import argparse

import torch
from benchlib import add_threads_option, timed

from utils import recall
from utils.models import load_model


def main() -> None:
    """Time both ways for each shape and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2048, help="vectors read per shape")
    add_threads_option(parser)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    torch.set_num_threads(args.threads)
    model = load_model()
    gen = torch.Generator().manual_seed(0)
    head_readout = recall.head_readout(model, model.blocks[20].attn.W_O[0])  # [d_head, vocab]
    shapes = {"head write (d_head)": head_readout, "sublayer write (d_model)": model.W_U}
    for name, matrix in shapes.items():
        x = torch.randn(args.rows, matrix.shape[0], generator=gen)
        whole = lambda x=x, m=matrix: (x @ m).argmax(-1)  # noqa: E731
        blocked = lambda x=x, m=matrix: recall.argmax_of_product(x, m)  # noqa: E731
        same = torch.equal(whole(), blocked())
        t_whole, t_blocked = timed(whole), timed(blocked)
        print(f"{name}: {args.rows} x {matrix.shape[0]} @ {tuple(matrix.shape)}: whole {t_whole:.2f} s, "
              f"blocked {t_blocked:.2f} s -> ratio {t_whole / t_blocked:.2f}; same tokens: {same}")


if __name__ == "__main__":
    main()
