"""Address a transformer's 2L sublayers and run a block with some of them skipped (never computed).

Sublayer ``2 * layer`` is layer ``layer``'s attention, ``2 * layer + 1`` its MLP, as in SPRINT.
A skipped sublayer is removed together with its norms (the pre-norm, and the post-norm of models
that have one, such as Gemma): the residual stream passes through unchanged and none of the
sublayer's arithmetic runs, so measured speed-ups are real.

Public names: ``Sublayer`` (with ``index`` and ``out_hook``), ``sublayer`` (from a flat index),
``all_sublayers``, ``KINDS``, ``Kind``, ``SkippableBlock``, ``supports_skipping``, ``set_skipped``,
``skipped_now``, ``skipping`` (a context manager; ``utils.hooks.skip`` is the same), ``attn_write``
and ``mlp_write`` (one sublayer's write, as the block computes it), ``norms_after_mlp``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from transformer_lens import HookedTransformer
from transformer_lens.components import TransformerBlock
from transformer_lens.utilities.architectures import POST_NORM_ARCHITECTURES

__all__ = [
    "KINDS",
    "Kind",
    "SkippableBlock",
    "Sublayer",
    "all_sublayers",
    "attn_write",
    "mlp_write",
    "norms_after_mlp",
    "set_skipped",
    "skipped_now",
    "skipping",
    "sublayer",
    "supports_skipping",
]

Kind = Literal["attn", "mlp"]
KINDS: tuple[Kind, Kind] = ("attn", "mlp")


@dataclass(frozen=True, order=True)
class Sublayer:
    """One sublayer: ``layer``'s attention or MLP."""

    layer: int
    kind: Kind

    @property
    def index(self) -> int:
        """SPRINT's flat index: 2 * layer for attention, 2 * layer + 1 for the MLP."""
        return 2 * self.layer + KINDS.index(self.kind)

    @property
    def out_hook(self) -> str:
        """Name of the hook that sees this sublayer's write to the residual stream."""
        return f"blocks.{self.layer}.hook_{self.kind}_out"

    def __str__(self) -> str:
        return f"L{self.layer}.{self.kind}"


def sublayer(index: int) -> Sublayer:
    """The sublayer with SPRINT's flat index ``index``."""
    if index < 0:
        raise ValueError(f"sublayer index must be >= 0, got {index}")
    return Sublayer(index // 2, KINDS[index % 2])


def all_sublayers(model: HookedTransformer) -> list[Sublayer]:
    """Every sublayer of ``model`` in forward order."""
    return [sublayer(i) for i in range(2 * model.cfg.n_layers)]


def attn_write(
    block: TransformerBlock,
    resid: torch.Tensor,
    past_kv_cache_entry=None,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """What ``block``'s attention adds to the residual stream ``resid``, as TransformerBlock computes it.

    Its pre-norm, the attention, then its post-norm where the model has one (Gemma's ``ln1_post``;
    OLMo 2/3's ``ln1``, which comes after the sublayer instead of before), through ``hook_attn_out``.
    """
    post_norm = block.cfg.original_architecture in POST_NORM_ARCHITECTURES
    attn_in = resid if post_norm else block.ln1(resid)
    attn_out = block.attn(
        query_input=attn_in,
        key_input=attn_in,
        value_input=attn_in,
        past_kv_cache_entry=past_kv_cache_entry,
        attention_mask=attention_mask,
    )
    if block.cfg.use_normalization_before_and_after:
        attn_out = block.ln1_post(attn_out)
    if post_norm:
        attn_out = block.ln1(attn_out)
    return block.hook_attn_out(attn_out)


def mlp_write(block: TransformerBlock, mlp_in: torch.Tensor) -> torch.Tensor:
    """What ``block``'s MLP adds to the residual stream ``mlp_in``, as TransformerBlock computes it
    (the pre-norm; ``apply_mlp`` applies the post-norm, ``ln2_post`` or OLMo's ``ln2``, and ``hook_mlp_out``)."""
    post_norm = block.cfg.original_architecture in POST_NORM_ARCHITECTURES
    return block.apply_mlp(mlp_in if post_norm else block.ln2(mlp_in))


def norms_after_mlp(block: TransformerBlock) -> list[torch.nn.Module]:
    """The norms ``block`` applies to its MLP's output before adding it to the residual stream, in
    order (as ``apply_mlp`` does): Gemma's ``ln2_post``, OLMo 2/3's ``ln2``; none for Llama or GPT-2."""
    post_norm = block.cfg.original_architecture in POST_NORM_ARCHITECTURES
    return ([block.ln2_post] if block.cfg.use_normalization_before_and_after else []) + (
        [block.ln2] if post_norm else []
    )


class SkippableBlock(TransformerBlock):
    """A TransformerBlock whose attention or MLP sublayer can be skipped without computing it.

    A sublayer that runs is computed as TransformerBlock computes it, norms after it included
    (``attn_write``, ``mlp_write``); a skipped sublayer's norms do not run.
    """

    skip_attn: bool = False
    skip_mlp: bool = False

    def forward(
        self,
        resid_pre: torch.Tensor,
        shortformer_pos_embed: torch.Tensor | None = None,
        past_kv_cache_entry=None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if not (self.skip_attn or self.skip_mlp):
            return super().forward(
                resid_pre, shortformer_pos_embed, past_kv_cache_entry, attention_mask
            )
        resid_pre = self.hook_resid_pre(resid_pre)
        resid = resid_pre
        if not self.skip_attn:
            resid = resid + attn_write(self, resid_pre, past_kv_cache_entry, attention_mask)
        if self.cfg.parallel_attn_mlp:
            mlp_in = resid_pre
        else:
            resid = mlp_in = self.hook_resid_mid(resid)
        if not self.skip_mlp:
            if self.cfg.use_hook_mlp_in:
                mlp_in = self.hook_mlp_in(mlp_in.clone())
            resid = resid + mlp_write(self, mlp_in)
        return self.hook_resid_post(resid)


def supports_skipping(model: HookedTransformer) -> bool:
    """Whether ``model``'s blocks can skip sublayers (see utils.model_layouts.install_fast_blocks)."""
    return all(isinstance(block, SkippableBlock) for block in model.blocks)


def set_skipped(model: HookedTransformer, sublayers: Iterable[Sublayer | int]) -> None:
    """Skip exactly ``sublayers`` (Sublayer objects or flat indices) from now on; others run."""
    if not supports_skipping(model):
        raise ValueError(
            "this model's blocks cannot skip sublayers; load it with utils.models.load_model "
            "(or call utils.model_layouts.install_fast_blocks on it) first"
        )
    chosen = {s if isinstance(s, Sublayer) else sublayer(s) for s in sublayers}
    for s in chosen:
        if not 0 <= s.layer < model.cfg.n_layers:
            raise ValueError(f"{s} is out of range: the model has {model.cfg.n_layers} layers")
    for layer, block in enumerate(model.blocks):
        block.skip_attn = Sublayer(layer, "attn") in chosen
        block.skip_mlp = Sublayer(layer, "mlp") in chosen


def skipped_now(model: HookedTransformer) -> list[Sublayer]:
    """The sublayers ``model`` currently skips, in forward order."""
    return [
        Sublayer(layer, kind)
        for layer, block in enumerate(model.blocks)
        for kind in KINDS
        if getattr(block, f"skip_{kind}", False)
    ]


@contextmanager
def skipping(model: HookedTransformer, sublayers: Iterable[Sublayer | int]) -> Iterator[None]:
    """Context manager: skip ``sublayers`` (on top of any already skipped) inside the block."""
    before = skipped_now(model)
    set_skipped(model, [*before, *sublayers])
    try:
        yield
    finally:
        set_skipped(model, before)
