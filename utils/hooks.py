"""Every intervention on a model, in one vocabulary: name, capture, ablate, replace, skip, block.

Hook names are built here (``name``, ``resid_pre``, ``attn_scores`` ...; a sublayer's write is
``Sublayer.out_hook``) and nowhere else. Every factory returns ``fwd_hooks``: a list of
``(hook_name, fn)`` pairs. Lists compose by concatenation, and are applied by the context manager
``attached(model, fwd_hooks)`` (or the one-call ``run``), which adds exactly those hooks and, on
exit, removes exactly those hooks: hooks that somebody else added stay, so interventions nest.
``skip`` is the exception: skipping must not compute the sublayer at all, so it is a context
manager that flips the blocks' skip flags (see ``utils.sublayers``).

    store = {}
    logits = run(model, tokens, capture([Sublayer(3, "mlp").out_hook], store))
    with attached(model, zero_ablate([Sublayer(3, "mlp")])):
        ablated = model(tokens)
    with attached(model, replace_writes({Sublayer(5, "mlp"): lambda x, real: transcoder(x)})):
        spliced = model(tokens)

Public names: ``attached``, ``run``, ``capture``, ``zero_ablate``, ``mean_ablate``,
``sublayer_means``, ``replace_writes``, ``splice``, ``block_attention``, ``edge_mask``, ``skip``,
and the name builders ``embed``, ``name``, ``resid_pre``, ``resid_mid``, ``resid_post``, ``attn_scores``,
``attn_point``, ``mlp_post``, ``norm_scale``, ``sublayer_input_hook`` (``layer_of`` reads the
block back out of a name).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from transformer_lens import HookedTransformer

from utils.sublayers import Sublayer, skipping

Hook = tuple[str, Callable]
FwdHooks = list[Hook]
# fn(normalised input the sublayer reads, its real write) -> the write that replaces it
Replacement = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

__all__ = [
    "FwdHooks",
    "Replacement",
    "attached",
    "attn_point",
    "attn_scores",
    "block_attention",
    "capture",
    "edge_mask",
    "embed",
    "layer_of",
    "mean_ablate",
    "mlp_post",
    "name",
    "norm_scale",
    "replace_writes",
    "resid_mid",
    "resid_post",
    "resid_pre",
    "run",
    "sublayer_input_hook",
    "sublayer_means",
    "skip",
    "splice",
    "zero_ablate",
]

skip = skipping  # `with skip(model, [Sublayer(3, "mlp")]): ...` — the sublayer is never computed


# --------------------------------------------------------------------------------- hook names
EMBED = "hook_embed"  # the token embeddings, before block 0


def embed() -> str:
    """The token embeddings entering block 0, [batch, pos, d_model]."""
    return EMBED


def layer_of(hook_name: str) -> int | None:
    """The block a hook name belongs to (``blocks.3.hook_mlp_out`` -> 3); None outside the blocks."""
    parts = hook_name.split(".")
    return int(parts[1]) if len(parts) > 2 and parts[0] == "blocks" else None


def name(layer: int, point: str) -> str:
    """The hook ``point`` of block ``layer``: ``name(3, "mlp.hook_post")`` -> ``blocks.3.mlp.hook_post``."""
    return f"blocks.{layer}.{point}"


def resid_pre(layer: int) -> str:
    """The residual stream entering block ``layer``."""
    return name(layer, "hook_resid_pre")


def resid_mid(layer: int) -> str:
    """The residual stream between block ``layer``'s attention and its MLP."""
    return name(layer, "hook_resid_mid")


def resid_post(layer: int) -> str:
    """The residual stream leaving block ``layer``."""
    return name(layer, "hook_resid_post")


def attn_scores(layer: int) -> str:
    """Block ``layer``'s pre-softmax attention scores, [batch, head, dst, src]."""
    return name(layer, "attn.hook_attn_scores")


def attn_point(layer: int, point: str) -> str:
    """An attention hook of block ``layer``: ``attn_point(2, "v")`` -> ``blocks.2.attn.hook_v``."""
    return name(layer, f"attn.hook_{point}")


def mlp_post(layer: int) -> str:
    """Block ``layer``'s MLP neurons after the activation, [batch, pos, d_mlp]."""
    return name(layer, "mlp.hook_post")


def norm_scale(layer: int | None, kind: str = "attn", after: bool = False) -> str:
    """The scale of the norm in front of ``layer``'s ``kind`` sublayer (``after``: the norm on its
    output, in models with norms before and after each sublayer, like Gemma); ``layer=None``: the final norm."""
    if layer is None:
        return "ln_final.hook_scale"
    return name(layer, f"ln{1 if kind == 'attn' else 2}{'_post' if after else ''}.hook_scale")


# --------------------------------------------------------------------------------- applying hooks
@contextmanager
def attached(model: HookedTransformer, fwd_hooks: Iterable[Hook]) -> Iterator[HookedTransformer]:
    """Add ``fwd_hooks`` to ``model`` for the ``with`` block; on exit remove exactly those hooks.

    Unlike ``model.hooks()``, which resets every temporary hook of the model, hooks added by an
    outer block stay in place, so interventions nest. Looking up each point by name also avoids
    walking every module of the model, which matters for a hook on one point in a hot loop.
    """
    points = model.mod_dict
    added: list[tuple[Any, Any]] = []
    try:
        for hook_name, fn in fwd_hooks:
            if hook_name not in points:
                raise KeyError(f"the model has no hook point {hook_name!r}")
            point = points[hook_name]
            point.add_hook(fn, dir="fwd")
            added.append((point, point.fwd_hooks[-1]))
        yield model
    finally:
        for point, handle in reversed(added):
            handle.hook.remove()
            point.fwd_hooks.remove(handle)


def run(model: HookedTransformer, inputs: Any, fwd_hooks: Iterable[Hook], **kwargs: Any) -> Any:
    """``model(inputs, **kwargs)`` with ``fwd_hooks`` attached for that one call."""
    with attached(model, fwd_hooks):
        return model(inputs, **kwargs)


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

    return [(attn_scores(layer), knock_out) for layer in layers]


def sublayer_input_hook(s: Sublayer) -> str:
    """Name of the hook holding the normalised input that sublayer ``s`` reads."""
    return name(s.layer, f"ln{1 if s.kind == 'attn' else 2}.hook_normalized")


def replace_writes(
    replacements: Mapping[Sublayer, Replacement], keep_real: torch.Tensor | None = None
) -> FwdHooks:
    """Hooks that replace each sublayer ``s``'s write by ``fn(its normalised input, its real write)``.

    ``keep_real`` ([batch, pos] bool) marks positions where the real write stays (attention sinks,
    say). A transcoder replaces MLP 5 with ``{Sublayer(5, "mlp"): lambda x, real: tc(x)}``; an SAE
    with ``lambda x, real: sae(real)``.
    """
    hooks: FwdHooks = []
    for s, fn in replacements.items():
        seen: dict[str, torch.Tensor] = {}

        def remember(act: torch.Tensor, hook, seen=seen) -> None:
            seen["input"] = act

        def replace(act: torch.Tensor, hook, seen=seen, fn=fn) -> torch.Tensor:
            new = fn(seen.pop("input"), act).to(act.dtype)
            if keep_real is None:
                return new
            return torch.where(keep_real[..., None].to(act.device), act, new)

        hooks += [(sublayer_input_hook(s), remember), (s.out_hook, replace)]
    return hooks


def splice(s: Sublayer, fn: Callable[[torch.Tensor], torch.Tensor]) -> FwdHooks:
    """Hooks that replace sublayer ``s``'s write by ``fn(its normalised input)``.

    This is how a transcoder replaces an MLP: ``splice(Sublayer(5, "mlp"), transcoder)``.
    """
    return replace_writes({s: lambda x, real: fn(x)})
