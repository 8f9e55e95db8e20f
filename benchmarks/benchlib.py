"""What the benchmarks share: a CPU timer and the standard setup of a run on the embedded model."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402


def timed(fn: Callable[[], object]) -> float:
    """CPU seconds ``fn()`` takes (process time: steadier than wall time on a shared machine)."""
    start = time.process_time()
    fn()
    return time.process_time() - start


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    """The ``--threads`` option every benchmark takes (1 is the steadiest on a shared 2-core machine)."""
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadiest)")


def corpus_run(parser: argparse.ArgumentParser, tokens: int) -> tuple[argparse.Namespace, object, list]:
    """Parse ``parser`` (plus --tokens/--ctx/--threads), load the embedded model and stream corpus windows."""
    from utils.data import token_batches
    from utils.models import load_model

    parser.add_argument("--tokens", type=int, default=tokens)
    parser.add_argument("--ctx", type=int, default=128)
    add_threads_option(parser)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    torch.set_num_threads(args.threads)
    model = load_model()
    windows = list(token_batches(model, "train", args.tokens, args.ctx, batch_size=8))
    return args, model, windows
