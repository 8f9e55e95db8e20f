"""How a loaded model is prepared: weights stored in the layout TransformerLens reads, skippable blocks.

TransformerLens 3.9 rearranges several weights on every forward call and copies the result into a
contiguous tensor; storing each weight in the layout it is read in makes those copies free (a
loading-time speed fix, results unchanged). ``install_fast_blocks`` also swaps every block for
``utils.sublayers.SkippableBlock`` so sublayers can be skipped without being computed.

Public names: ``install_fast_blocks``, ``store_weights_as_read``, ``READ_LAYOUTS``.
"""

from __future__ import annotations

import torch
from torch import nn
from transformer_lens import HookedTransformer
from transformer_lens.components import AbstractAttention, Unembed
from transformer_lens.components.mlps.gated_mlp import GatedMLP

from utils.sublayers import SkippableBlock

__all__ = ["READ_LAYOUTS", "install_fast_blocks", "store_weights_as_read"]

# For each module type, the weights whose TransformerLens 3.9 forward rearranges them and copies the
# result to a contiguous tensor on every call, with the permutation it applies: Q/K/V [head, d_model,
# d_head] are read as [(head d_head), d_model], O [head, d_head, d_model] as [d_model, (head d_head)],
# and the MLP and unembedding matrices as their transposes (``F.linear(x, W.T.contiguous())``).
READ_LAYOUTS: dict[type, dict[str, tuple[int, ...]]] = {
    AbstractAttention: {name: (0, 2, 1) for name in ("W_Q", "W_K", "W_V", "_W_K", "_W_V")}
    | {"W_O": (2, 0, 1)},
    GatedMLP: {name: (1, 0) for name in ("W_gate", "W_in", "W_out")},
    Unembed: {"W_U": (1, 0)},
}


def store_weights_as_read(model: nn.Module) -> None:
    """Lay out each weight in memory the way TransformerLens's forward reads it (see READ_LAYOUTS).

    The rearrangement then yields an already-contiguous tensor, so the per-call copy (which dominates
    short prompts on a CPU) disappears. Shapes, values, hooks, in-place edits and results are unchanged.
    """
    with torch.no_grad():
        for module in model.modules():
            for kind, layouts in READ_LAYOUTS.items():
                if not isinstance(module, kind):
                    continue
                for name, order in layouts.items():
                    param = module._parameters.get(name)
                    if param is not None and param.dim() == len(order):
                        back = tuple(sorted(range(len(order)), key=order.__getitem__))
                        param.data = param.data.permute(order).contiguous().permute(back)


def install_fast_blocks(model: HookedTransformer) -> HookedTransformer:
    """Swap in SkippableBlock and store the weights as they are read, in place (same hooks, same results)."""
    # Per-head attention inputs and attention-only blocks stay as TransformerLens builds them (such a
    # model cannot skip sublayers); norms after a sublayer (Gemma, OLMo 2/3) are supported.
    cfg = model.cfg
    if not (cfg.use_attn_in or cfg.use_split_qkv_input or cfg.attn_only):
        for block in model.blocks:
            block.__class__ = SkippableBlock
    store_weights_as_read(model)
    return model
