"""Notebook 05's experiment harness: the models built around an ODE stack (a tiny ViT, a character
LM), the benchmarks they are trained and scored on (scikit-learn's ``digits`` / CIFAR-100, the
shipped corpus), and the runner that trains every (benchmark, variant, seed) once, on one or more
worker processes, and compares variants with paired tests over seeds (``utils.stats``).

The method itself (fields, stack, integrators) is ``utils.ode_blocks``. A *benchmark* here is data
plus a loss and a metric; ``utils.tasks`` holds the zero-shot prompt tasks of the other notebooks.
"""

from __future__ import annotations

import math
import random
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from functools import lru_cache, partial
from multiprocessing import get_context
from typing import Protocol

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from utils import stats
from utils.ode_blocks import SUBLAYER_CALLS, ODEConfig, ODEStack
from utils.training import Benchmark, TrainConfig, TrainResult, train

UNKNOWN_CHAR = "\x00"
CIFAR100_DATASET = "uoft-cs/cifar100"
MIN_SEEDS = 4  # a paired test over fewer seeds is refused ("too few")
POWER = 0.8  # the power the seed count is chosen for
# Spread (standard deviation over seeds) of the per-seed gain between two variants, from a pilot:
# the previous reference run (3 seeds: image accuracy 0.002-0.012, rounded up; LM 0.004 bits/char).
PILOT_GAIN_SD = {"image": 0.01, "lm": 0.005}

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


# ---------------------------------------------------------------------------- models


class TinyViT(nn.Module):
    """A ViT: patch embedding, class token, learned positions, an ODE stack, a linear head."""

    def __init__(
        self, cfg: ODEConfig, image_size: int, channels: int, patch: int, n_classes: int
    ) -> None:
        super().__init__()
        if image_size % patch:
            raise ValueError(f"image_size {image_size} is not divisible by patch {patch}")
        self.patch = patch
        n_patches = (image_size // patch) ** 2
        self.embed = nn.Linear(channels * patch * patch, cfg.d_model)
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.d_model))
        self.pos = nn.Parameter(0.02 * torch.randn(1, n_patches + 1, cfg.d_model))
        self.stack = ODEStack(replace(cfg, causal=False))
        self.norm = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, n_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits ``[batch, n_classes]`` of images ``[batch, channels, H, W]``."""
        b, c, _, _ = images.shape
        p = self.patch
        patches = (
            images.unfold(2, p, p)
            .unfold(3, p, p)
            .permute(0, 2, 3, 1, 4, 5)
            .reshape(b, -1, c * p * p)
        )
        x = torch.cat([self.cls.expand(b, -1, -1), self.embed(patches)], dim=1) + self.pos
        return self.head(self.norm(self.stack(x))[:, 0])


class CharLM(nn.Module):
    """A causal character-level language model around an ODE stack."""

    def __init__(self, cfg: ODEConfig, vocab_size: int, ctx: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, cfg.d_model)
        self.pos = nn.Parameter(0.02 * torch.randn(1, ctx, cfg.d_model))
        self.stack = ODEStack(replace(cfg, causal=True))
        self.norm = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, vocab_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Next-character logits ``[batch, pos, vocab]``."""
        if tokens.shape[1] > self.pos.shape[1]:
            raise ValueError(
                f"sequence of {tokens.shape[1]} characters exceeds the context {self.pos.shape[1]}"
            )
        x = self.embed(tokens) + self.pos[:, : tokens.shape[1]]
        return self.head(self.norm(self.stack(x)))


# ------------------------------------------------------------------------- benchmarks


@dataclass
class ImageBenchmark:
    """Image classification: tensors per split, images ``[n, c, s, s]`` standardised."""

    images: dict[str, torch.Tensor]
    labels: dict[str, torch.Tensor]
    n_classes: int
    name: str = "image"
    metric_name: str = "test accuracy"
    higher_is_better: bool = True

    def build(self, cfg: ODEConfig, patch: int) -> TinyViT:
        """A tiny ViT sized for these images."""
        _, c, s, _ = self.images["train"].shape
        return TinyViT(cfg, s, c, patch, self.n_classes)

    def batches(
        self, generator: torch.Generator, batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless training batches, a fresh seeded permutation per epoch."""
        n = len(self.labels["train"])
        while True:
            order = torch.randperm(n, generator=generator)
            for i in range(0, n - batch_size + 1, batch_size):
                idx = order[i : i + batch_size]
                yield self.images["train"][idx], self.labels["train"][idx]

    def loss(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the class logits."""
        return F.cross_entropy(model(inputs), targets)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str, device: str = "cpu") -> tuple[float, float]:
        """(mean cross-entropy, accuracy) on ``split``."""
        x, y = self.images[split], self.labels[split]
        losses, correct = [], 0
        for i in range(0, len(y), 512):
            logits = model(x[i : i + 512].to(device))
            target = y[i : i + 512].to(device)
            losses.append(F.cross_entropy(logits, target, reduction="sum"))
            correct += int((logits.argmax(-1) == target).sum())
        return float(sum(losses)) / len(y), correct / len(y)


@dataclass
class CharBenchmark:
    """Character-level language modelling; ``ids`` per split, metric bits per character."""

    ids: dict[str, torch.Tensor]
    vocab: str
    ctx: int
    name: str = "lm"
    metric_name: str = "test bits per character"
    higher_is_better: bool = False

    def build(self, cfg: ODEConfig, patch: int = 0) -> CharLM:
        """A causal character LM for this vocabulary and context."""
        return CharLM(cfg, len(self.vocab), self.ctx)

    def batches(
        self, generator: torch.Generator, batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless batches of random training windows (seeded offsets)."""
        train = self.ids["train"]
        while True:
            starts = torch.randint(0, len(train) - self.ctx - 1, (batch_size,), generator=generator)
            windows = torch.stack([train[s : s + self.ctx + 1] for s in starts.tolist()])
            yield windows[:, :-1], windows[:, 1:]

    def loss(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean next-character cross-entropy (nats)."""
        return F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten())

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str, device: str = "cpu") -> tuple[float, float]:
        """(cross-entropy in nats, bits per character) over the split's non-overlapping windows."""
        ids = self.ids[split]
        n = (len(ids) - 1) // self.ctx
        if n < 1:
            raise ValueError(
                f"the {split} text has {len(ids)} characters, fewer than one window of {self.ctx + 1}"
            )
        inputs = ids[: n * self.ctx].view(n, self.ctx)
        targets = ids[1 : n * self.ctx + 1].view(n, self.ctx)
        total = 0.0
        for i in range(0, n, 256):
            logits = model(inputs[i : i + 256].to(device))
            total += float(
                F.cross_entropy(
                    logits.flatten(0, 1), targets[i : i + 256].flatten().to(device), reduction="sum"
                )
            )
        nats = total / (n * self.ctx)
        return nats, nats / math.log(2)


def split_indices(n: int, fractions: Sequence[float], seed: int) -> list[torch.Tensor]:
    """A seeded permutation of range(n) cut into consecutive parts of the given fractions (rest last)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    cuts = np.cumsum([round(f * n) for f in fractions]).tolist()
    return list(torch.tensor_split(order, cuts))


def digits_benchmark(
    seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.2
) -> ImageBenchmark:
    """scikit-learn's bundled 8x8 ``digits`` (1,797 images, 10 classes) in seeded train/val/test
    splits, standardised (zero mean, unit variance over the training pixels)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1)
    labels = torch.tensor(digits.target, dtype=torch.long)
    val, test, tr = split_indices(len(labels), [val_fraction, test_fraction], seed)
    mean, std = images[tr].mean(), images[tr].std()  # standardised with training statistics
    parts = {"train": tr, "validation": val, "test": test}
    return ImageBenchmark(
        {k: (images[v] - mean) / std for k, v in parts.items()},
        {k: labels[v] for k, v in parts.items()},
        10,
    )


@lru_cache(maxsize=1)
def _cifar100_arrays() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """CIFAR-100 train/test images ``[n, 3, 32, 32]`` in [0, 1] and labels, loaded once per process."""
    from utils.data import DataUnavailableError

    try:
        from datasets import load_dataset

        data = load_dataset(CIFAR100_DATASET)
    except Exception as err:
        raise DataUnavailableError(
            f"cannot load CIFAR-100 ({CIFAR100_DATASET}) through `datasets`: {err}. It needs network "
            "access once (then it is cached); offline, use image_source='digits'."
        ) from err

    def tensors(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        rows = data[split].with_format("numpy")
        x = torch.tensor(np.stack(rows["img"]), dtype=torch.float32).permute(0, 3, 1, 2) / 255.0
        return x, torch.tensor(rows["fine_label"], dtype=torch.long)

    return {split: tensors(split) for split in ("train", "test")}


def cifar100_benchmark(seed: int = 0, val_fraction: float = 0.1) -> ImageBenchmark:
    """CIFAR-100 through ``datasets`` (needs the network once; then cached), per-channel normalised,
    with a seeded validation split of the training images (the test split is CIFAR's own)."""
    arrays = _cifar100_arrays()
    (train_x, train_y), (test_x, test_y) = arrays["train"], arrays["test"]
    mean, std = train_x.mean((0, 2, 3), keepdim=True), train_x.std((0, 2, 3), keepdim=True)
    val, tr = split_indices(len(train_y), [val_fraction], seed)
    images = {"train": train_x[tr], "validation": train_x[val], "test": test_x}
    labels = {"train": train_y[tr], "validation": train_y[val], "test": test_y}
    return ImageBenchmark({k: (v - mean) / std for k, v in images.items()}, labels, 100)


def image_benchmark(source: str, seed: int = 0) -> ImageBenchmark:
    """The image benchmark by name: ``digits`` (offline) or ``cifar100`` (online, paper scale),
    split into train/validation(/test) by ``seed``."""
    loaders: dict[str, Callable[[int], ImageBenchmark]] = {
        "digits": digits_benchmark,
        "cifar100": cifar100_benchmark,
    }
    if source not in loaders:
        raise ValueError(f"image_source must be one of {list(loaders)}, got {source!r}")
    return loaders[source](seed)


SYNTHETIC_WORDS = {
    "subject": [
        "the cat",
        "a dog",
        "my friend",
        "the old man",
        "every child",
        "the river",
        "a storm",
    ],
    "verb": ["sees", "follows", "remembers", "carries", "paints", "crosses", "finds"],
    "object": ["the hill", "a red boat", "the quiet town", "an apple", "the bridge", "a letter"],
    "tail": [".", " at night.", " in spring.", " again.", " slowly.", " with care."],
}


def synthetic_text(n_chars: int, seed: int = 0) -> str:
    """Seeded toy English (subject verb object sentences): a stand-in for the corpus in tests."""
    rng = random.Random(seed)
    parts: list[str] = []
    length = 0
    while length < n_chars:
        words = [rng.choice(SYNTHETIC_WORDS[k]) for k in ("subject", "verb", "object")]
        sentence = " ".join(words).capitalize() + rng.choice(SYNTHETIC_WORDS["tail"]) + " "
        parts.append(sentence)
        length += len(sentence)
    return "".join(parts)[:n_chars]


def corpus_text(split: str, n_chars: int) -> str:
    """The first ``n_chars`` characters of the shipped corpus split (documents joined by newlines)."""
    from utils.data import corpus_texts

    parts, length = [], 0
    for text in corpus_texts(split):
        parts.append(text)
        length += len(text) + 1
        if length >= n_chars:
            break
    return "\n".join(parts)[:n_chars]


def char_benchmark(train_text: str, heldout_text: str, ctx: int) -> CharBenchmark:
    """Character benchmark: vocabulary from the training text; the held-out text split in halves,
    ``validation`` (early stopping) and ``test`` (the reported metric). Unseen characters map to
    one unknown symbol."""
    if len(train_text) < 2 * (ctx + 1):
        raise ValueError(
            f"training text of {len(train_text)} characters is too short for ctx={ctx}"
        )
    vocab = UNKNOWN_CHAR + "".join(sorted(set(train_text) - {UNKNOWN_CHAR}))
    index = {c: i for i, c in enumerate(vocab)}
    encode = lambda text: torch.tensor([index.get(c, 0) for c in text], dtype=torch.long)
    half = len(heldout_text) // 2
    ids = {
        "train": encode(train_text),
        "validation": encode(heldout_text[:half]),
        "test": encode(heldout_text[half:]),
    }
    return CharBenchmark(ids, vocab, ctx)


def lm_benchmark(
    source: str, train_chars: int, eval_chars: int, ctx: int, seed: int = 0
) -> CharBenchmark:
    """The LM benchmark from ``source``: ``corpus`` (shipped train/validation) or ``synthetic``."""
    if source == "corpus":
        return char_benchmark(
            corpus_text("train", train_chars), corpus_text("validation", eval_chars), ctx
        )
    if source == "synthetic":
        return char_benchmark(
            synthetic_text(train_chars, seed), synthetic_text(eval_chars, seed + 1), ctx
        )
    raise ValueError(f"lm_source must be 'corpus' or 'synthetic', got {source!r}")


# ------------------------------------------------------------------------ experiments


class ODEBenchmark(Benchmark, Protocol):
    """What the runner needs from a benchmark (ImageBenchmark or CharBenchmark)."""

    metric_name: str
    higher_is_better: bool

    def build(self, cfg: ODEConfig, patch: int) -> nn.Module: ...


@dataclass(frozen=True)
class Variant:
    """One architecture to train: a scheme and a sharing group size."""

    kind: str
    share: int = 1

    @property
    def label(self) -> str:
        """``'rk2'`` or ``'rk2, share 4'``."""
        return self.kind if self.share == 1 else f"{self.kind}, share {self.share}"


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


def paired_values(runs: pd.DataFrame, variant: Variant, column: str) -> pd.Series:
    """``column`` of one variant's runs, indexed by seed."""
    mine = runs[(runs.kind == variant.kind) & (runs.share == variant.share)]
    if mine.empty:
        raise ValueError(f"no runs of {variant.label!r} among these runs")
    return mine.set_index("seed")[column]


def paired_comparison(
    runs: pd.DataFrame, a: Variant, b: Variant, column: str, higher_is_better: bool
) -> dict:
    """Is ``b`` better than ``a``? Paired over seeds (each seed gave both the same data and batch
    order): the mean gain (signed so that positive favours ``b``), its bootstrap 95% interval,
    the spread of the per-seed gains and the paired t-test's p-value."""
    x, y = paired_values(runs, a, column), paired_values(runs, b, column)
    seeds = x.index.intersection(y.index)
    if len(seeds) < 2:
        raise ValueError(
            f"need at least 2 seeds run with both {a.label!r} and {b.label!r}, got {len(seeds)}"
        )
    x, y = x[seeds].to_numpy(), y[seeds].to_numpy()
    gains = (y - x) * (1 if higher_is_better else -1)
    interval = stats.bootstrap_interval(gains)
    return {
        "a": a.label,
        "b": b.label,
        "column": column,
        "n": len(seeds),
        "mean_a": float(x.mean()),
        "mean_b": float(y.mean()),
        "gain": float(gains.mean()),
        "low": interval.low,
        "high": interval.high,
        "sd_gain": float(gains.std(ddof=1)),
        "p_value": stats.paired_p_value(x, y),
    }


def compare_family(
    runs: pd.DataFrame,
    baseline: Variant,
    others: Sequence[Variant],
    column: str,
    higher_is_better: bool,
) -> dict[str, dict]:
    """Paired comparisons of each of ``others`` with ``baseline`` (one claim), with Holm-adjusted
    p-values (``p_holm``) across them; a family of one keeps its p-value."""
    family = {
        v.label: paired_comparison(runs, baseline, v, column, higher_is_better) for v in others
    }
    adjusted = stats.holm({k: c["p_value"] for k, c in family.items()})
    return {k: {**c, "p_holm": adjusted[k]} for k, c in family.items()}


def verdict(comparison: dict, min_n: int = MIN_SEEDS) -> str:
    """The rule of every row of the closing table: 'holds' if the gain is positive with Holm-adjusted
    p < 0.05 (paired t-test over seeds), 'fails' if negative with p < 0.05, else 'within noise';
    below ``min_n`` seeds 'too few'."""
    return stats.test_verdict(comparison["gain"], comparison["p_holm"], comparison["n"], min_n)


def family_verdict(family: Mapping[str, dict], min_n: int = MIN_SEEDS) -> tuple[str, str]:
    """(variant, verdict) of a claim tested by several variants: the variant with the smallest
    Holm-adjusted p-value (ties: the larger gain) carries the claim's verdict."""
    name = min(family, key=lambda k: (family[k]["p_holm"], -family[k]["gain"]))
    return name, verdict(family[name], min_n)


def seeds_needed(effect: float, sd: float) -> int:
    """Seeds a paired t-test needs to detect ``effect`` with ``POWER`` when the per-seed gains
    spread by ``sd`` (at least ``MIN_SEEDS``)."""
    return max(MIN_SEEDS, stats.seeds_for_power(effect, sd, POWER))


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


def config_dict(cfg: ODEConfig) -> dict:
    """A configuration as a plain dict (for metrics.json)."""
    return asdict(cfg)
