"""Notebook 05's networks: the models Zhong et al. (2022) train, with an ``ODEStack`` as their layers.

The paper swaps the layers of a vision transformer (DeiT-Ti on CIFAR-100) and of language models
for other integration schemes and for shared weights, and compares the trained networks. Here:

* ``TinyViT``: patch embedding, class token, learned positions, an ``ODEStack`` (bidirectional),
  a final norm and a linear head: the paper's ViT, scaled down.
* ``CharLM``: a causal character-level language model around an ``ODEStack``: the language side.
* ``Variant``: the two architectural choices the paper varies, the integration scheme (``kind``,
  see ``utils.ode_blocks.BLOCK_KINDS``) and how many consecutive layers share one field
  (``share``); every other size comes from one ``ODEConfig``.

The layers themselves (fields, integrators, weight sharing) are ``utils.ode_blocks``.

Public names: ``Variant``, ``TinyViT``, ``CharLM``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from utils.ode_blocks import ODEConfig, ODEStack

__all__ = ["CharLM", "TinyViT", "Variant"]


@dataclass(frozen=True)
class Variant:
    """One architecture to train: a scheme and a sharing group size."""

    kind: str
    share: int = 1

    @property
    def label(self) -> str:
        """``'rk2'`` or ``'rk2, share 4'``."""
        return self.kind if self.share == 1 else f"{self.kind}, share {self.share}"


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
        """Next-character logits ``[batch, pos, vocab]`` of character ids ``[batch, pos]``."""
        if tokens.shape[1] > self.pos.shape[1]:
            raise ValueError(
                f"sequence of {tokens.shape[1]} characters exceeds the context {self.pos.shape[1]}"
            )
        x = self.embed(tokens) + self.pos[:, : tokens.shape[1]]
        return self.head(self.norm(self.stack(x)))
