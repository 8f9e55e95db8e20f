"""Batched attention-knockout sweep (utils.recall.knockout_sweep) vs the plain loop of single runs.

    python benchmarks/bench_recall_knockout.py [--facts 6] [--window 5] [--model smollm2-135m]

Both compute, for the same facts, the predicted token's probability with each kind of edge into the
last position cut in a window around every layer. Prints both wall times, the speed-up and the
largest difference between their probabilities (must be < 1e-5).
"""

from __future__ import annotations

import argparse
import time

import torch

from utils import recall
from utils.data import load_facts
from utils.models import load_model

TOLERANCE = 1e-5


def main() -> None:
    """Run both implementations on the same facts and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--facts", type=int, default=6)
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    model = load_model(args.model)
    facts, counts = recall.prepare_facts(
        model, load_facts(), args.facts, args.seed, max_candidates=8 * args.facts
    )
    runs = 1 + len(recall.KNOCKOUT_SOURCES) * model.cfg.n_layers
    print(
        f"{len(facts)} facts x {runs} runs each, {model.cfg.n_layers} layers, window {args.window} ({counts})"
    )

    started = time.perf_counter()
    batched = recall.knockout_sweep(
        model, facts, args.window, fact_batch=len(facts), progress=False
    )
    t_batched = time.perf_counter() - started
    started = time.perf_counter()
    looped = recall.knockout_loop(model, facts, args.window)
    t_loop = time.perf_counter() - started

    diff = max(
        float((batched.p_new - looped.p_new).abs().max()),
        float((batched.p_base - looped.p_base).abs().max()),
    )
    print(
        f"plain loop: {t_loop:.2f} s   batched: {t_batched:.2f} s   speed-up: {t_loop / t_batched:.1f}x"
    )
    print(
        f"max |p_batched - p_loop| = {diff:.2e} ({'OK' if diff < TOLERANCE else 'FAIL'}: tolerance {TOLERANCE:g})"
    )
    if diff >= TOLERANCE:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
