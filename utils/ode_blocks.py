"""Notebook 05's method: transformer layers read as steps of an ODE solver (Zhong et al. 2022).

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
field can vary along the depth. (That time embedding is our addition, not the paper's.)

This module is what a reader compares with the paper, in its order:

* one layer's field: ``TransformerField`` (``attn`` = A, ``mlp`` = M, ``both`` = A + M, from
  ``SelfAttention`` and ``MLP``); ``FusedParallelField``: the parallel layer with fused projections;
* one layer as one step of a scheme: ``ode_step(kind, field, x, t, h)`` on any ``SplitField``
  (``Step``: its signature with ``kind`` bound); ``BLOCK_KINDS``, ``SUMMED_FIELD_KINDS``,
  ``SCHEME_ORDER``, and ``SUBLAYER_CALLS`` (a step's cost in sublayer evaluations);
* the stack and weight sharing: ``ODEConfig`` (sizes, ``kind``, ``share``, ``step``), ``ODEStack``,
  ``TimeEmbedding`` / ``TimeConditioned``; ``field_parameters``, ``stack_parameters``, ``n_parameters``;
* the schemes' orders on an exactly solvable linear field (``LinearSplitField``):
  ``random_linear_field``, ``integrate``, ``step_errors``, ``order_of``, ``integration_errors``,
  ``observed_orders``.

The networks trained around a stack are ``utils.ode_models``; notebook 05's harness is
``utils.ode_benchmarks`` (data), ``utils.ode_experiments`` (runner) and ``utils.ode_comparisons``.

Public names: the names above (``__all__``); a researcher starts from ``ODEConfig``, ``ODEStack``,
``ode_step``, ``BLOCK_KINDS``, ``integration_errors`` and ``observed_orders``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "BLOCK_KINDS",
    "MLP",
    "SCHEME_ORDER",
    "SUBLAYER_CALLS",
    "SUMMED_FIELD_KINDS",
    "FusedParallelField",
    "LinearSplitField",
    "ODEConfig",
    "ODEStack",
    "SelfAttention",
    "SplitField",
    "Step",
    "TimeConditioned",
    "TimeEmbedding",
    "TransformerField",
    "field_parameters",
    "integrate",
    "integration_errors",
    "n_parameters",
    "observed_orders",
    "ode_step",
    "order_of",
    "random_linear_field",
    "stack_parameters",
    "step_errors",
]

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


Step = Callable[[SplitField, torch.Tensor, float, float], torch.Tensor]


def integrate(
    step: Step, field: SplitField, x0: torch.Tensor, total_time: float, n: int
) -> torch.Tensor:
    """The state after ``n`` steps of size ``total_time / n`` of ``step(field, x, t, h)`` from ``x0``."""
    h, x = total_time / n, x0
    for i in range(n):
        x = step(field, x, float(i), h)
    return x


def step_errors(
    step: Step,
    field: LinearSplitField,
    x0: torch.Tensor,
    total_time: float = 1.0,
    steps: Sequence[int] = (4, 8, 16, 32),
) -> list[float]:
    """L2 error at ``total_time`` against expm((A+B) T) x0 of ``step``, for each number of steps."""
    exact = x0 @ torch.linalg.matrix_exp((field.a + field.b) * total_time).T
    return [float((integrate(step, field, x0, total_time, n) - exact).norm()) for n in steps]


def order_of(errors: Sequence[float]) -> float:
    """Observed order from errors at steps that double: mean log2 of successive error ratios."""
    e = np.asarray(errors, dtype=float)
    return float(np.mean(np.log2(e[:-1] / e[1:])))


def integration_errors(
    field: LinearSplitField,
    x0: torch.Tensor,
    total_time: float = 1.0,
    steps: Sequence[int] = (4, 8, 16, 32),
    schemes: Mapping[str, Step] | None = None,
) -> pd.DataFrame:
    """Error at ``total_time`` of every scheme against expm((A+B) T) x0, for each number of steps.

    ``schemes`` maps kinds to step functions used instead of ``ode_step`` (e.g. a learner's own)."""
    rows = []
    for kind in BLOCK_KINDS:
        step = (schemes or {}).get(kind, partial(ode_step, kind))
        errors = step_errors(step, field, x0, total_time, steps)
        rows += [
            {"kind": kind, "steps": n, "h": total_time / n, "error": e}
            for n, e in zip(steps, errors, strict=True)
        ]
    return pd.DataFrame(rows)


def observed_orders(errors: pd.DataFrame) -> pd.Series:
    """Each scheme's observed order: log2 of the error ratio when h halves (mean over halvings)."""
    return errors.groupby("kind", sort=False)[["steps", "error"]].apply(
        lambda group: order_of(group.sort_values("steps")["error"])
    )
