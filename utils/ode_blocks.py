"""Notebook 05: transformer layers read as steps of an ODE solver (Zhong et al. 2022).

A pre-norm residual layer ``x + F(x)`` is one forward-Euler step of ``dx/dt = F(x, t)``. With two
sublayers, attention ``A`` and MLP ``M``:

* ``sequential`` (the standard layer): ``y = x + h A(x)``, ``x' = y + h M(y)``: Lie–Trotter
  splitting, each half integrated with one Euler step (first order).
* ``parallel``: ``x' = x + h (A(x) + M(x))``: one Euler step on the summed field (first order).
* ``strang``: half an MLP step, a full attention step, half an MLP step (the Strang–Marchuk
  splitting behind the Macaron layer of Lu et al. 2019). The splitting itself is second order,
  but each sub-flow is integrated with one Euler step, as in Macaron, so the scheme stays first
  order overall (with a smaller error constant). Both halves use the same MLP weights so that
  the parameter count matches ``sequential``.
* ``rk2`` (Heun) and ``rk4`` (classical Runge–Kutta) on the summed field (orders 2 and 4).

``A`` and ``M`` read a LayerNorm of the state; ``sequential`` and ``strang`` evaluate them on
different states and so own one norm each, the summed-field schemes one shared norm (2·d_model
fewer parameters per field). ``share`` layers in a row use one field; when a field is shared it
also reads a learned embedding of the time (layer index, interpolated between layers), so the
field can vary along the depth.

The module also holds the two tasks (a tiny ViT on scikit-learn's ``digits`` / CIFAR-100, a
character-level causal LM on the shipped corpus) and the experiment runner the notebook calls.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Protocol

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from utils.training import TrainableTask, TrainConfig, TrainResult, train

BLOCK_KINDS = ("sequential", "parallel", "strang", "rk2", "rk4")
SUMMED_FIELD_KINDS = ("parallel", "rk2", "rk4")
# (attention calls, MLP calls) per layer: the cost of each scheme in sublayer evaluations.
SUBLAYER_CALLS = {
    "sequential": (1, 1),
    "parallel": (1, 1),
    "strang": (1, 2),
    "rk2": (2, 2),
    "rk4": (4, 4),
}
# Global order of accuracy of each scheme (error O(h^order)); strang is 1 because its sub-flows
# are Euler steps (a second-order splitting of first-order pieces).
SCHEME_ORDER = {"sequential": 1, "parallel": 1, "strang": 1, "rk2": 2, "rk4": 4}
UNKNOWN_CHAR = "\x00"
CIFAR100_DATASET = "uoft-cs/cifar100"

PRESETS = {
    "smoke": {
        "d_model": 32,
        "n_heads": 2,
        "d_mlp": 64,
        "n_layers": 4,
        "seeds": 2,
        "image_steps": 60,
        "lm_steps": 30,
        "batch_size": 32,
        "lm_batch_size": 16,
        "lr": 3e-3,
        "eval_every": 10,
        "patience": 3,
        "lm_ctx": 32,
        "lm_train_chars": 100_000,
        "lm_eval_chars": 8_192,
        "image_patch": 2,
        "share_groups": [1, 2, 4],
        "dataset": "digits",
    },
    "default": {
        "d_model": 64,
        "n_heads": 4,
        "d_mlp": 128,
        "n_layers": 4,
        "seeds": 3,
        "image_steps": 400,
        "lm_steps": 400,
        "batch_size": 64,
        "lm_batch_size": 32,
        "lr": 3e-3,
        "eval_every": 50,
        "patience": 4,
        "lm_ctx": 64,
        "lm_train_chars": 1_000_000,
        "lm_eval_chars": 65_536,
        "image_patch": 2,
        "share_groups": [1, 2, 4],
        "dataset": "digits",
    },
    "paper": {  # DeiT-Ti (d 192, 12 layers, 3 heads, MLP 768) on CIFAR-100: a GPU and the network
        "d_model": 192,
        "n_heads": 3,
        "d_mlp": 768,
        "n_layers": 12,
        "seeds": 3,
        "image_steps": 50_000,
        "lm_steps": 20_000,
        "batch_size": 128,
        "lm_batch_size": 64,
        "lr": 1e-3,
        "eval_every": 1000,
        "patience": 10,
        "lm_ctx": 256,
        "lm_train_chars": 10_000_000,
        "lm_eval_chars": 262_144,
        "image_patch": 4,
        "share_groups": [1, 2, 3, 4, 6, 12],
        "dataset": "cifar100",
    },
}


# ----------------------------------------------------------------------------- blocks


@dataclass(frozen=True)
class ODEConfig:
    """Sizes and scheme of an ODE stack of transformer layers."""

    d_model: int = 64
    n_heads: int = 4
    d_mlp: int = 128
    n_layers: int = 4
    kind: str = "sequential"
    share: int = 1  # consecutive layers that use one field: 1 = none, n_layers = one shared field
    step: float = 1.0  # the step size h that multiplies every increment
    causal: bool = False

    def __post_init__(self) -> None:
        if self.kind not in BLOCK_KINDS:
            raise ValueError(f"kind must be one of {BLOCK_KINDS}, got {self.kind!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if self.share < 1 or self.n_layers % self.share:
            raise ValueError(
                f"share must divide n_layers={self.n_layers} (1 = no sharing, {self.n_layers} = one "
                f"field for all layers), got {self.share}"
            )
        if self.step <= 0:
            raise ValueError(f"step size must be positive, got {self.step}")

    @property
    def n_fields(self) -> int:
        """How many distinct sets of layer weights the stack holds."""
        return self.n_layers // self.share


class SelfAttention(nn.Module):
    """Multi-head self-attention written out (counted by FLOP counters, deterministic on CPU)."""

    def __init__(self, d_model: int, n_heads: int, causal: bool) -> None:
        super().__init__()
        self.n_heads, self.causal = n_heads, causal
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def mix(self, qkv: torch.Tensor) -> torch.Tensor:
        """Attention from already projected ``[batch, pos, 3*d]`` queries/keys/values to ``[batch, pos, d]``."""
        b, n, three_d = qkv.shape
        d = three_d // 3
        q, k, v = qkv.view(b, n, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // self.n_heads)
        if self.causal:
            future = torch.ones(n, n, dtype=torch.bool, device=qkv.device).triu(1)
            scores = scores.masked_fill(future, float("-inf"))
        return (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attention output ``[batch, pos, d]``."""
        return self.out(self.mix(self.qkv(x)))


class MLP(nn.Module):
    """Two-layer GELU MLP."""

    def __init__(self, d_model: int, d_mlp: int) -> None:
        super().__init__()
        self.up = nn.Linear(d_model, d_mlp)
        self.down = nn.Linear(d_mlp, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """MLP output ``[..., d]``."""
        return self.down(F.gelu(self.up(x)))


class SplitField(Protocol):
    """A vector field split in two parts, each a function of (state, time in layer units)."""

    def attn(self, x: torch.Tensor, t: float) -> torch.Tensor: ...
    def mlp(self, x: torch.Tensor, t: float) -> torch.Tensor: ...
    def both(self, x: torch.Tensor, t: float) -> torch.Tensor: ...


class TimeEmbedding(nn.Module):
    """A learned vector per layer boundary, linearly interpolated for fractional times."""

    def __init__(self, n_layers: int, d_model: int) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.zeros(n_layers + 1, d_model))

    def forward(self, t: float) -> torch.Tensor:
        """The embedding of time ``t`` (in layers, 0 <= t <= n_layers)."""
        lo = min(int(math.floor(t)), self.table.shape[0] - 2)
        frac = t - lo
        return (
            self.table[lo] if frac == 0 else (1 - frac) * self.table[lo] + frac * self.table[lo + 1]
        )


class TransformerField(nn.Module):
    """One layer's weights as a vector field: attention and MLP of a LayerNorm of the state."""

    def __init__(self, cfg: ODEConfig) -> None:
        super().__init__()
        n_norms = 1 if cfg.kind in SUMMED_FIELD_KINDS else 2
        self.norms = nn.ModuleList(nn.LayerNorm(cfg.d_model) for _ in range(n_norms))
        self.attention = SelfAttention(cfg.d_model, cfg.n_heads, cfg.causal)
        self.feedforward = MLP(cfg.d_model, cfg.d_mlp)

    def attn(self, x: torch.Tensor, t: float = 0.0) -> torch.Tensor:
        """Attention part A(x) (an autonomous field: ``t`` is unused)."""
        return self.attention(self.norms[0](x))

    def mlp(self, x: torch.Tensor, t: float = 0.0) -> torch.Tensor:
        """MLP part M(x)."""
        return self.feedforward(self.norms[-1](x))

    def both(self, x: torch.Tensor, t: float = 0.0) -> torch.Tensor:
        """The summed field A(x) + M(x), normalising the state once."""
        h = self.norms[0](x)
        return self.attention(h) + self.feedforward(h)


class TimeConditioned:
    """A shared field made time-dependent: each part reads ``x + e(t)`` instead of ``x``."""

    def __init__(self, field: TransformerField, time: TimeEmbedding) -> None:
        self.field, self.time = field, time

    def attn(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """A(x + e(t))."""
        return self.field.attn(x + self.time(t))

    def mlp(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """M(x + e(t))."""
        return self.field.mlp(x + self.time(t))

    def both(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """A(x + e(t)) + M(x + e(t))."""
        return self.field.both(x + self.time(t))


def ode_step(kind: str, field: SplitField, x: torch.Tensor, t: float, h: float) -> torch.Tensor:
    """One step of ``kind`` from state ``x`` at time ``t`` (stage times t + c, c in [0, 1])."""
    if kind == "sequential":
        y = x + h * field.attn(x, t)
        return y + h * field.mlp(y, t)
    if kind == "parallel":
        return x + h * field.both(x, t)
    if kind == "strang":
        y = x + (h / 2) * field.mlp(x, t)
        z = y + h * field.attn(y, t + 0.5)
        return z + (h / 2) * field.mlp(z, t + 0.5)
    if kind == "rk2":
        k1 = field.both(x, t)
        k2 = field.both(x + h * k1, t + 1)
        return x + (h / 2) * (k1 + k2)
    if kind == "rk4":
        k1 = field.both(x, t)
        k2 = field.both(x + (h / 2) * k1, t + 0.5)
        k3 = field.both(x + (h / 2) * k2, t + 0.5)
        k4 = field.both(x + h * k3, t + 1)
        return x + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
    raise ValueError(f"kind must be one of {BLOCK_KINDS}, got {kind!r}")


class ODEStack(nn.Module):
    """``n_layers`` steps of one scheme; layers ``[g*share, (g+1)*share)`` use field ``g``."""

    def __init__(self, cfg: ODEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.time = TimeEmbedding(cfg.n_layers, cfg.d_model) if cfg.share > 1 else None
        self.fields = nn.ModuleList(TransformerField(cfg) for _ in range(cfg.n_fields))

    def field(self, layer: int) -> SplitField:
        """The vector field that layer ``layer`` integrates (time-conditioned when shared)."""
        field = self.fields[layer // self.cfg.share]
        return field if self.time is None else TimeConditioned(field, self.time)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The state after all layers, ``[batch, pos, d]``."""
        for layer in range(self.cfg.n_layers):
            x = ode_step(self.cfg.kind, self.field(layer), x, float(layer), self.cfg.step)
        return x


def field_parameters(cfg: ODEConfig) -> int:
    """Parameters of one field (one layer's weights) of ``cfg``, counted from the formula."""
    d, m = cfg.d_model, cfg.d_mlp
    n_norms = 1 if cfg.kind in SUMMED_FIELD_KINDS else 2
    return (3 * d * d + 3 * d) + (d * d + d) + (d * m + m) + (m * d + d) + n_norms * 2 * d


def stack_parameters(cfg: ODEConfig) -> int:
    """Parameters of an ``ODEStack(cfg)``: the fields plus the time table when weights are shared."""
    time = (cfg.n_layers + 1) * cfg.d_model if cfg.share > 1 else 0
    return cfg.n_fields * field_parameters(cfg) + time


def n_parameters(module: nn.Module) -> int:
    """Trainable parameters of a module."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# ----------------------------------------------------------------- fused parallel block


class FusedParallelField(nn.Module):
    """The parallel layer with its two input projections (QKV and MLP-in) as one matmul, and
    its two output projections as another (the PaLM / GPT-J layout). Same function as the
    separate ``TransformerField`` it is built from."""

    def __init__(self, field: TransformerField) -> None:
        super().__init__()
        att, mlp = field.attention, field.feedforward
        self.attention, self.norm = att, field.norms[0]
        self.split = (att.qkv.out_features, mlp.up.out_features)
        self.inp = nn.Linear(att.qkv.in_features, sum(self.split))
        self.outp = nn.Linear(att.out.in_features + mlp.down.in_features, att.out.out_features)
        with torch.no_grad():
            self.inp.weight.copy_(torch.cat([att.qkv.weight, mlp.up.weight]))
            self.inp.bias.copy_(torch.cat([att.qkv.bias, mlp.up.bias]))
            self.outp.weight.copy_(torch.cat([att.out.weight, mlp.down.weight], dim=1))
            self.outp.bias.copy_(att.out.bias + mlp.down.bias)

    def both(self, x: torch.Tensor, t: float = 0.0) -> torch.Tensor:
        """A(x) + M(x) with two matmuls instead of four."""
        qkv, up = self.inp(self.norm(x)).split(self.split, dim=-1)
        return self.outp(torch.cat([self.attention.mix(qkv), F.gelu(up)], dim=-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One parallel layer, x + A(x) + M(x)."""
        return x + self.both(x)


# ------------------------------------------------------------ a linear field (for orders)


class LinearSplitField:
    """dx/dt = (A + B) x, split as attn(x) = A x and mlp(x) = B x (row vectors: x @ A.T)."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor) -> None:
        self.a, self.b = a, b

    def attn(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """A x."""
        return x @ self.a.T

    def mlp(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """B x."""
        return x @ self.b.T

    def both(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """(A + B) x."""
        return x @ (self.a + self.b).T


def random_linear_field(dim: int = 4, seed: int = 0) -> LinearSplitField:
    """A seeded pair of non-commuting matrices (float64, spectral norm about 1)."""
    g = torch.Generator().manual_seed(seed)
    a, b = (
        torch.randn(dim, dim, generator=g, dtype=torch.float64) / math.sqrt(dim) for _ in range(2)
    )
    return LinearSplitField(a, b)


def integration_errors(
    field: LinearSplitField,
    x0: torch.Tensor,
    total_time: float = 1.0,
    steps: Sequence[int] = (4, 8, 16, 32),
) -> pd.DataFrame:
    """Error at ``total_time`` of every scheme against expm((A+B) T) x0, for each number of steps."""
    exact = x0 @ torch.linalg.matrix_exp((field.a + field.b) * total_time).T
    rows = []
    for kind in BLOCK_KINDS:
        for n in steps:
            h, x = total_time / n, x0
            for i in range(n):
                x = ode_step(kind, field, x, float(i), h)
            rows.append({"kind": kind, "steps": n, "h": h, "error": float((x - exact).norm())})
    return pd.DataFrame(rows)


def observed_orders(errors: pd.DataFrame) -> pd.Series:
    """Each scheme's observed order: log2 of the error ratio when h halves (mean over halvings)."""

    def order(group: pd.DataFrame) -> float:
        e = group.sort_values("steps")["error"].to_numpy()
        return float(np.mean(np.log2(e[:-1] / e[1:])))

    return errors.groupby("kind", sort=False)[["steps", "error"]].apply(order)


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


# ------------------------------------------------------------------------------ tasks


@dataclass
class ImageTask:
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
class CharTask:
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


def digits_task(seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.2) -> ImageTask:
    """scikit-learn's bundled 8x8 ``digits`` (1,797 images, 10 classes) in seeded train/val/test
    splits, standardised (zero mean, unit variance over the training pixels)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1)
    labels = torch.tensor(digits.target, dtype=torch.long)
    val, test, tr = split_indices(len(labels), [val_fraction, test_fraction], seed)
    mean, std = images[tr].mean(), images[tr].std()  # standardised with training statistics
    parts = {"train": tr, "validation": val, "test": test}
    return ImageTask(
        {k: (images[v] - mean) / std for k, v in parts.items()},
        {k: labels[v] for k, v in parts.items()},
        10,
    )


def cifar100_task(seed: int = 0, val_fraction: float = 0.1) -> ImageTask:
    """CIFAR-100 through ``datasets`` (needs the network once; then cached), per-channel normalised."""
    from utils.data import DataUnavailableError

    try:
        from datasets import load_dataset

        data = load_dataset(CIFAR100_DATASET)
    except Exception as err:
        raise DataUnavailableError(
            f"cannot load CIFAR-100 ({CIFAR100_DATASET}) through `datasets`: {err}. It needs network "
            "access once (then it is cached); offline, use dataset='digits'."
        ) from err

    def tensors(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        rows = data[split].with_format("numpy")
        x = torch.tensor(np.stack(rows["img"]), dtype=torch.float32).permute(0, 3, 1, 2) / 255.0
        return x, torch.tensor(rows["fine_label"], dtype=torch.long)

    train_x, train_y = tensors("train")
    test_x, test_y = tensors("test")
    mean, std = train_x.mean((0, 2, 3), keepdim=True), train_x.std((0, 2, 3), keepdim=True)
    val, tr = split_indices(len(train_y), [val_fraction], seed)
    images = {"train": train_x[tr], "validation": train_x[val], "test": test_x}
    labels = {"train": train_y[tr], "validation": train_y[val], "test": test_y}
    return ImageTask({k: (v - mean) / std for k, v in images.items()}, labels, 100)


def image_task(dataset: str, seed: int = 0) -> ImageTask:
    """The image task by name: ``digits`` (offline) or ``cifar100`` (online, paper scale)."""
    loaders: dict[str, Callable[[int], ImageTask]] = {
        "digits": digits_task,
        "cifar100": cifar100_task,
    }
    if dataset not in loaders:
        raise ValueError(f"dataset must be one of {list(loaders)}, got {dataset!r}")
    return loaders[dataset](seed)


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


def char_task(train_text: str, heldout_text: str, ctx: int) -> CharTask:
    """Character task: vocabulary from the training text; the held-out text split in halves,
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
    return CharTask(ids, vocab, ctx)


def lm_task(source: str, train_chars: int, eval_chars: int, ctx: int, seed: int = 0) -> CharTask:
    """The LM task from ``source``: ``corpus`` (shipped train/validation) or ``synthetic``."""
    if source == "corpus":
        return char_task(
            corpus_text("train", train_chars), corpus_text("validation", eval_chars), ctx
        )
    if source == "synthetic":
        return char_task(
            synthetic_text(train_chars, seed), synthetic_text(eval_chars, seed + 1), ctx
        )
    raise ValueError(f"lm_source must be 'corpus' or 'synthetic', got {source!r}")


# ------------------------------------------------------------------------ experiments


class Task(TrainableTask, Protocol):
    """What the runner needs from a task (ImageTask or CharTask)."""

    metric_name: str
    higher_is_better: bool

    def build(self, cfg: ODEConfig, patch: int) -> nn.Module: ...


@dataclass(frozen=True)
class Variant:
    """One architecture to train: a scheme and a sharing group size."""

    kind: str
    share: int = 1


class Runner:
    """Trains (task, variant, seed) combinations once each, caching results across experiments."""

    def __init__(
        self,
        model_cfg: ODEConfig,
        train_cfgs: dict[str, TrainConfig],
        patch: int,
        device: str = "cpu",
    ) -> None:
        self.model_cfg, self.train_cfgs, self.patch, self.device = (
            model_cfg,
            train_cfgs,
            patch,
            device,
        )
        self.results: dict[tuple[str, Variant, int], TrainResult] = {}

    def run(
        self, task: Task, variants: Sequence[Variant], seeds: Sequence[int], desc: str
    ) -> pd.DataFrame:
        """Train what is not cached yet (with a progress bar) and return one row per run."""
        todo = [(v, s) for v in variants for s in seeds if (task.name, v, s) not in self.results]
        for variant, seed in tqdm(todo, desc=f"{desc} ({task.name})", unit="run"):
            cfg = replace(self.model_cfg, kind=variant.kind, share=variant.share)
            build = lambda cfg=cfg: task.build(cfg, self.patch)
            self.results[(task.name, variant, seed)] = train(
                build, task, self.train_cfgs[task.name], seed, self.device
            )
        return pd.DataFrame([self.row(task, v, s) for v in variants for s in seeds])

    def row(self, task: Task, variant: Variant, seed: int) -> dict:
        """One run as a flat record."""
        r = self.results[(task.name, variant, seed)]
        attn_calls, mlp_calls = SUBLAYER_CALLS[variant.kind]
        return {
            "task": task.name,
            "kind": variant.kind,
            "share": variant.share,
            "seed": seed,
            "metric": r.metric,
            "val_loss": r.val_loss,
            "params": r.params,
            "steps": r.steps,
            "best_step": r.best_step,
            "wall_s": r.wall_s,
            "train_gflops_per_step": r.flops_per_step / 1e9,
            "sublayer_calls_per_layer": attn_calls + mlp_calls,
        }


def summarize(runs: pd.DataFrame, by: Sequence[str] = ("task", "kind", "share")) -> pd.DataFrame:
    """Mean and std over seeds of the metric, plus parameters, steps, wall time and FLOPs."""
    grouped = runs.groupby(list(by), sort=False)
    table = grouped.agg(
        metric_mean=("metric", "mean"),
        metric_std=("metric", "std"),
        seeds=("seed", "count"),
        params=("params", "first"),
        steps=("steps", "mean"),
        wall_s=("wall_s", "mean"),
        train_gflops_per_step=("train_gflops_per_step", "first"),
        sublayer_calls_per_layer=("sublayer_calls_per_layer", "first"),
    )
    return table.reset_index()


def compare(runs: pd.DataFrame, task: str, a: str, b: str, higher_is_better: bool) -> dict:
    """Is kind ``b`` better than kind ``a`` on ``task`` beyond seed noise? Welch's t-test over the
    seeds in ``runs`` (pass the runs of one experiment, so each kind has one configuration)."""
    from scipy.stats import ttest_ind

    x = runs[(runs.task == task) & (runs.kind == a)]["metric"].to_numpy()
    y = runs[(runs.task == task) & (runs.kind == b)]["metric"].to_numpy()
    if len(x) < 2 or len(y) < 2:
        raise ValueError(
            f"need at least 2 seeds of {a!r} and {b!r} on {task!r}, got {len(x)} and {len(y)}"
        )
    gain = (y.mean() - x.mean()) * (1 if higher_is_better else -1)
    with np.errstate(all="ignore"):
        test = ttest_ind(y, x, equal_var=False)
    p = float(test.pvalue) if np.isfinite(test.pvalue) else 1.0
    return {
        "task": task,
        "a": a,
        "b": b,
        "mean_a": float(x.mean()),
        "mean_b": float(y.mean()),
        "gain_b_over_a": float(gain),
        "seed_std": float(np.sqrt((x.var(ddof=1) + y.var(ddof=1)) / 2)),
        "p_value": p,
        "beyond_noise": bool(p < 0.05),
    }


def train_configs(sizes: dict) -> dict[str, TrainConfig]:
    """One training configuration per task from a notebook's size parameters (10% warmup)."""
    common = dict(lr=sizes["lr"], eval_every=sizes["eval_every"], patience=sizes["patience"])
    return {
        "image": TrainConfig(
            steps=sizes["image_steps"],
            batch_size=sizes["batch_size"],
            warmup_steps=max(1, sizes["image_steps"] // 10),
            **common,
        ),
        "lm": TrainConfig(
            steps=sizes["lm_steps"],
            batch_size=sizes["lm_batch_size"],
            warmup_steps=max(1, sizes["lm_steps"] // 10),
            **common,
        ),
    }


def verdict(comparison: dict) -> str:
    """The rule of the closing table: 'holds' if b beats a beyond seed noise (Welch p < 0.05),
    'fails' if b is worse beyond noise, otherwise 'within noise' (with the sign of the gain)."""
    if comparison["beyond_noise"]:
        return "holds" if comparison["gain_b_over_a"] > 0 else "fails"
    sign = "ahead" if comparison["gain_b_over_a"] > 0 else "behind"
    return f"within noise ({comparison['b']} {sign})"


def model_config(sizes: dict) -> ODEConfig:
    """The ODE stack configuration from a notebook's size parameters."""
    return ODEConfig(**{k: sizes[k] for k in ("d_model", "n_heads", "d_mlp", "n_layers")})


def config_dict(cfg: ODEConfig) -> dict:
    """A configuration as a plain dict (for metrics.json)."""
    return asdict(cfg)
