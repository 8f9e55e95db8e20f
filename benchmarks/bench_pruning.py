"""SPRINT pruning cost: against greedy perplexity search, and checkpointed vs from-scratch scoring.

    python benchmarks/bench_pruning.py [--target 1.2] [--windows 4] [--ctx 64] [--tiny]

Prints times and ratios; asserts nothing. Issue #6 asks for:
* SPRINT's pruning wall time vs BlockPruner (greedy by calibration perplexity) at the same target,
  as a ratio (the paper reports up to 22.41x less pruning time than the second-best method);
* SPRINT with checkpointed residuals and reused scores vs recomputing everything from the embedding
  each step: the same pruning order and tuned weights, and the time each takes.
The latency model is fixed (attention and MLP equally expensive, 2.5% of the dense time each) so
the comparison measures pruning cost only, not timing noise. ``--tiny`` uses a random 8-layer model
and random tokens (no corpus needed).
"""

from __future__ import annotations

import argparse
import time

import torch

from utils import pruning
from utils.data import token_batches
from utils.models import load_model, tiny_model

FIXED_LATENCY = pruning.LatencyModel(1.0, {"attn": 0.025, "mlp": 0.025}, 30, "overhead")


def timed(fn):
    """(result, seconds) of ``fn()``."""
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    """Run both comparisons and print a small table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=1.2)
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--ctx", type=int, default=64)
    parser.add_argument("--tiny", action="store_true", help="random 8-layer model, random tokens")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    if args.tiny:
        model = tiny_model(n_layers=8, d_model=64, d_mlp=128, seed=0)
        calib = torch.randint(0, model.cfg.d_vocab, (args.windows, args.ctx), generator=torch.Generator().manual_seed(0))
    else:
        model = load_model()
        calib = torch.cat(list(token_batches(model, "train", args.windows * args.ctx, args.ctx, 64)))
    originals = pruning.original_down_projections(model)
    print(f"model: {model.cfg.n_layers} layers; calibration {tuple(calib.shape)}; target {args.target}x (fixed latency model)")

    run = lambda name, **kw: timed(lambda: pruning.run_method(name, model, calib, FIXED_LATENCY, [args.target], originals, **kw))
    sprint, t_sprint = run("sprint")
    greedy, t_greedy = run("blockpruner")
    print(f"SPRINT       {t_sprint:8.1f} s  pruned {len(sprint.order)} sublayers")
    print(f"BlockPruner  {t_greedy:8.1f} s  pruned {len(greedy.order)} sublayers")
    print(f"pruning time ratio BlockPruner / SPRINT: {t_greedy / t_sprint:.1f}x (paper: up to 22.41x vs second best)")

    scratch, t_scratch = timed(lambda: pruning.run_sprint(model, calib, FIXED_LATENCY, [args.target], use_cache=False))
    pruning.restore_dense(model, originals)
    same_order = scratch.order == sprint.order
    a, b = sprint.snapshots[args.target].tuned, scratch.snapshots[args.target].tuned
    max_diff = max((float((a[k] - b[k]).abs().max()) for k in a), default=0.0) if a.keys() == b.keys() else float("inf")
    print(f"from-scratch SPRINT {t_scratch:8.1f} s; checkpointed is {t_scratch / t_sprint:.1f}x faster")
    print(f"same pruning order: {same_order}; max |tuned W_out difference| = {max_diff:.1e}")


if __name__ == "__main__":
    main()
