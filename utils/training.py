"""A small seeded training harness: AdamW, warmup + cosine schedule, early stopping on validation.

Every variant trained with one ``TrainConfig`` gets the same optimiser, schedule and step budget.
For a fixed seed, training on CPU is bitwise reproducible (same machine and thread count): the
model is built right after ``torch.manual_seed(seed)``, the data order comes from a generator
seeded with the same seed, and deterministic algorithms are enforced during training.

Public names: ``train`` (one seeded run, the test metric of its best-validation weights),
``TrainConfig``, ``TrainResult``, ``Benchmark`` (what a benchmark must provide), ``lr_factor``
(the schedule), ``deterministic``, ``step_flops``.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm

__all__ = [
    "Benchmark",
    "TrainConfig",
    "TrainResult",
    "deterministic",
    "lr_factor",
    "step_flops",
    "train",
]


class Benchmark(Protocol):
    """What the harness trains on: seeded batches, a training loss, and (loss, metric) per split."""

    name: str

    def batches(
        self, generator: torch.Generator, batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...
    def loss(
        self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor: ...
    def evaluate(
        self, model: nn.Module, split: str, device: str = "cpu"
    ) -> tuple[float, float]: ...


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser, schedule and budget shared by every variant of an experiment."""

    steps: int = 500
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.05
    warmup_steps: int = 50
    grad_clip: float = 1.0
    eval_every: int = 50
    patience: int = 5  # evaluations without a new best validation loss before stopping

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.eval_every < 1 or self.patience < 1:
            raise ValueError(f"steps, batch_size, eval_every and patience must be >= 1, got {self}")


@dataclass
class TrainResult:
    """What one training run reports: the test metric of the best-validation weights and its costs."""

    metric: float
    test_loss: float  # the benchmark's loss on the test split (mean negative log-likelihood)
    val_loss: float
    params: int
    steps: int  # steps actually taken (early stopping may end before the budget)
    best_step: int
    wall_s: float
    cpu_s: float  # CPU time of this process while training (robust to other load on the machine)
    flops_per_step: float  # forward + backward FLOPs of one training step (matmuls counted)
    history: list[dict] = field(default_factory=list)


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to 1, then cosine decay to 0 at ``cfg.steps``."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@contextlib.contextmanager
def deterministic() -> Iterator[None]:
    """Enforce deterministic algorithms inside the block, restoring the previous setting after."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def step_flops(
    model: nn.Module, benchmark: Benchmark, inputs: torch.Tensor, targets: torch.Tensor
) -> float:
    """FLOPs of one forward + backward pass, counted by torch's FlopCounterMode; leaves no gradients."""
    with FlopCounterMode(display=False) as counter:
        benchmark.loss(model, inputs, targets).backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def train(
    build: Callable[[], nn.Module],
    benchmark: Benchmark,
    cfg: TrainConfig,
    seed: int,
    device: str = "cpu",
    progress: bool = True,
) -> TrainResult:
    """Train ``build()`` on ``benchmark``; return the test metric of the weights with the best validation loss.

    Gradients are switched on inside, so a caller that disabled them globally (as the
    interpretability notebooks do) still trains.
    """
    with deterministic(), torch.enable_grad():
        torch.manual_seed(seed)
        model = build().to(device)
        batches = benchmark.batches(torch.Generator().manual_seed(seed), cfg.batch_size)
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
        best = (math.inf, 0, copy.deepcopy(model.state_dict()))
        history: list[dict] = []
        flops = None
        waited = 0
        started, started_cpu = time.perf_counter(), time.process_time()
        bar = tqdm(
            range(cfg.steps),
            desc=f"train {benchmark.name} seed {seed}",
            leave=False,
            disable=not progress,
        )
        step = 0
        for step in bar:
            inputs, targets = (t.to(device) for t in next(batches))
            if flops is None:
                flops = step_flops(model, benchmark, inputs, targets)
            model.train()
            loss = benchmark.loss(model, inputs, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            schedule.step()
            if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
                model.eval()
                val_loss, _ = benchmark.evaluate(model, "validation", device)
                train_loss = loss.detach().item()
                history.append({"step": step + 1, "train_loss": train_loss, "val_loss": val_loss})
                bar.set_postfix(loss=f"{train_loss:.3f}", val=f"{val_loss:.3f}")
                if val_loss < best[0]:
                    best, waited = (val_loss, step + 1, copy.deepcopy(model.state_dict())), 0
                else:
                    waited += 1
                    if waited >= cfg.patience:
                        break
        wall, cpu = time.perf_counter() - started, time.process_time() - started_cpu
        model.load_state_dict(best[2])
        model.eval()
        test_loss, metric = benchmark.evaluate(model, "test", device)
    return TrainResult(
        metric=metric,
        test_loss=test_loss,
        val_loss=best[0],
        params=sum(p.numel() for p in model.parameters()),
        steps=step + 1,
        best_step=best[1],
        wall_s=wall,
        cpu_s=cpu,
        flops_per_step=flops or 0.0,
        history=history,
    )
