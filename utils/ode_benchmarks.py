"""Notebook 05's benchmarks: data, a training loss and a reported metric for the networks of
``utils.ode_models``, in seeded train / validation / test splits.

* Images: scikit-learn's bundled 8x8 ``digits`` (offline, the default) or CIFAR-100 through
  ``datasets`` (online, paper scale), standardised with training statistics; the metric is test
  accuracy (higher is better).
* Characters: human-written prose (``data/prose``, the default), the model-written shipped corpus
  (a labelled comparison) or seeded toy sentences (quick trials) as character ids; the metric is
  test bits per character (lower is better).

Each benchmark gives ``build`` (the network sized for its data), endless seeded ``batches``,
``loss`` and ``evaluate``: what ``utils.training.train`` and the runner in
``utils.ode_experiments`` need. (``utils.tasks`` holds the zero-shot prompt tasks of the other
notebooks; a *benchmark* here is data plus a loss and a metric.)

Public names: ``ImageBenchmark``, ``CharBenchmark``, ``image_benchmark``, ``digits_benchmark``,
``cifar100_benchmark``, ``lm_benchmark``, ``char_benchmark``, ``corpus_text``, ``synthetic_text``,
``split_indices``, ``UNKNOWN_CHAR``, ``CIFAR100_DATASET``, ``LM_CORPORA``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from utils.data import DataUnavailableError, corpus_texts
from utils.ode_blocks import ODEConfig
from utils.ode_models import CharLM, TinyViT
from utils.prose import PROSE_SOURCE

__all__ = [
    "CIFAR100_DATASET",
    "LM_CORPORA",
    "UNKNOWN_CHAR",
    "CharBenchmark",
    "ImageBenchmark",
    "char_benchmark",
    "cifar100_benchmark",
    "corpus_text",
    "digits_benchmark",
    "image_benchmark",
    "lm_benchmark",
    "split_indices",
    "synthetic_text",
]

UNKNOWN_CHAR = "\x00"
CIFAR100_DATASET = "uoft-cs/cifar100"
# lm_source -> utils.data corpus source: human-written prose, or the model's own (shipped) text
LM_CORPORA = {"prose": PROSE_SOURCE, "corpus": "shipped"}


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
    try:
        # imported here, not at the top: `datasets` serves only the online, paper-scale CIFAR-100,
        # and importing it costs about 0.7 s and 30 MB in every process that loads this module
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


def corpus_text(split: str, n_chars: int, source: str = "shipped") -> str:
    """The first ``n_chars`` characters of a corpus split (documents joined by newlines): the shipped
    model-written corpus or ``"prose"`` (human-written, ``utils.prose``)."""
    parts, length = [], 0
    for text in corpus_texts(split, source):
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
    """The LM benchmark from ``source``: ``prose`` (human-written train/validation), ``corpus`` (the
    model-written shipped train/validation) or ``synthetic``."""
    if source in LM_CORPORA:
        corpus = LM_CORPORA[source]
        return char_benchmark(
            corpus_text("train", train_chars, corpus),
            corpus_text("validation", eval_chars, corpus),
            ctx,
        )
    if source == "synthetic":
        return char_benchmark(
            synthetic_text(train_chars, seed), synthetic_text(eval_chars, seed + 1), ctx
        )
    raise ValueError(f"lm_source must be one of {[*LM_CORPORA, 'synthetic']}, got {source!r}")
