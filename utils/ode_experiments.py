"""Notebook 05's experiment harness: the size presets, the runner that trains every (benchmark,
variant, seed) once, on one or more worker processes, and the tables and plots of its runs.

The method is elsewhere, and reads on its own: ``utils.ode_blocks`` (transformer layers as steps
of an ODE solver: the fields, the integrators, weight sharing, orders of accuracy) and
``utils.ode_models`` (the networks trained around an ODE stack). The data, loss and metric of each
benchmark are ``utils.ode_benchmarks``; the paired tests over seeds and the verdict rule are
``utils.ode_comparisons``.

* ``PRESETS``: the sizes of each scale (``apply_scale(globals(), ex.PRESETS)`` in the notebook).
* ``model_config`` / ``train_configs``: an ``ODEConfig`` and one ``TrainConfig`` per benchmark from
  the notebook's size parameters (warmup for the first 10% of the steps, then cosine decay).
* ``Runner``: trains each (benchmark, variant, seed) once and caches it across experiments; its
  ``run`` returns one row per run, ``curves`` the loss curves.
* ``summarize`` (mean and spread over seeds per variant), ``show_summary`` (its columns under
  readable headers, ``SUMMARY_HEADERS``) and ``plot_pairs`` (one line per seed).

The notebook reaches everything through this module (``from utils import ode_experiments as
ex``), so it also re-exports the loaders ``image_benchmark`` and ``lm_benchmark``, ``Variant``, and
the comparisons ``compare_family``, ``verdict``, ``family_verdict``, ``seeds_needed`` and
``PILOT_GAIN_SD``.

Public names: ``PRESETS``, ``model_config``, ``train_configs``, ``warmup_cosine_config``,
``Runner``, ``Job``, ``run_job``, ``check_device``, ``ODEBenchmark``, ``summarize``,
``show_summary``, ``SUMMARY_HEADERS``, ``plot_pairs``, and the re-exports above.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from functools import partial
from multiprocessing import get_context
from typing import Protocol

import pandas as pd
import torch
from pandas.io.formats.style import Styler
from torch import nn
from tqdm.auto import tqdm

from utils.ode_benchmarks import image_benchmark, lm_benchmark
from utils.ode_blocks import SUBLAYER_CALLS, ODEConfig
from utils.ode_comparisons import (
    PILOT_GAIN_SD,
    compare_family,
    family_verdict,
    paired_values,
    seeds_needed,
    verdict,
)
from utils.ode_models import Variant
from utils.tables import show_table
from utils.training import Benchmark, TrainConfig, TrainResult, train

__all__ = [
    "PILOT_GAIN_SD",
    "PRESETS",
    "Job",
    "ODEBenchmark",
    "Runner",
    "SUMMARY_HEADERS",
    "Variant",
    "check_device",
    "compare_family",
    "family_verdict",
    "image_benchmark",
    "lm_benchmark",
    "model_config",
    "plot_pairs",
    "run_job",
    "seeds_needed",
    "show_summary",
    "summarize",
    "train_configs",
    "verdict",
    "warmup_cosine_config",
]

PRESETS = {
    "smoke": {
        "d_model": 16,
        "n_heads": 2,
        "d_mlp": 32,
        "n_layers": 2,
        "seeds": 2,
        "lm_seeds": 2,
        "workers": 2,
        "image_steps": 30,
        "lm_steps": 20,
        "batch_size": 32,
        "lm_batch_size": 16,
        "lr": 3e-3,
        "lm_lr": 3e-3,
        "eval_every": 10,
        "lm_eval_every": 5,
        "patience": 3,
        "lm_ctx": 16,
        "lm_train_chars": 50_000,
        "lm_eval_chars": 4_096,
        "image_patch": 4,
        "share_groups": [1, 2],
        "image_source": "digits",
        "integrator_kinds": ["strang", "rk2", "rk4"],
    },
    "default": {
        "d_model": 64,
        "n_heads": 4,
        "d_mlp": 128,
        "n_layers": 4,
        "seeds": 8,
        "lm_seeds": 4,
        "workers": 2,
        "image_steps": 150,
        "lm_steps": 1000,
        "batch_size": 64,
        "lm_batch_size": 32,
        "lr": 3e-3,
        "lm_lr": 6e-3,
        "eval_every": 25,
        "lm_eval_every": 100,
        "patience": 4,
        "lm_ctx": 64,
        "lm_train_chars": 1_000_000,
        "lm_eval_chars": 65_536,
        "image_patch": 4,
        "share_groups": [1, 2, 4],
        "image_source": "digits",
        "integrator_kinds": ["strang", "rk2"],
    },
    # DeiT-Ti (d 192, 12 layers, 3 heads, MLP 768) on CIFAR-100 with 4x4 patches of the 32x32
    # images: needs the network once (CIFAR-100) and a GPU (device="cuda"; one worker).
    "paper": {
        "d_model": 192,
        "n_heads": 3,
        "d_mlp": 768,
        "n_layers": 12,
        "seeds": 8,
        "lm_seeds": 4,
        "workers": 1,
        "image_steps": 50_000,
        "lm_steps": 20_000,
        "batch_size": 128,
        "lm_batch_size": 64,
        "lr": 1e-3,
        "lm_lr": 1e-3,
        "eval_every": 1000,
        "lm_eval_every": 1000,
        "patience": 10,
        "lm_ctx": 256,
        "lm_train_chars": 10_000_000,
        "lm_eval_chars": 262_144,
        "image_patch": 4,
        "share_groups": [1, 2, 3, 4, 6, 12],
        "image_source": "cifar100",
        "integrator_kinds": ["strang", "rk2", "rk4"],
    },
}


# ------------------------------------------------------------------------------- runs


class ODEBenchmark(Benchmark, Protocol):
    """What the runner needs from a benchmark (ImageBenchmark or CharBenchmark)."""

    metric_name: str
    higher_is_better: bool

    def build(self, cfg: ODEConfig, patch: int) -> nn.Module: ...


@dataclass(frozen=True)
class Job:
    """One training run, everything a worker process needs (picklable)."""

    benchmark: ODEBenchmark
    model_cfg: ODEConfig
    train_cfg: TrainConfig
    patch: int
    seed: int
    device: str
    threads: int


def run_job(job: Job) -> TrainResult:
    """Train one run on ``job.threads`` CPU threads (in a worker process or in this one)."""
    torch.set_num_threads(job.threads)
    build = partial(job.benchmark.build, job.model_cfg, job.patch)
    return train(build, job.benchmark, job.train_cfg, job.seed, job.device, progress=False)


def check_device(device: str) -> str:
    """``device`` if torch can use it here, else a clear error naming the fix."""
    kind = torch.device(device).type
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} is not available on this machine: use device='cpu'")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} is not available on this machine: use device='cpu'")
    return device


class Runner:
    """Trains (benchmark, variant, seed) combinations once each, caching results across experiments.

    On the CPU, ``workers`` processes train runs side by side, each on ``threads`` threads; every
    run is seeded on its own, so the results do not depend on ``workers``. Other devices run one
    job at a time in this process.
    """

    def __init__(
        self,
        model_cfg: ODEConfig,
        train_cfgs: Mapping[str, TrainConfig],
        patch: int,
        device: str = "cpu",
        workers: int = 1,
        threads: int = 1,
    ) -> None:
        if workers < 1 or threads < 1:
            raise ValueError(f"workers and threads must be >= 1, got {workers} and {threads}")
        self.model_cfg, self.train_cfgs, self.patch = model_cfg, dict(train_cfgs), patch
        self.device = check_device(device)
        self.workers = workers if torch.device(device).type == "cpu" else 1
        self.threads = threads
        self.results: dict[tuple[str, Variant, int], TrainResult] = {}
        self._pool: ProcessPoolExecutor | None = None

    def job(self, benchmark: ODEBenchmark, variant: Variant, seed: int) -> Job:
        """The training job of one run."""
        cfg = replace(self.model_cfg, kind=variant.kind, share=variant.share)
        train_cfg = self.train_cfgs[benchmark.name]
        return Job(benchmark, cfg, train_cfg, self.patch, seed, self.device, self.threads)

    def run(
        self, benchmarks: Mapping[int, ODEBenchmark], variants: Sequence[Variant], desc: str
    ) -> pd.DataFrame:
        """Train what is not cached yet (seed -> that seed's benchmark) and return one row per run."""
        names = {b.name for b in benchmarks.values()}
        if len(names) != 1:
            raise ValueError(f"one experiment runs on one benchmark, got {sorted(names)}")
        (name,) = names
        todo = [(v, s) for v in variants for s in benchmarks if (name, v, s) not in self.results]
        todo.sort(
            key=lambda vs: -sum(SUBLAYER_CALLS[vs[0].kind])
        )  # longest first: balanced workers
        jobs = {(name, v, s): self.job(benchmarks[s], v, s) for v, s in todo}
        bar = tqdm(total=len(jobs), desc=f"{desc} ({name})", unit="run")
        for key, result in self._execute(jobs):
            self.results[key] = result
            bar.update()
        bar.close()
        return pd.DataFrame([self.row(name, v, s) for v in variants for s in benchmarks])

    def _execute(self, jobs: dict) -> Iterator[tuple[tuple, TrainResult]]:
        """(key, result) of every job, in this process or on the runner's pool of spawned workers."""
        if self.workers == 1 or len(jobs) < 2:
            before = torch.get_num_threads()
            try:
                for key, job in jobs.items():
                    yield key, run_job(job)
            finally:
                torch.set_num_threads(before)
            return
        futures = {self.pool().submit(run_job, job): key for key, job in jobs.items()}
        for future in as_completed(futures):
            yield futures[future], future.result()

    def pool(self) -> ProcessPoolExecutor:
        """The worker processes, started once (spawned: no forked torch threads) and shut down with the runner."""
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"))
            weakref.finalize(self, self._pool.shutdown)
        return self._pool

    def row(self, name: str, variant: Variant, seed: int) -> dict:
        """One run as a flat record."""
        r = self.results[(name, variant, seed)]
        attn_calls, mlp_calls = SUBLAYER_CALLS[variant.kind]
        return {
            "benchmark": name,
            "kind": variant.kind,
            "share": variant.share,
            "seed": seed,
            "metric": r.metric,
            "test_loss": r.test_loss,
            "val_loss": r.val_loss,
            "params": r.params,
            "steps": r.steps,
            "best_step": r.best_step,
            "wall_s": r.wall_s,
            "cpu_s": r.cpu_s,
            "train_gflops_per_step": r.flops_per_step / 1e9,
            "sublayer_calls_per_layer": attn_calls + mlp_calls,
        }

    def curves(self, name: str, variants: Sequence[Variant], seeds: Sequence[int]) -> pd.DataFrame:
        """Training and validation loss against step of the given runs (one row per evaluation)."""
        return pd.DataFrame(
            {"kind": v.kind, "share": v.share, "seed": s, **h}
            for v in variants
            for s in seeds
            for h in self.results[(name, v, s)].history
        )


# ------------------------------------------------------------------ tables and plots


def summarize(
    runs: pd.DataFrame, by: Sequence[str] = ("benchmark", "kind", "share")
) -> pd.DataFrame:
    """Mean and std over seeds of the metric and test loss, plus parameters, steps, time and FLOPs."""
    grouped = runs.groupby(list(by), sort=False)
    table = grouped.agg(
        metric_mean=("metric", "mean"),
        metric_std=("metric", "std"),
        test_loss_mean=("test_loss", "mean"),
        seeds=("seed", "count"),
        params=("params", "first"),
        steps=("steps", "mean"),
        cpu_s=("cpu_s", "mean"),
        wall_s=("wall_s", "mean"),
        train_gflops_per_step=("train_gflops_per_step", "first"),
        sublayer_calls_per_layer=("sublayer_calls_per_layer", "first"),
    )
    return table.reset_index()


# summary column -> (header a reader sees, number kind of utils.tables.show_table)
SUMMARY_HEADERS = {
    "kind": ("scheme", None),
    "share": ("layers per field", "count"),
    "params": ("parameters", "count"),
    "metric_mean": ("test metric (mean)", "float"),
    "metric_std": ("sd over seeds", "float"),
    "test_loss_mean": ("test loss (mean)", "nats"),
    "seeds": ("seeds", "count"),
    "sublayer_calls_per_layer": ("calls per layer", "count"),
    "train_gflops_per_step": ("GFLOPs per step", "float"),
    "cpu_s": ("CPU per run", "s"),
    "steps": ("steps (mean)", "float"),
}


def show_summary(summary: pd.DataFrame, columns: Sequence[str]) -> Styler:
    """``columns`` of a ``summarize`` table under readable headers, through ``show_table``."""
    unknown = [c for c in columns if c not in SUMMARY_HEADERS]
    if unknown:
        raise KeyError(f"no header for {unknown}; known: {list(SUMMARY_HEADERS)}")
    frame = summary[list(columns)].rename(columns={c: SUMMARY_HEADERS[c][0] for c in columns})
    kinds = {SUMMARY_HEADERS[c][0]: SUMMARY_HEADERS[c][1] for c in columns if SUMMARY_HEADERS[c][1]}
    return show_table(frame, kinds=kinds)


def plot_pairs(ax, runs: pd.DataFrame, a: Variant, b: Variant, column: str = "metric") -> None:
    """One line per seed from ``a``'s value to ``b``'s (the pairing the tests use), means in black."""
    x, y = paired_values(runs, a, column), paired_values(runs, b, column)
    seeds = x.index.intersection(y.index)
    for seed in seeds:
        ax.plot([0, 1], [x[seed], y[seed]], color="tab:blue", alpha=0.4, marker="o")
    ax.plot(
        [0, 1], [x[seeds].mean(), y[seeds].mean()], color="black", marker="s", lw=2, label="mean"
    )
    ax.set_xticks([0, 1], [a.label, b.label])
    ax.set_xlim(-0.3, 1.3)


# ------------------------------------------------ configurations from the notebook's sizes


def warmup_cosine_config(
    steps: int, batch_size: int, lr: float, eval_every: int, patience: int
) -> TrainConfig:
    """A training configuration whose warmup is the first 10% of the steps."""
    return TrainConfig(
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        warmup_steps=max(1, steps // 10),
        eval_every=eval_every,
        patience=patience,
    )


def train_configs(sizes: Mapping) -> dict[str, TrainConfig]:
    """One training configuration per benchmark from a notebook's size parameters."""
    image = ("image_steps", "batch_size", "lr", "eval_every", "patience")
    lm = ("lm_steps", "lm_batch_size", "lm_lr", "lm_eval_every", "patience")
    return {
        "image": warmup_cosine_config(*(sizes[k] for k in image)),
        "lm": warmup_cosine_config(*(sizes[k] for k in lm)),
    }


def model_config(sizes: Mapping) -> ODEConfig:
    """The ODE stack configuration from a notebook's size parameters."""
    return ODEConfig(**{k: sizes[k] for k in ("d_model", "n_heads", "d_mlp", "n_layers")})
