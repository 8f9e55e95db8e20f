"""A tuned lens (Belrose et al. 2023, *Eliciting Latent Predictions from Transformers with the Tuned
Lens*): one affine translator per layer that maps the layer's residual stream to an estimate of the
final layer's, read through the final norm and the unembedding like the logit lens.

Belrose et al. train each translator by gradient descent on the KL divergence to the final logits.
That needs the full-vocabulary unembedding in every step and does not fit in a minute on a laptop
CPU, so here each translator is fitted in closed form instead: a ridge regression of the
RMS-normalised final residual stream on the RMS-normalised layer residual (plus a bias), shrunk
towards the identity, i.e. towards the logit lens. The final norm is scale-invariant, so matching
the normalised final state is what matters for the logits. The first position of every window is
left out of the fit: it is the attention sink, whose residual stream is huge and unlike the others.

A fitted lens is cached in the cache folder (``utils.files.cached_folder``): fitted once across
processes, checked against its checksum on load, refitted with a warning naming the file if damaged.

Public names: ``fit_tuned_lens``, ``TunedLens``, ``fit_affine``, ``residual_samples``, ``lens_kl``,
``rms_normalise``, ``RIDGE``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from utils import hooks
from utils.data import token_batches
from utils.files import cached_folder
from utils.paths import cache_dir
from utils.prompts import project

__all__ = ["RIDGE", "TunedLens", "fit_affine", "fit_tuned_lens", "lens_kl", "residual_samples", "rms_normalise"]

RIDGE = 0.1  # shrinkage towards the identity, relative to the mean squared input (per token)
LENS_VERSION = 1  # bump when the fit changes, so cached lenses are refitted
LENS_FILE = "lens.pt"


def rms_normalise(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``x`` divided by its root mean square over the last dimension."""
    return x / x.pow(2).mean(-1, keepdim=True).add(eps).sqrt()


@dataclass
class TunedLens:
    """Affine translators ``weight`` [L, d, d] and ``bias`` [L, d], one per layer."""

    weight: torch.Tensor
    bias: torch.Tensor

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        """Translate residual streams [..., L, d] (one per layer, in layer order) towards the final layer's."""
        if hidden.shape[-2:] != self.bias.shape:
            raise ValueError(
                f"the lens has {tuple(self.bias.shape)} (layers, d_model); got hidden states {tuple(hidden.shape)}"
            )
        x = rms_normalise(hidden.float())
        return torch.einsum("...ld,lde->...le", x, self.weight) + self.bias

    def translate(self, hidden: torch.Tensor, layer: int) -> torch.Tensor:
        """Translate residual streams [..., d] of one ``layer``."""
        return rms_normalise(hidden.float()) @ self.weight[layer] + self.bias[layer]


def fit_affine(
    x: torch.Tensor, y: torch.Tensor, ridge: float = RIDGE
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge fit of ``y`` [N, d] ≈ ``x`` [N, d] @ W + b, shrinking W towards the identity (b is free)."""
    if x.shape != y.shape or x.dim() != 2:
        raise ValueError(f"x and y must both be [N, d], got {tuple(x.shape)} and {tuple(y.shape)}")
    n, d = x.shape
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc, yc = (x - x_mean).double(), (y - y_mean).double()
    lam = ridge * n * float(xc.pow(2).mean())
    eye = torch.eye(d, dtype=torch.float64)
    weight = torch.linalg.solve(xc.T @ xc + lam * eye, xc.T @ yc + lam * eye).float()
    return weight, y_mean - x_mean @ weight


@torch.no_grad()
def residual_samples(
    model: HookedTransformer,
    n_tokens: int,
    ctx: int,
    split: str = "train",
    progress: bool = True,
    source: str = "shipped",
) -> torch.Tensor:
    """Residual streams [N, L, d] after every layer for tokens of ``source``'s ``split`` (first
    position of each window left out)."""
    n_layers = model.cfg.n_layers
    names = [hooks.resid_post(layer) for layer in range(n_layers)]
    chunks = []
    batches = list(token_batches(model, split, n_tokens, ctx, batch_size=8, source=source))
    desc = f"tuned lens: {source} {split} activations"
    for tokens in tqdm(batches, desc=desc, disable=not progress):
        _, cache = model.run_with_cache(
            tokens.to(model.cfg.device), stop_at_layer=n_layers, names_filter=lambda n: n in names
        )
        chunks.append(torch.stack([cache[n][:, 1:] for n in names], dim=2).flatten(0, 1).cpu())
    return torch.cat(chunks)


def _cache_folder(
    model: HookedTransformer, n_tokens: int, ctx: int, ridge: float, source: str
) -> Path:
    key = f"{model.cfg.model_name}-{model.cfg.n_layers}-{model.cfg.d_model}-{n_tokens}-{ctx}-{ridge}-v{LENS_VERSION}"
    key += "" if source == "shipped" else f"-{source}"  # shipped lenses keep their cache key
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    return cache_dir() / "tuned_lens" / f"{model.cfg.model_name.replace('/', '_')}-{digest}"


def _load_lens(folder: Path) -> TunedLens:
    saved = torch.load(folder / LENS_FILE, weights_only=True)
    return TunedLens(saved["weight"], saved["bias"])


def fit_tuned_lens(
    model: HookedTransformer,
    n_tokens: int = 4096,
    ctx: int = 128,
    ridge: float = RIDGE,
    use_cache: bool = True,
    progress: bool = True,
    source: str = "shipped",
) -> TunedLens:
    """Fit (or load from the cache folder) a tuned lens on ``n_tokens`` tokens of ``source``'s
    training split (``utils.data.token_batches``: "shipped" the model's own text, "prose" human)."""

    def fit() -> TunedLens:
        samples = residual_samples(model, n_tokens, ctx, progress=progress, source=source)
        states = rms_normalise(samples)
        fits = [fit_affine(states[:, layer], states[:, -1], ridge) for layer in range(states.shape[1])]
        return TunedLens(torch.stack([w for w, _ in fits]), torch.stack([b for _, b in fits]))

    def fit_and_save(staging: Path) -> TunedLens:
        lens = fit()
        torch.save({"weight": lens.weight, "bias": lens.bias}, staging / LENS_FILE)
        return lens

    if not use_cache:
        return fit()
    return cached_folder(_cache_folder(model, n_tokens, ctx, ridge, source), fit_and_save, _load_lens, "a fitted tuned lens")


@torch.no_grad()
def lens_kl(
    model: HookedTransformer,
    states: torch.Tensor,
    lens: TunedLens | None = None,
    chunk: int = 64,
) -> torch.Tensor:
    """Mean KL(final ‖ lens) in nats per layer [L] over residual streams ``states`` [N, L, d]; ``lens`` None is the logit lens."""
    n, n_layers, _ = states.shape
    total = torch.zeros(n_layers)
    for start in range(0, n, chunk):
        block = states[start : start + chunk].to(model.cfg.device)
        final = project(model, block[:, -1]).float().log_softmax(-1)
        for layer in range(n_layers):
            h = block[:, layer] if lens is None else lens.translate(block[:, layer], layer)
            logp = project(model, h.to(block.dtype)).float().log_softmax(-1)
            total[layer] += (final.exp() * (final - logp)).sum(-1).sum().cpu()
    return total / n
