"""Hook factories shared by the notebooks: capture, ablate, skip, block attention edges, splice.

Every factory returns ``fwd_hooks``: a list of ``(hook_name, fn)`` pairs for
``model.run_with_hooks(tokens, fwd_hooks=...)`` or the context manager ``model.hooks(fwd_hooks)``.
Lists compose by concatenation. ``skip`` is the exception: skipping must not compute the sublayer
at all, so it is a context manager that flips the blocks' skip flags (see ``utils.sublayers``).

    store = {}
    logits = model.run_with_hooks(tokens, fwd_hooks=capture(["blocks.3.hook_mlp_out"], store))
    with model.hooks(zero_ablate([Sublayer(3, "mlp")])):
        ablated = model(tokens)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from transformer_lens import HookedTransformer

from utils.sublayers import Sublayer, skipping

Hook = tuple[str, Callable]
FwdHooks = list[Hook]

__all__ = [
    "FwdHooks",
    "block_attention",
    "capture",
    "edge_mask",
    "mean_ablate",
    "sublayer_input_hook",
    "sublayer_means",
    "skip",
    "splice",
    "zero_ablate",
]

skip = skipping  # `with skip(model, [Sublayer(3, "mlp")]): ...` — the sublayer is never computed


def capture(names: Iterable[str], store: dict[str, torch.Tensor]) -> FwdHooks:
    """Hooks that save each named activation (detached) into ``store[name]``."""

    def save(act: torch.Tensor, hook) -> None:
        store[hook.name] = act.detach()

    return [(name, save) for name in names]


def zero_ablate(sublayers: Iterable[Sublayer]) -> FwdHooks:
    """Hooks that replace each sublayer's residual-stream write by zeros (it is still computed)."""
    return [(s.out_hook, lambda act, hook: torch.zeros_like(act)) for s in sublayers]


def mean_ablate(sublayers: Iterable[Sublayer], means: dict[str, torch.Tensor]) -> FwdHooks:
    """Hooks that replace each sublayer's write by its mean ``means[s.out_hook]`` ([d_model])."""
    hooks = []
    for s in sublayers:
        if s.out_hook not in means:
            raise KeyError(f"no mean for {s}; compute it with sublayer_means(model, tokens, ...)")
        mean = means[s.out_hook]
        hooks.append((s.out_hook, lambda act, hook, mean=mean: mean.to(act).expand_as(act)))
    return hooks


@torch.no_grad()
def sublayer_means(
    model: HookedTransformer, tokens: torch.Tensor, sublayers: Iterable[Sublayer]
) -> dict[str, torch.Tensor]:
    """Mean (over batch and positions) of each sublayer's write on ``tokens``, keyed by hook name."""
    store: dict[str, torch.Tensor] = {}
    model.run_with_hooks(tokens, fwd_hooks=capture([s.out_hook for s in sublayers], store))
    return {name: act.mean(dim=(0, 1)) for name, act in store.items()}


def edge_mask(n_pos: int, edges: Iterable[tuple[int, int]]) -> torch.Tensor:
    """A [n_pos, n_pos] bool mask, True at each (destination, source) position pair in ``edges``."""
    mask = torch.zeros(n_pos, n_pos, dtype=torch.bool)
    for dst, src in edges:
        if not (0 <= src <= dst < n_pos):
            raise ValueError(f"edge {dst}<-{src} is not a causal edge within {n_pos} positions")
        mask[dst, src] = True
    return mask


def block_attention(
    layers: Iterable[int], mask: torch.Tensor, heads: Sequence[int] | None = None
) -> FwdHooks:
    """Hooks that stop attention along the True edges of ``mask`` in ``layers`` (pre-softmax -inf).

    ``mask`` is bool, [dst, src] for every prompt or [batch, dst, src] for one mask per prompt,
    which lets one batched forward pass run many different knockouts. ``heads`` limits it to
    those heads (default: all). Blocking every source of a destination would leave nothing to
    attend to, so it raises instead of returning NaN.
    """
    if mask.dtype != torch.bool or mask.dim() not in (2, 3):
        raise ValueError("mask must be a bool tensor shaped [dst, src] or [batch, dst, src]")

    def knock_out(scores: torch.Tensor, hook) -> torch.Tensor:
        # scores: [batch, head, dst, src]
        edges = mask.to(scores.device)
        if edges.shape[-2:] != scores.shape[-2:]:
            raise ValueError(f"mask covers {tuple(edges.shape[-2:])} positions, the input {tuple(scores.shape[-2:])}")
        edges = edges.unsqueeze(-3)  # broadcast over heads
        if heads is not None:
            chosen = torch.zeros(scores.shape[1], 1, 1, dtype=torch.bool, device=scores.device)
            chosen[list(heads)] = True
            edges = edges & chosen
        scores = scores.masked_fill(edges, float("-inf"))
        if torch.isinf(scores).all(dim=-1).any():
            raise ValueError("a destination position has every source blocked; keep at least one")
        return scores

    return [(f"blocks.{layer}.attn.hook_attn_scores", knock_out) for layer in layers]


def sublayer_input_hook(s: Sublayer) -> str:
    """Name of the hook holding the normalised input that sublayer ``s`` reads."""
    return f"blocks.{s.layer}.ln{1 if s.kind == 'attn' else 2}.hook_normalized"


def splice(s: Sublayer, fn: Callable[[torch.Tensor], torch.Tensor]) -> FwdHooks:
    """Hooks that replace sublayer ``s``'s write by ``fn(its normalised input)``.

    This is how a transcoder replaces an MLP: ``splice(Sublayer(5, "mlp"), transcoder)``.
    """
    seen: dict[str, torch.Tensor] = {}

    def remember(act: torch.Tensor, hook) -> None:
        seen["input"] = act

    def replace(act: torch.Tensor, hook) -> torch.Tensor:
        return fn(seen.pop("input")).to(act.dtype)

    return [(sublayer_input_hook(s), remember), (s.out_hook, replace)]
