"""Reading vectors in the vocabulary, fast: the top-1 token of many writes.

Geva et al. (2023) read every hidden state and every sublayer's (or head's) write by projecting it
to the vocabulary through the final norm and the unembedding (``utils.prompts.project``). Attribute
extraction reads one write per fact, layer and sublayer or head, so the top-1 token is found here
without forming the whole [..., vocab] logits at once:

* ``top_tokens``: top-1 token of ``project`` for any number of d_model vectors.
* ``head_top_tokens``: top-1 token of each head's write z_h W_O[h]; under a weightless final norm
  (``FACTORED_NORMS``) through a [d_head, vocab] readout per head (``head_readout``) formed once.
* ``argmax_of_product``: argmax of (a @ b) · scale + bias in cache-sized blocks of columns.

Public names: ``FACTORED_NORMS``, ``top_tokens``, ``head_readout``, ``head_top_tokens``,
``argmax_of_product``.
"""

from __future__ import annotations

import torch
from transformer_lens import HookedTransformer

from utils.prompts import project

__all__ = ["FACTORED_NORMS", "argmax_of_product", "head_readout", "head_top_tokens", "top_tokens"]

FACTORED_NORMS = {"RMSNormPre": False, "LayerNormPre": True}  # weightless final norms: name -> centres its input


def argmax_of_product(
    a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor | None = None, bias: torch.Tensor | None = None,
    block: int = 1024,
) -> torch.Tensor:
    """argmax over the last dimension of (a @ b) · scale[..., None] + bias, ``block`` columns at a time.

    ``a`` [..., n, k] and ``b`` [..., k, m] give [..., n] indices in [0, m); ``scale`` [..., n],
    ``bias`` [m]. Blocks whose logits stay in cache beat writing the whole [..., vocab] tensor: 1.7x
    less CPU time for a short inner dimension (a head's d_head), 1.5x for d_model
    (benchmarks/bench_recall_argmax.py, one thread). Ties keep the first (lowest) index, as
    ``torch.argmax`` does.
    """
    best = torch.full(a.shape[:-1], -torch.inf, device=a.device)
    arg = torch.zeros(a.shape[:-1], dtype=torch.long, device=a.device)
    for start in range(0, b.shape[-1], block):
        logits = torch.matmul(a, b[..., start : start + block])
        if scale is not None:
            logits = logits * scale[..., None]
        if bias is not None:
            logits = logits + bias[start : start + block]
        value, index = logits.max(-1)
        better = value > best
        best, arg = torch.where(better, value, best), torch.where(better, index + start, arg)
    return arg


def top_tokens(model: HookedTransformer, x: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    """Top-1 token [...] of ``project`` for every vector of ``x`` [..., d_model], ``chunk`` vectors at a time (on CPU)."""
    flat = x.reshape(-1, x.shape[-1])
    normed = model.ln_final(flat[:, None])[:, 0]  # what project feeds the unembedding
    top = torch.cat([argmax_of_product(part, model.W_U, bias=model.b_U).cpu() for part in normed.split(chunk)])
    return top.reshape(x.shape[:-1])


def head_readout(model: HookedTransformer, w_o: torch.Tensor) -> torch.Tensor:
    """W_O C W_U [..., d_head, vocab] for output weights ``w_o`` [..., d_head, d_model] under a weightless
    final norm (FACTORED_NORMS; C centres for LayerNorm): logits = s · z (W_O C W_U) + b_U, s > 0."""
    kind = type(model.ln_final).__name__
    if kind not in FACTORED_NORMS:
        raise ValueError(f"a {kind} final norm has weights: the readout does not factor; use project")
    w_u = model.W_U - model.W_U.mean(0, keepdim=True) if FACTORED_NORMS[kind] else model.W_U
    return w_o @ w_u


def head_top_tokens(model: HookedTransformer, z: torch.Tensor, layer: int) -> torch.Tensor:
    """Top-1 token [N, H] of each head's write z[:, h] W_O[h] at ``layer`` (``z`` [N, H, d_head]) read like ``project``.

    With a weightless final norm (TransformerLens's folded RMSNormPre or LayerNormPre) the logits are
    s · z_h (W_O[h] C W_U) + b_U, with s > 0 the norm's scale of that write and C the centring (LayerNorm
    only). So the [d_head, vocab] readout of each head is formed once, instead of a [d_model, vocab]
    product per head and fact. That pays once there are more than about d_head facts; for fewer, and for
    other norms, each write goes through ``project``.
    """
    w_o = model.blocks[layer].attn.W_O  # [H, d_head, d_model]
    writes = torch.einsum("nhe,hed->nhd", z, w_o)
    kind = type(model.ln_final).__name__
    d_head, d_model = w_o.shape[1:]
    if kind not in FACTORED_NORMS or len(z) * (d_model - d_head) <= d_head * d_model:  # readout costs more
        return project(model, writes).argmax(-1)
    centred = writes - writes.mean(-1, keepdim=True) if FACTORED_NORMS[kind] else writes
    scale = model.ln_final(writes).norm(dim=-1) / centred.norm(dim=-1).clamp_min(1e-30)  # [N, H]
    return argmax_of_product(z.transpose(0, 1), head_readout(model, w_o), scale.T, model.b_U).T
