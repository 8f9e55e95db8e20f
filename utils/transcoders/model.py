"""The transcoder itself (Dunefsky, Chlenski & Nanda 2024): what it reads, its forward pass, its loss.

A transcoder is a wide ReLU MLP trained to imitate one MLP sublayer. It reads what the MLP reads, the
MLP's normalised input ``x`` (``mlp_hooks(layer)[0]``; the norm's weight is folded into the model), and
predicts what the MLP writes, ``y`` (``mlp_hooks(layer)[1]``), through a sparse layer of features:

* the architecture (the paper's transcoder): features ``z = ReLU(W_enc (x - b_pre) + b_enc)``, the
  prediction ``W_dec z + b_dec``, decoder rows at unit norm -> ``SparseTranscoder``; optionally an
  affine skip term ``x W_skip`` added to the prediction (a *skip transcoder*, Paulo et al. 2025: a
  deviation from the paper, exported as sae-lens's ``SkipTranscoder``);
* optionally BatchTopK features instead of the L1 penalty (Bussmann, Leask & Nanda 2024, a deviation
  from the paper): while training, the ``k`` x n largest activations of a batch of n tokens are kept
  (``batch_topk``) and the loss is the squared error alone; at inference a feature fires when its
  pre-activation exceeds one threshold, the running mean of the smallest kept activation
  (``SparseTranscoder.update_threshold``), exported as sae-lens's ``JumpReLUTranscoder``; features that
  stopped firing can be pulled back by Gao et al.'s (2024) auxiliary loss -> ``auxk_loss``;
* the training objective: squared error plus an L1 penalty on the activations weighted by the decoder
  rows' norms -> ``transcoder_loss``, on targets rescaled so that the median token's write has norm
  sqrt(d) (``output_scale``; one ``l1`` then suits every layer);
* initialisation: pre-bias and output bias at the data means -> ``SparseTranscoder.init_from_data``;
* sharing: a transcoder is saved and loaded as an sae-lens ``Transcoder`` predicting the real write
  (``SparseTranscoder.to_sae_lens``, ``save_transcoder``, ``load_transcoder``), so
  ``HookedSAETransformer.add_sae`` splices it (``sae_transformer``).

Public names: ``mlp_hooks``, ``SparseTranscoder``, ``batch_topk``, ``auxk_loss``, ``skip_term``, ``prediction``,
``require_no_skip``, ``random_transcoder``, ``output_scale``,
``transcoder_loss``, ``save_transcoder``, ``load_transcoder``, ``sae_transformer``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformer_lens import HookedTransformer

from utils.hooks import sublayer_input_hook
from utils.model_layouts import install_fast_blocks
from utils.sublayers import Sublayer

__all__ = [
    "SparseTranscoder",
    "auxk_loss",
    "batch_topk",
    "prediction",
    "require_no_skip",
    "skip_term",
    "load_transcoder",
    "mlp_hooks",
    "output_scale",
    "random_transcoder",
    "sae_transformer",
    "save_transcoder",
    "transcoder_loss",
]


def mlp_hooks(layer: int) -> tuple[str, str]:
    """The transcoder's input and target hooks for MLP ``layer``: its normalised input and its write."""
    s = Sublayer(layer, "mlp")
    return sublayer_input_hook(s), s.out_hook


class SparseTranscoder(nn.Module):
    """Dunefsky et al.'s transcoder: z = ReLU(W_enc (x - b_pre) + b_enc), y = W_dec z + b_dec (+ x W_skip
    with ``skip``: a dense linear path beside the sparse features, zero at the start).

    With ``k``, the features are BatchTopK ones (``encode_for_training``; at inference a feature fires
    above ``threshold``). Decoder rows are kept at unit norm while training. ``out_scale`` is the factor the targets were
    multiplied by to give the median token's target the norm sqrt(d_out); ``forward`` predicts in those scaled
    units and ``to_sae_lens`` folds the factor back, so the exported transcoder predicts the real write.
    """

    def __init__(self, d_in: int, d_sae: int, d_out: int, seed: int = 0, skip: bool = False, k: int | None = None):
        super().__init__()
        if k is not None and not 1 <= k <= d_sae:
            raise ValueError(f"BatchTopK needs 1 <= k <= d_sae ({d_sae}) features per token, got k={k}")
        self.k = k
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("out_scale", torch.tensor(1.0))
        w_dec = torch.randn(d_sae, d_out, generator=g)
        self.W_dec = nn.Parameter(w_dec / w_dec.norm(dim=1, keepdim=True))
        bound = 1 / math.sqrt(d_in)
        self.W_enc = nn.Parameter((torch.rand(d_in, d_sae, generator=g) * 2 - 1) * bound)
        self.b_pre = nn.Parameter(torch.zeros(d_in))
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.b_dec = nn.Parameter(torch.zeros(d_out))
        self.W_skip = nn.Parameter(torch.zeros(d_out, d_in)) if skip else None  # [d_out, d_in], as sae-lens
        if k is not None:  # the inference threshold, in scaled units; set while training (update_threshold)
            self.register_buffer("threshold", torch.tensor(0.0))

    @property
    def d_sae(self) -> int:
        """Number of features."""
        return self.W_enc.shape[1]

    def preactivations(self, x: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """Feature pre-activations [..., d_sae] of inputs ``x`` [..., d_in] (only the ``features``
        columns, a bool mask or indices, when given).

        Written as x W_enc + (b_enc - b_pre W_enc): the same map, but the pre-bias's gradient is a
        vector-matrix product rather than a sixth batch-sized matrix product (~14% of a training step).
        """
        w_enc, b_enc = (self.W_enc, self.b_enc) if features is None else (self.W_enc[:, features], self.b_enc[features])
        return x @ w_enc + (b_enc - self.b_pre @ w_enc)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Feature activations [..., d_sae] of inputs ``x`` [..., d_in]: ReLU, and with ``k`` only the
        features whose pre-activation exceeds ``threshold`` (JumpReLU)."""
        pre = self.preactivations(x)
        acts = torch.relu(pre)
        return acts if self.k is None else acts * (pre > self.threshold)

    def encode_for_training(self, x: torch.Tensor) -> torch.Tensor:
        """The activations a training step uses for a batch ``x`` [n, d_in]: ``encode``'s, or with ``k``
        the batch's k x n largest ReLU activations (``batch_topk``)."""
        if self.k is None:
            return self.encode(x)
        return batch_topk(torch.relu(self.preactivations(x)), self.k)

    @torch.no_grad()
    def update_threshold(self, acts: torch.Tensor, momentum: float = 0.99) -> None:
        """Move ``threshold`` towards the smallest positive activation kept in a training batch
        ``acts`` [n, d_sae] (a running mean; the first batch sets it)."""
        kept = acts[acts > 0]
        if self.k is None or kept.numel() == 0:
            return
        smallest = kept.min()
        self.threshold.copy_(smallest if self.threshold == 0 else momentum * self.threshold + (1 - momentum) * smallest)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Predicted MLP output [..., d_out] from feature activations ``z`` [..., d_sae]."""
        return z @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted MLP output [..., d_out] from the MLP's normalised input [..., d_in]."""
        return prediction(self, x, self.encode(x))

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """From (non-sink) data ``x`` [..., d_in], ``y`` [..., d_out]: ``out_scale`` giving the median
        target the norm sqrt(d_out), the pre-bias at the mean input and the output bias at the mean
        (scaled) target."""
        x, y = x.reshape(-1, x.shape[-1]).float(), y.reshape(-1, y.shape[-1]).float()
        self.out_scale.copy_(output_scale(y))
        self.b_pre.copy_(x.mean(0))
        self.b_dec.copy_(y.mean(0) * self.out_scale)

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Rescale every decoder row to unit norm."""
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8))

    @torch.no_grad()
    def remove_parallel_decoder_grad(self) -> None:
        """Drop the gradient component along each decoder row (it would only change its norm)."""
        if self.W_dec.grad is not None:
            parallel = (self.W_dec.grad * self.W_dec).sum(1, keepdim=True)
            self.W_dec.grad.sub_(parallel * self.W_dec)

    def to_sae_lens(self, layer: int, model_name: str = "") -> Any:
        """This transcoder as an sae-lens ``Transcoder`` predicting the real MLP write (pre-bias and
        ``out_scale`` folded in: activations are divided by it, decoder rows stay unit norm; exact)."""
        # sae-lens takes ~1.5 s to import and only export needs it: imported here, not at the top
        import sae_lens

        hook_in, hook_out = mlp_hooks(layer)
        name = ("JumpReLU" if self.k is not None else "") + ("Skip" if self.W_skip is not None else "") + "Transcoder"
        kind, config = getattr(sae_lens, name), getattr(sae_lens, name + "Config")
        cfg = config(
            d_in=self.W_enc.shape[0],
            d_sae=self.d_sae,
            d_out=self.W_dec.shape[1],
            apply_b_dec_to_input=False,
        )
        cfg.metadata.hook_name = hook_in
        cfg.metadata.hook_name_out = hook_out
        cfg.metadata.hook_layer = layer
        cfg.metadata.hook_layer_out = layer
        cfg.metadata.model_name = model_name
        out = kind(cfg)
        with torch.no_grad():
            out.W_enc.copy_(self.W_enc / self.out_scale)
            out.b_enc.copy_((self.b_enc - self.b_pre @ self.W_enc) / self.out_scale)
            out.W_dec.copy_(self.W_dec)
            out.b_dec.copy_(self.b_dec / self.out_scale)
            if self.W_skip is not None:
                out.W_skip.copy_(self.W_skip / self.out_scale)
            if self.k is not None:
                out.threshold.fill_(float(self.threshold / self.out_scale))
        return out.eval()


def batch_topk(acts: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` x n largest of a batch's activations ``acts`` [n, d_sae] (ties broken by
    ``torch.topk``) and zero the rest: k features per token on average, more on some tokens, fewer on
    others (Bussmann, Leask & Nanda 2024). Gradients flow to the kept entries."""
    flat = acts.reshape(-1)
    values, index = flat.topk(min(k * acts.shape[0], flat.numel()), sorted=False)
    return torch.zeros_like(flat).scatter(0, index, values).reshape(acts.shape)


def auxk_loss(pre: torch.Tensor, w_dec: torch.Tensor, error: torch.Tensor, k_aux: int) -> torch.Tensor:
    """Gao et al. (2024)'s auxiliary loss for dead features: per token, the ``k_aux`` largest ReLU
    pre-activations ``pre`` [n, n_dead] of the dead features, decoded by their rows ``w_dec``
    [n_dead, d], predict the main prediction's ``error`` [n, d] (held fixed); returns the per-token
    mean of that prediction's squared error over d. Only dead features get its gradient, so it pulls
    them towards the part of the target the live ones miss."""
    acts = torch.relu(pre)
    values, index = acts.topk(min(k_aux, acts.shape[-1]), dim=-1, sorted=False)
    guess = torch.zeros_like(acts).scatter(-1, index, values) @ w_dec
    return (guess - error.detach()).pow(2).sum(-1).mean() / error.shape[-1]


def skip_term(transcoder: Any, x: torch.Tensor) -> torch.Tensor | float:
    """A transcoder's skip path applied to its inputs ``x`` [..., d_in]: x W_skipᵀ [..., d_out] for a
    skip transcoder (ours or sae-lens's ``SkipTranscoder``, both [d_out, d_in]), 0 for any other."""
    w_skip = getattr(transcoder, "W_skip", None)
    return 0.0 if w_skip is None else x @ w_skip.T.to(x)


def prediction(transcoder: Any, x: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
    """What ``transcoder`` writes for inputs ``x`` [..., d_in] whose feature activations are ``acts``
    [..., d_sae] (possibly edited): the decoded features plus the skip path, if it has one."""
    return transcoder.decode(acts) + skip_term(transcoder, x)


def require_no_skip(transcoders: Mapping[int, Any], what: str) -> None:
    """Raise, naming the layers, if any of ``transcoders`` ({layer: transcoder}) has a skip path that
    ``what`` does not account for."""
    skipping = sorted(layer for layer, tc in transcoders.items() if getattr(tc, "W_skip", None) is not None)
    if skipping:
        raise ValueError(
            f"{what} does not handle skip transcoders yet (layers {skipping}): their x W_skip path is a dense "
            "linear term outside the features, which its attributions and ablations would leave out. "
            "Use transcoders trained without skip (skip=False)")


def random_transcoder(d_model: int, d_sae: int, seed: int = 0, bias_std: float = 0.2) -> SparseTranscoder:
    """An untrained transcoder with seeded random weights and biases, for checks on tiny models."""
    tc = SparseTranscoder(d_model, d_sae, d_model, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bias in (tc.b_pre, tc.b_enc, tc.b_dec):
            bias.copy_(torch.randn(bias.shape, generator=g) * bias_std)
    return tc


def output_scale(y: torch.Tensor) -> torch.Tensor:
    """The factor (a scalar tensor) that gives the median token of ``y`` [n, d] the norm sqrt(d).

    sae-lens scales by the root-mean-square norm instead; the median is not moved by the few tokens
    whose write is tens of times larger than the rest (``" the"`` at SmolLM2's layer 2: 2% of the
    tokens, 40% of the squared norm), which would otherwise shrink every other token's error
    against the sparsity penalty.
    """
    return math.sqrt(y.shape[-1]) / y.float().norm(dim=-1).median().clamp_min(1e-12)


def transcoder_loss(
    pred: torch.Tensor, target: torch.Tensor, acts: torch.Tensor, w_dec: torch.Tensor, l1: float
) -> dict[str, torch.Tensor]:
    """Per-token mean of ||pred - target||^2 / d plus ``l1`` x sum_i acts_i ||W_dec[i]|| / sqrt(d).

    ``pred``, ``target`` [n, d], ``acts`` [n, d_sae], ``w_dec`` [d_sae, d]; returns the scalars
    ``loss``, ``nmse`` and ``l1`` (the sparsity term before its coefficient). ``target`` is already
    scaled to median norm sqrt(d) (``output_scale``), so both terms are free of the layer's output
    scale and each token's term does not depend on the rest of the batch.
    """
    d = target.shape[-1]
    mse = (pred - target).pow(2).sum(-1).mean() / d
    sparsity = (acts * w_dec.norm(dim=-1)).sum(-1).mean() / math.sqrt(d)
    return {"loss": mse + l1 * sparsity, "nmse": mse, "l1": sparsity}


def save_transcoder(
    transcoder: SparseTranscoder, layer: int, folder: str | os.PathLike, model_name: str = ""
) -> Path:
    """Save as an sae-lens ``Transcoder`` folder (cfg.json + safetensors)."""
    transcoder.to_sae_lens(layer, model_name).save_model(folder)
    return Path(folder)


def load_transcoder(folder: str | os.PathLike, device: str | torch.device = "cpu") -> Any:
    """Load an sae-lens ``Transcoder`` saved by ``save_transcoder`` (or by sae-lens) onto ``device``
    (pass the model's, ``model.cfg.device``); its cfg.json names the kind (skip, JumpReLU) sae-lens builds."""
    from sae_lens import Transcoder  # heavy (~1.5 s to import): only loading needs it

    folder = Path(folder)
    if not (folder / "cfg.json").is_file():
        raise FileNotFoundError(
            f"{folder} holds no cfg.json; save the transcoder with save_transcoder(...) first"
        )
    return Transcoder.load_from_disk(folder, device=str(device)).eval()


def sae_transformer(model: HookedTransformer) -> Any:
    """A ``HookedSAETransformer`` with ``model``'s config, tokenizer and weights (for ``add_sae``)."""
    from sae_lens import HookedSAETransformer  # heavy (~1.5 s to import): only this check needs it

    wrapped = HookedSAETransformer(model.cfg, tokenizer=model.tokenizer)
    wrapped.load_state_dict(model.state_dict(), strict=False)
    return install_fast_blocks(wrapped).eval()
