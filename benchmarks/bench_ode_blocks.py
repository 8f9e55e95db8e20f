"""Wall time per training step of each block kind relative to `sequential`, and the parallel layer
with its input (and output) projections fused vs separate. Prints ratios; asserts nothing.

    .venv/bin/python benchmarks/bench_ode_blocks.py [--d-model 64 --layers 4 --ctx 64 --batch 32]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from benchlib import add_threads_option
from torch import nn

from utils import ode_blocks as ob


def time_per_call(fn: Callable[[], None], reps: int, warmup: int = 3) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``reps`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * sorted(times)[len(times) // 2]


def training_step(
    module: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
) -> Callable[[], None]:
    """A closure doing one forward + backward + AdamW step through ``forward``."""
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        forward(x).square().mean().backward()
        optimizer.step()

    return step


def main() -> None:
    """Run the benchmark and print one table per comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--d-mlp", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--ctx", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--reps", type=int, default=20)
    add_threads_option(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, args.ctx, args.d_model)
    base = ob.ODEConfig(args.d_model, args.heads, args.d_mlp, args.layers, causal=True)
    print(
        f"batch {args.batch} x ctx {args.ctx}, d_model {args.d_model}, {args.layers} layers, {args.threads} thread(s)"
    )

    times = {}
    for kind in ob.BLOCK_KINDS:
        stack = ob.ODEStack(ob.ODEConfig(**{**base.__dict__, "kind": kind}))
        times[kind] = time_per_call(training_step(stack, stack, x), args.reps)
    print("\nblock kind   ms/step  vs sequential  sublayer calls/layer")
    for kind, ms in times.items():
        print(
            f"{kind:<12} {ms:7.2f}  {ms / times['sequential']:12.2f}x  {sum(ob.SUBLAYER_CALLS[kind]):>8}"
        )

    stack = ob.ODEStack(ob.ODEConfig(**{**base.__dict__, "kind": "parallel"}))
    fused = nn.ModuleList(ob.FusedParallelField(f) for f in stack.fields)

    def run_fused(h: torch.Tensor) -> torch.Tensor:
        for layer in fused:
            h = layer(h)
        return h

    with torch.no_grad():
        gap = float((run_fused(x) - stack(x)).abs().max())
    separate = time_per_call(training_step(stack, stack, x), args.reps)
    together = time_per_call(training_step(fused, run_fused, x), args.reps)
    with torch.no_grad():
        separate_fwd = time_per_call(lambda: stack(x), args.reps)
        together_fwd = time_per_call(lambda: run_fused(x), args.reps)
    print(f"\nparallel layer, projections fused vs separate (max |output diff| {gap:.1e})")
    print(
        f"training step: separate {separate:.2f} ms, fused {together:.2f} ms, fused/separate {together / separate:.2f}x"
    )
    print(
        f"forward only:  separate {separate_fwd:.2f} ms, fused {together_fwd:.2f} ms, fused/separate {together_fwd / separate_fwd:.2f}x"
    )


if __name__ == "__main__":
    main()
