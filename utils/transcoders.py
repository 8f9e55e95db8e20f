"""Transcoders (Dunefsky, Chlenski & Nanda 2024): activations, training, splicing, metrics (notebooks 02, 03).

A transcoder is a wide ReLU MLP trained to imitate one MLP sublayer: it reads the MLP's normalised
input (``blocks.L.ln2.hook_normalized``; the norms' weights are folded into the model) and predicts
its write (``blocks.L.hook_mlp_out``) through a sparse layer of features.

* Attention sinks: position 0 of a window, BOS/EOS/pad tokens and the rare tokens that carry a
  *massive activation* (a residual stream hundreds of times larger than the median, Sun et al. 2024,
  "Massive activations in large language models") get MLP writes hundreds of times larger than other
  tokens' (``model_sinks``). They are left out of training and of every metric, and a spliced model
  keeps the real MLP write there (``replace_mlps``).
* Activations: ``stream_activations`` runs the model only up to the last layer needed
  (``stop_at_layer``); ``cache_activations`` writes every layer's (input, target) once to disk
  (float16 Arrow, sinks marked so that sae-lens skips them too) and ``load_activations`` reads the
  non-sink tokens back into RAM; ``collect_activations`` keeps them in RAM without the disk (when
  sae-lens does not need them); ``epoch_batches`` serves globally shuffled batches, epoch after epoch.
* Training: ``SparseTranscoder`` + ``TranscoderTrainer``: targets rescaled so that the median token's
  write has a fixed norm (so one ``l1`` suits every layer; folded back on export), MSE + L1 weighted
  by decoder norms, fused Adam with warm-up and a final linear decay, biases from the data mean,
  dead-feature resampling that stops early, checkpoints, NaN guard. ``train_transcoders`` trains many
  from one stream; ``train_all_layers`` trains one per layer and caches them on disk.
  ``train_sae_with_sae_lens`` trains the SAE baseline with sae-lens's own runner.
* Export: transcoders are saved and loaded as sae-lens ``Transcoder`` objects, so
  ``HookedSAETransformer.add_sae`` can splice them.
* Metrics and interpretation: L0, FVU, spliced CE and KL, fraction recovered, dead/dense fractions,
  per-layer quality, top-activating contexts, de-embeddings, logit effects, a blind-rating sheet.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import shutil
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from utils.hooks import FwdHooks, sublayer_input_hook
from utils.model_layouts import install_fast_blocks
from utils.outputs import replace_folder
from utils.sublayers import Sublayer

# Parameter bounds where apply_scale's count rule (positive) does not fit: layer 0 is a real layer.
RANGES = {"layer": (0, None)}

PRESETS = {
    # every parameter a scale sets; `default` time on 2 CPU cores: see the notebook's runtime line (the target was 5 min)
    "smoke": {
        "layer": 3,
        "ctx": 64,
        "n_train_tokens": 2_048,
        "n_eval_tokens": 256,
        "epochs": 2,
        "d_sae": 256,
        "batch_tokens": 256,
        "transcoder_l1": [0.03, 0.1],
        "sae_l1": [1.0, 4.0],
        "n_interpret": 2,
        "n_blind": 2,
        "top_k": 5,
    },
    "dry_run": {  # a paper-scale rehearsal (dry_run=True): every branch, the smallest sizes
        "n_train_tokens": 1_024,
        "n_eval_tokens": 128,
        "epochs": 1,
        "d_sae": 128,
        "transcoder_l1": [0.1],
        "sae_l1": [1.0],
        "n_interpret": 1,
        "n_blind": 1,
    },
    "default": {
        "model_name": "smollm2-135m",
        "source": "shipped",
        "layer": 15,
        "ctx": 128,
        "n_train_tokens": 32_768,
        "n_eval_tokens": 2_048,
        "epochs": 5,
        "d_sae": 2_304,
        "batch_tokens": 512,
        "transcoder_l1": [0.01, 0.03, 0.1],
        "sae_l1": [1.0, 2.0, 4.0],
        "n_interpret": 4,
        "n_blind": 12,
        "top_k": 8,
    },
    "paper": {  # the paper's Pareto comparison: Pythia-410M layer 15 on OpenWebText
        "model_name": "pythia-410m",
        "source": "openwebtext",
        "layer": 15,
        "ctx": 128,
        "n_train_tokens": 4_194_304,
        "n_eval_tokens": 65_536,
        "epochs": 1,
        "d_sae": 8_192,
        "batch_tokens": 4_096,
        "transcoder_l1": [0.003, 0.01, 0.03, 0.1],
        "sae_l1": [1.0, 2.0, 4.0, 8.0],
        "n_interpret": 8,
        "n_blind": 20,
        "top_k": 12,
    },
}
DENSE_THRESHOLD = 0.1  # a feature active on more than this fraction of tokens is "dense"
HIGHLIGHT = ("[[", "]]")  # how a context marks the token a feature fires on
CHECKPOINT_NAME = "last_good"
TRAINER_VERSION = 6  # bump when a change to the trainer changes what it learns, so trained caches are rebuilt
SINK_ID = -1  # how a cached ``token_ids`` column marks an attention-sink position (sae-lens skips it)
MANIFEST = "manifest.json"
Pair = tuple[torch.Tensor, torch.Tensor]
Replacement = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (MLP input, real MLP write) -> new write


def mlp_hooks(layer: int) -> tuple[str, str]:
    """The transcoder's input and target hooks for MLP ``layer``."""
    s = Sublayer(layer, "mlp")
    return sublayer_input_hook(s), s.out_hook


# ----------------------------------------------------------------------------- attention sinks


def special_token_ids(model: HookedTransformer) -> list[int]:
    """The tokenizer's BOS, EOS and pad ids (the tokens that act as attention sinks)."""
    tok = model.tokenizer
    if tok is None:
        return []
    return sorted({i for i in (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) if i is not None})


MASSIVE_FACTOR = 10.0  # a residual norm this many times the median marks a massive-activation token


def sink_mask(tokens: torch.Tensor, special_ids: Sequence[int] = ()) -> torch.Tensor:
    """True at the attention sinks known from the tokens alone: position 0 and every special token."""
    mask = torch.isin(tokens, torch.tensor(list(special_ids), dtype=tokens.dtype, device=tokens.device))
    mask[..., 0] = True
    return mask


def sink_layer(model: HookedTransformer) -> int:
    """The layer whose residual input shows massive activations: the middle one (they form in the
    early layers and persist; SmolLM2-135M's reach ~80-160x the median norm at layer 15, while every
    other token stays below 2x)."""
    return model.cfg.n_layers // 2


def massive_tokens(resid: torch.Tensor, exclude: torch.Tensor | None = None, factor: float = MASSIVE_FACTOR) -> torch.Tensor:
    """True where the residual stream ``resid`` [..., pos, d] has a norm above ``factor`` x the
    median norm of the tokens not in ``exclude`` [..., pos] (massive activations)."""
    norms = resid.float().norm(dim=-1)
    reference = norms if exclude is None else norms[~exclude.to(norms.device)]
    if reference.numel() == 0:
        return torch.zeros_like(norms, dtype=torch.bool)
    return norms > factor * reference.median()


def sink_hook(model: HookedTransformer) -> str:
    """The hook whose activation ``model_sinks`` reads: the residual input of ``sink_layer``."""
    return f"blocks.{sink_layer(model)}.hook_resid_pre"


@torch.no_grad()
def sink_resid(model: HookedTransformer, tokens: torch.Tensor) -> torch.Tensor:
    """The residual stream [..., pos, d] at the input of ``sink_layer`` (runs the model up to it)."""
    flat = tokens.reshape(-1, tokens.shape[-1]).to(model.cfg.device)
    resid = model(flat, stop_at_layer=sink_layer(model))
    return resid.reshape(*tokens.shape, -1)


def model_sinks(model: HookedTransformer, tokens: torch.Tensor, resid: torch.Tensor | None = None) -> torch.Tensor:
    """Attention sinks of ``tokens`` [..., pos]: ``sink_mask`` with ``model``'s special tokens, plus
    the massive-activation tokens of ``resid`` (the residual at ``sink_layer``, [..., pos, d]; pass
    it when a run already cached it, otherwise the model is run up to that layer)."""
    marked = sink_mask(tokens, special_token_ids(model))
    if resid is None:
        resid = sink_resid(model, tokens)
    return marked | massive_tokens(resid, marked).to(marked.device)


# ----------------------------------------------------------------------------- activations


@torch.no_grad()
def stream_activations(
    model: HookedTransformer, layers: Sequence[int], token_batches: Iterable[torch.Tensor]
) -> Iterator[tuple[torch.Tensor, torch.Tensor, dict[int, Pair]]]:
    """For each token batch: the tokens, their attention sinks (``model_sinks``, [batch, pos]) and
    {layer: (MLP input, MLP output)} as [batch, pos, d].

    The model runs only up to the last layer asked for or ``sink_layer``, whichever is later
    (``stop_at_layer``).
    """
    if not layers or min(layers) < 0 or max(layers) >= model.cfg.n_layers:
        raise ValueError(
            f"layers must be a non-empty subset of 0..{model.cfg.n_layers - 1}, got {list(layers)}"
        )
    sink_name = sink_hook(model)
    names = {sink_name, *(name for layer in layers for name in mlp_hooks(layer))}
    for tokens in token_batches:
        tokens = tokens.to(model.cfg.device)
        _, cache = model.run_with_cache(
            tokens, names_filter=lambda n: n in names, stop_at_layer=max(*layers, sink_layer(model)) + 1
        )
        sinks = model_sinks(model, tokens, cache[sink_name])
        yield tokens, sinks, {layer: tuple(cache[n] for n in mlp_hooks(layer)) for layer in layers}


def _flat(pairs: Mapping[int, Pair]) -> dict[int, Pair]:
    return {
        layer: (x.reshape(-1, x.shape[-1]).float(), y.reshape(-1, y.shape[-1]).float())
        for layer, (x, y) in pairs.items()
    }


def shuffled(
    chunks: Iterable[Mapping[int, Pair]], batch_tokens: int, buffer_tokens: int, seed: int = 0
) -> Iterator[dict[int, Pair]]:
    """Re-batch a stream of {layer: (x, y)} chunks into shuffled batches of ``batch_tokens`` tokens.

    A buffer of at most ``buffer_tokens`` (+ one chunk) tokens is shuffled whenever it is full and
    half of it is served, so tokens from different documents mix; the rest is served at the end
    (the last batch may be smaller).
    """
    if batch_tokens < 1 or buffer_tokens < batch_tokens:
        raise ValueError("need batch_tokens >= 1 and buffer_tokens >= batch_tokens")
    generator = torch.Generator().manual_seed(seed)
    buffer: dict[int, list[torch.Tensor]] | None = None

    def serve(keep: int) -> Iterator[dict[int, Pair]]:
        nonlocal buffer
        n = buffer[next(iter(buffer))][0].shape[0]
        order = torch.randperm(n, generator=generator)
        n_serve = n if keep == 0 else (n - keep) // batch_tokens * batch_tokens
        for start in range(0, n_serve, batch_tokens):
            idx = order[start : start + batch_tokens]
            yield {layer: (x[idx], y[idx]) for layer, (x, y) in buffer.items()}
        rest = order[n_serve:]
        buffer = {layer: [x[rest], y[rest]] for layer, (x, y) in buffer.items()}

    for chunk in chunks:
        flat = _flat(chunk)
        if buffer is None:
            buffer = {layer: [x, y] for layer, (x, y) in flat.items()}
        else:
            buffer = {
                layer: [torch.cat([bx, flat[layer][0]]), torch.cat([by, flat[layer][1]])]
                for layer, (bx, by) in buffer.items()
            }
        if buffer[next(iter(buffer))][0].shape[0] >= buffer_tokens:
            yield from serve(keep=buffer_tokens // 2)
    if buffer is not None:
        yield from serve(keep=0)


def cache_activations(
    model: HookedTransformer,
    layers: Sequence[int],
    token_batches: Iterable[torch.Tensor],
    folder: str | os.PathLike,
) -> Path:
    """Write tokens and each layer's (MLP input, MLP output) to an Arrow dataset on disk (float16).

    Columns: ``token_ids`` [ctx] (``SINK_ID`` at attention-sink positions, so sae-lens's
    ``exclude_special_tokens=[SINK_ID]`` skips them) and one [ctx, d_model] column per hook name, the
    layout sae-lens's ``use_cached_activations`` reads. Batches are written as they come; nothing is
    held in RAM. Returns the dataset folder (replaced atomically).
    """
    import datasets
    from datasets.arrow_writer import ArrowWriter

    folder = Path(folder)
    d = model.cfg.d_model
    names = [name for layer in layers for name in mlp_hooks(layer)]

    batches = iter(token_batches)
    first = next(batches, None)
    if first is None:
        raise ValueError("no token batches to cache")
    ctx = first.shape[1]
    features = datasets.Features(
        {"token_ids": datasets.Sequence(datasets.Value("int32"), length=ctx)}
        | {name: datasets.Array2D(shape=(ctx, d), dtype="float16") for name in names}
    )
    staging = folder.with_name(folder.name + ".building")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    arrow = staging / "activations.arrow"
    stream = stream_activations(model, layers, itertools.chain([first], batches))
    with ArrowWriter(features=features, path=str(arrow)) as writer:
        for tokens, sinks, pairs in tqdm(stream, desc="caching activations", unit="batch"):
            marked = torch.where(sinks, SINK_ID, tokens)
            columns = {"token_ids": marked.int().cpu().numpy()}
            for layer in layers:
                for name, act in zip(mlp_hooks(layer), pairs[layer], strict=True):
                    columns[name] = act.half().cpu().numpy()
            writer.write_batch(columns)
        writer.finalize()
    datasets.Dataset.from_file(str(arrow)).save_to_disk(str(staging / "dataset"))
    folder.parent.mkdir(parents=True, exist_ok=True)
    replace_folder(staging / "dataset", folder)
    shutil.rmtree(staging, ignore_errors=True)
    return folder


def cached_chunks(
    folder: str | os.PathLike,
    layers: Sequence[int],
    epochs: int = 1,
    windows_per_chunk: int = 16,
    seed: int = 0,
) -> Iterator[dict[int, Pair]]:
    """Stream {layer: (x, y)} chunks back from ``cache_activations``'s folder, ``epochs`` times.

    The dataset is memory-mapped; chunks of windows are read in a fresh random order each epoch.
    """
    import datasets

    dataset = datasets.load_from_disk(str(folder)).with_format("numpy")
    missing = [n for layer in layers for n in mlp_hooks(layer) if n not in dataset.column_names]
    if missing:
        raise ValueError(
            f"{folder} holds no activations for {missing}; rebuild it with cache_activations(..., layers={list(layers)})"
        )
    rng = np.random.default_rng(seed)
    starts = np.arange(0, len(dataset), windows_per_chunk)
    for _ in range(epochs):
        for start in rng.permutation(starts):
            rows = dataset[int(start) : int(start) + windows_per_chunk]
            yield {
                layer: tuple(torch.from_numpy(np.asarray(rows[n])) for n in mlp_hooks(layer))
                for layer in layers
            }


def load_activations(folder: str | os.PathLike, layers: Sequence[int]) -> dict[int, Pair]:
    """Every non-sink token's (MLP input, MLP output) per layer from ``cache_activations``'s folder,
    as float16 [n_tokens, d] tensors in RAM (tokens in the cache's order)."""
    import datasets

    dataset = datasets.load_from_disk(str(folder)).with_format("numpy")
    missing = [n for layer in layers for n in mlp_hooks(layer) if n not in dataset.column_names]
    if missing:
        raise ValueError(
            f"{folder} holds no activations for {missing}; rebuild it with cache_activations(..., layers={list(layers)})"
        )
    keep = torch.from_numpy(np.asarray(dataset["token_ids"])).reshape(-1) != SINK_ID

    def column(name: str) -> torch.Tensor:
        values = torch.from_numpy(np.asarray(dataset[name]))
        return values.reshape(-1, values.shape[-1])[keep]

    return {layer: tuple(column(n) for n in mlp_hooks(layer)) for layer in layers}


@torch.no_grad()
def collect_activations(
    model: HookedTransformer, layers: Sequence[int], token_batches: Iterable[torch.Tensor]
) -> dict[int, Pair]:
    """Every non-sink token's (MLP input, MLP output) per layer as float16 [n_tokens, d] tensors in
    RAM, straight from the model (what ``load_activations`` reads back from ``cache_activations``'s
    folder, without the round trip through disk)."""
    parts: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = {layer: ([], []) for layer in layers}
    for _, sinks, pairs in tqdm(stream_activations(model, layers, token_batches), desc="collecting activations", unit="batch"):
        keep = ~sinks.reshape(-1)
        for layer, (x, y) in pairs.items():
            for store, act in zip(parts[layer], (x, y), strict=True):
                store.append(act.reshape(-1, act.shape[-1])[keep].half().cpu())
    return {layer: (torch.cat(xs), torch.cat(ys)) for layer, (xs, ys) in parts.items()}


def epoch_batches(
    acts: Mapping[int, Pair], batch_tokens: int, epochs: int, seed: int = 0
) -> Iterator[dict[int, Pair]]:
    """Float32 batches {layer: (x, y)} of ``batch_tokens`` tokens, reshuffled over the whole set each
    epoch (every layer sees the same tokens; the last incomplete batch of an epoch is dropped)."""
    n = len(next(iter(acts.values()))[0])
    if not 1 <= batch_tokens <= n or epochs < 1:
        raise ValueError(f"need 1 <= batch_tokens <= {n} (the tokens held) and epochs >= 1")
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - batch_tokens + 1, batch_tokens):
            idx = order[start : start + batch_tokens]
            yield {layer: (x[idx].float(), y[idx].float()) for layer, (x, y) in acts.items()}


def steps_per_run(n_tokens: int, batch_tokens: int, epochs: int) -> int:
    """How many batches ``epoch_batches`` serves."""
    return n_tokens // batch_tokens * epochs


# ----------------------------------------------------------------------------- the transcoder


class SparseTranscoder(nn.Module):
    """Dunefsky et al.'s transcoder: z = ReLU(W_enc (x - b_pre) + b_enc), y = W_dec z + b_dec.

    Decoder rows are kept at unit norm while training. ``out_scale`` is the factor the targets were
    multiplied by to give the median token's target the norm sqrt(d_out); ``forward`` predicts in those scaled
    units and ``to_sae_lens`` folds the factor back, so the exported transcoder predicts the real write.
    """

    def __init__(self, d_in: int, d_sae: int, d_out: int, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("out_scale", torch.tensor(1.0))
        w_dec = torch.randn(d_sae, d_out, generator=g)
        self.W_dec = nn.Parameter(w_dec / w_dec.norm(dim=1, keepdim=True))
        bound = 1 / math.sqrt(d_in)
        self.W_enc = nn.Parameter((torch.rand(d_in, d_sae, generator=g) * 2 - 1) * bound)
        self.b_pre = nn.Parameter(torch.zeros(d_in))
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.b_dec = nn.Parameter(torch.zeros(d_out))

    @property
    def d_sae(self) -> int:
        """Number of features."""
        return self.W_enc.shape[1]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Feature activations [..., d_sae].

        Written as x W_enc + (b_enc - b_pre W_enc): the same map, but the pre-bias's gradient is a
        vector-matrix product rather than a sixth batch-sized matrix product (~14% of a training step).
        """
        return torch.relu(x @ self.W_enc + (self.b_enc - self.b_pre @ self.W_enc))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Predicted MLP output from feature activations."""
        return z @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted MLP output [..., d_out] from the MLP's normalised input."""
        return self.decode(self.encode(x))

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """From (non-sink) data: ``out_scale`` giving the median target the norm sqrt(d_out), the
        pre-bias at the mean input and the output bias at the mean (scaled) target."""
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
        from sae_lens import Transcoder, TranscoderConfig

        hook_in, hook_out = mlp_hooks(layer)
        cfg = TranscoderConfig(
            d_in=self.W_enc.shape[0],
            d_sae=self.d_sae,
            d_out=self.W_dec.shape[1],
            apply_b_dec_to_input=False,
        )
        for key, value in {
            "hook_name": hook_in,
            "hook_name_out": hook_out,
            "hook_layer": layer,
            "hook_layer_out": layer,
            "model_name": model_name,
        }.items():
            cfg.metadata[key] = value
        out = Transcoder(cfg)
        with torch.no_grad():
            out.W_enc.copy_(self.W_enc / self.out_scale)
            out.b_enc.copy_((self.b_enc - self.b_pre @ self.W_enc) / self.out_scale)
            out.W_dec.copy_(self.W_dec)
            out.b_dec.copy_(self.b_dec / self.out_scale)
        return out.eval()


def random_transcoder(d_model: int, d_sae: int, seed: int = 0, bias_std: float = 0.2) -> SparseTranscoder:
    """An untrained transcoder with seeded random weights and biases, for checks on tiny models."""
    tc = SparseTranscoder(d_model, d_sae, d_model, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bias in (tc.b_pre, tc.b_enc, tc.b_dec):
            bias.copy_(torch.randn(bias.shape, generator=g) * bias_std)
    return tc


def output_scale(y: torch.Tensor) -> torch.Tensor:
    """The factor that gives the median token of ``y`` [n, d] the norm sqrt(d).

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

    ``target`` is already scaled to median norm sqrt(d) (``output_scale``), so both terms are
    free of the layer's output scale and each token's term does not depend on the rest of the batch.
    """
    d = target.shape[-1]
    mse = (pred - target).pow(2).sum(-1).mean() / d
    sparsity = (acts * w_dec.norm(dim=-1)).sum(-1).mean() / math.sqrt(d)
    return {"loss": mse + l1 * sparsity, "nmse": mse, "l1": sparsity}


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the last good checkpoint."""


@dataclass
class TranscoderTraining:
    """Hyper-parameters of one transcoder's training (sizes come from the notebook's parameters)."""

    d_sae: int
    l1: float
    lr: float = 1e-3
    warmup_steps: int = 50
    decay_fraction: float = 0.0  # share of the run, at its end, over which the lr falls linearly to 0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    resample_every: int = 200  # steps between dead-feature checks (0: never resample)
    resample_until: int | None = None  # last step at which dead features are resampled (None: to the end)
    resample_pool_tokens: int = 2048  # recent training tokens that resampled features are drawn from
    checkpoint_every: int = 100  # steps between checkpoints (0: only at the end)
    checkpoint_dir: str | None = None
    seed: int = 0

    def __post_init__(self):
        if self.d_sae < 1 or self.l1 < 0 or self.lr <= 0 or not 0 <= self.decay_fraction <= 1:
            raise ValueError(
                f"need d_sae >= 1, l1 >= 0, lr > 0 and 0 <= decay_fraction <= 1, got d_sae={self.d_sae}, "
                f"l1={self.l1}, lr={self.lr}, decay_fraction={self.decay_fraction}"
            )


def lr_multiplier(step: int, warmup_steps: int, total_steps: int | None = None, decay_fraction: float = 0.0) -> float:
    """The learning-rate factor after ``step`` steps: a linear warm-up to 1 over ``warmup_steps``, then,
    when ``total_steps`` is known, a linear fall towards 0 over the last ``decay_fraction`` of them."""
    factor = min(1.0, (step + 1) / max(warmup_steps, 1))
    decay_steps = round((total_steps or 0) * decay_fraction)
    if decay_steps:
        factor *= min(1.0, max(total_steps - step, 0) / decay_steps)
    return factor


@dataclass
class TranscoderTrainer:
    """Trains one ``SparseTranscoder`` step by step; see ``train_transcoders`` for the loop."""

    cfg: TranscoderTraining
    layer: int
    d_in: int
    d_out: int
    model_name: str = ""
    device: str | torch.device = "cpu"
    total_steps: int | None = None  # the run's length, for the final learning-rate decay
    transcoder: SparseTranscoder = field(init=False)
    history: list[dict] = field(default_factory=list)
    step_count: int = 0
    last_checkpoint: Path | None = None

    def __post_init__(self):
        self.transcoder = SparseTranscoder(self.d_in, self.cfg.d_sae, self.d_out, self.cfg.seed).to(
            self.device
        )
        self.optimizer = torch.optim.Adam(
            self.transcoder.parameters(), lr=self.cfg.lr, betas=self.cfg.adam_betas, fused=True
        )
        self.initialised = False
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: lr_multiplier(s, self.cfg.warmup_steps, self.total_steps, self.cfg.decay_fraction),
        )
        self.fired = torch.zeros(self.cfg.d_sae, dtype=torch.long, device=self.device)
        self.resampled = 0
        self.recent: deque[tuple[torch.Tensor, torch.Tensor]] = deque()  # the resampling pool

    def init_from_data(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Output scale and biases from a sample of (non-sink) training data (else: the first batch)."""
        self.transcoder.init_from_data(x.to(self.device), y.to(self.device))
        self.initialised = True

    def step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """One Adam step on a batch of real (unscaled) targets; raises TrainingDiverged (without
        stepping) on a non-finite loss."""
        tc = self.transcoder
        x, y = x.to(self.device), y.to(self.device)
        if not self.initialised:
            self.init_from_data(x, y)
        y = y * tc.out_scale
        with torch.enable_grad():
            acts = tc.encode(x)
            pred = tc.decode(acts)
            losses = transcoder_loss(pred, y, acts, tc.W_dec, self.cfg.l1)
            if not torch.isfinite(losses["loss"]):
                where = (
                    f"the last good checkpoint is {self.last_checkpoint}"
                    if self.last_checkpoint
                    else "no checkpoint was written yet"
                )
                raise TrainingDiverged(
                    f"layer {self.layer} transcoder: loss became {losses['loss'].item()} at step {self.step_count}; "
                    f"{where}. Lower lr (now {self.cfg.lr}) or check the activations for NaN/inf."
                )
            self.optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
        tc.remove_parallel_decoder_grad()
        self.optimizer.step()
        self.scheduler.step()
        tc.normalize_decoder()
        active = acts.detach() > 0
        self.fired += active.sum(0)
        self.step_count += 1
        record = {
            "step": self.step_count,
            "loss": losses["loss"].item(),
            "nmse": losses["nmse"].item(),
            "l0": float(active.sum(-1).float().mean()),
            "dead_frac": float((self.fired == 0).float().mean()),
        }
        self.history.append(record)
        until = self.cfg.resample_until
        if self.cfg.resample_every and (until is None or self.step_count <= until):
            self.remember(x, y)
            if self.step_count % self.cfg.resample_every == 0:
                xs = torch.cat([x for x, _ in self.recent])
                ys = torch.cat([y for _, y in self.recent])
                with torch.no_grad():
                    self.resample_dead(xs, ys, tc(xs))
        if self.cfg.checkpoint_every and self.step_count % self.cfg.checkpoint_every == 0:
            self.save_checkpoint()
        return record

    def remember(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Keep the batch in the resampling pool, dropping the oldest beyond ``resample_pool_tokens``."""
        self.recent.append((x.detach(), y.detach()))
        while sum(len(part) for part, _ in self.recent) - len(self.recent[0][0]) >= self.cfg.resample_pool_tokens:
            self.recent.popleft()

    @torch.no_grad()
    def resample_dead(self, x: torch.Tensor, y: torch.Tensor, pred: torch.Tensor) -> int:
        """Re-initialise features that never fired since the last check (Anthropic's resampling).

        ``y`` and ``pred`` are in the scaled units the transcoder is trained in. Each dead feature
        gets the normalised error of a token drawn with probability ~ its squared
        error as decoder row, the (scaled) centred input of that token as encoder column, zero
        encoder bias, and fresh Adam state. Tokens are drawn without replacement: two features
        started from the same token would get the same gradients and stay copies of each other
        forever. So at most one feature per token in the batch is revived; the others stay dead
        and are revived at a later check. Returns how many were resampled.
        """
        tc = self.transcoder
        dead = torch.nonzero(self.fired == 0).flatten()
        self.fired.zero_()
        dead = dead[: len(x)]
        if len(dead) == 0:
            return 0
        err = y - pred
        weights = err.pow(2).sum(-1)
        g = torch.Generator().manual_seed(self.cfg.seed + self.step_count)
        picks = torch.multinomial((weights + 1e-12).cpu(), len(dead), replacement=False, generator=g)
        picks = picks.to(x.device)
        alive = torch.ones(tc.d_sae, dtype=torch.bool, device=x.device)
        alive[dead] = False
        enc_norm = tc.W_enc[:, alive].norm(dim=0).mean() if alive.any() else torch.tensor(1.0, device=x.device)
        new_dec = err[picks] / err[picks].norm(dim=-1, keepdim=True).clamp_min(1e-8)
        centred = x[picks] - tc.b_pre
        new_enc = centred / centred.norm(dim=-1, keepdim=True).clamp_min(1e-8) * enc_norm * 0.2
        tc.W_dec[dead] = new_dec
        tc.W_enc[:, dead] = new_enc.T
        tc.b_enc[dead] = 0.0
        for param, index in (
            (tc.W_dec, (dead,)),
            (tc.W_enc, (slice(None), dead)),
            (tc.b_enc, (dead,)),
        ):
            state = self.optimizer.state.get(param, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    state[key][index] = 0.0
        self.resampled += len(dead)
        return len(dead)

    def save_checkpoint(self) -> Path | None:
        """Save the transcoder (sae-lens format) as ``checkpoint_dir/last_good``, atomically."""
        if self.cfg.checkpoint_dir is None:
            return None
        folder = Path(self.cfg.checkpoint_dir) / CHECKPOINT_NAME
        staging = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        self.transcoder.to_sae_lens(self.layer, self.model_name).save_model(staging)
        (staging / "step.txt").write_text(str(self.step_count))
        folder.parent.mkdir(parents=True, exist_ok=True)
        replace_folder(staging, folder)
        self.last_checkpoint = folder
        return folder


def train_transcoders(
    batches: Iterable[Mapping[int, Pair]],
    configs: Mapping[Any, tuple[int, TranscoderTraining]],
    d_model: int,
    model_name: str = "",
    total_steps: int | None = None,
    desc: str = "training transcoders",
    init_data: Mapping[int, Pair] | None = None,
    device: str | torch.device = "cpu",
) -> dict[Any, TranscoderTrainer]:
    """Train transcoders from one stream of {layer: (x, y)} batches (one pass feeds them all).

    ``configs`` maps a key to ``(layer, TranscoderTraining)``; several transcoders may share a layer
    (an L1 sweep) or each read its own (one transcoder per layer). ``init_data`` ({layer: (x, y)},
    sinks excluded) sets each one's output scale and biases (else its first batch does). Returns the
    trainers (``.transcoder``, ``.history``), each checkpointed at the end when it has a
    ``checkpoint_dir``.
    """
    trainers = {
        key: TranscoderTrainer(cfg, layer, d_model, d_model, model_name, device, total_steps)
        for key, (layer, cfg) in configs.items()
    }
    for trainer in trainers.values():
        if init_data is not None:
            trainer.init_from_data(*init_data[trainer.layer])
    bar = tqdm(batches, total=total_steps, desc=desc, unit="step")
    for batch in bar:
        records = {key: trainer.step(*batch[trainer.layer]) for key, trainer in trainers.items()}
        last = records[next(iter(records))]
        bar.set_postfix(
            loss=f"{last['loss']:.3f}", L0=f"{last['l0']:.1f}", dead=f"{last['dead_frac']:.2f}"
        )
    for trainer in trainers.values():
        trainer.save_checkpoint()
    return trainers


def training_config(settings: Mapping[str, Any], **fields: Any) -> TranscoderTraining:
    """A ``TranscoderTraining`` from the run's ``settings`` (keys that are not its fields, such as
    the model or data fingerprint, are left out), with ``fields`` set on top."""
    known = set(TranscoderTraining.__dataclass_fields__)
    return TranscoderTraining(**{k: v for k, v in settings.items() if k in known} | fields)


@torch.no_grad()
def sweep_l1(
    model: HookedTransformer,
    acts: Mapping[int, Pair],
    ev: EvalSet,
    l1s: Sequence[float],
    settings: Mapping[str, Any],
    batch_tokens: int,
    epochs: int,
) -> tuple[pd.DataFrame, dict[tuple[int, float], TranscoderTrainer]]:
    """Train one transcoder per (layer in ``acts``, l1) from the same batches and measure each on
    ``ev`` (non-sink tokens): L0, FVU, ΔCE, KL, fraction recovered, dead fraction. Returns that table
    and the trainers, keyed by (layer, l1)."""
    configs = {(layer, l1): (layer, training_config(settings, l1=l1)) for layer in acts for l1 in l1s}
    n_tokens = len(next(iter(acts.values()))[0])
    trainers = train_transcoders(
        epoch_batches(acts, batch_tokens, epochs, seed=int(settings.get("seed", 0))),
        configs,
        model.cfg.d_model,
        total_steps=steps_per_run(n_tokens, batch_tokens, epochs),
        desc="L1 sweep",
        init_data=acts,
        device=model.cfg.device,
    )
    baselines = {layer: ce_baselines(model, ev, layer) for layer in acts}
    rows = [
        {"layer": layer, "l1": l1, **dictionary_metrics(
            model, ev, layer, trainer.transcoder.to_sae_lens(layer).to(model.cfg.device), "transcoder", baselines[layer]
        )}
        for (layer, l1), trainer in trainers.items()
    ]
    return pd.DataFrame(rows), trainers


def choose_l1(sweep: pd.DataFrame, max_l0: float) -> float:
    """The L1 whose median fraction recovered (over the sweep's layers) is highest among those with
    median L0 <= ``max_l0``; if none qualifies, the one with the lowest median L0."""
    medians = sweep.groupby("l1")[["l0", "frac_recovered"]].median()
    sparse = medians[medians.l0 <= max_l0]
    if sparse.empty:
        return float(medians.l0.idxmin())
    return float(sparse.frac_recovered.idxmax())


def save_transcoder(
    transcoder: SparseTranscoder, layer: int, folder: str | os.PathLike, model_name: str = ""
) -> Path:
    """Save as an sae-lens ``Transcoder`` folder (cfg.json + safetensors)."""
    transcoder.to_sae_lens(layer, model_name).save_model(folder)
    return Path(folder)


def load_transcoder(folder: str | os.PathLike, device: str | torch.device = "cpu") -> Any:
    """Load an sae-lens ``Transcoder`` saved by ``save_transcoder`` (or by sae-lens) onto ``device``
    (pass the model's, ``model.cfg.device``)."""
    from sae_lens import Transcoder

    folder = Path(folder)
    if not (folder / "cfg.json").is_file():
        raise FileNotFoundError(
            f"{folder} holds no cfg.json; save the transcoder with save_transcoder(...) first"
        )
    return Transcoder.load_from_disk(folder, device=str(device)).eval()


def fingerprint(windows: Sequence[torch.Tensor]) -> str:
    """A short hash of token windows, so cached transcoders are re-used only for the same data."""
    digest = hashlib.sha256()
    for w in windows:
        digest.update(w.to(torch.int32).cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class L1Sweep:
    """An L1 sweep for ``train_all_layers``: each ``grid`` value trained on ``layers`` and measured on
    ``ev``; the one kept is ``choose_l1``'s under ``max_l0``."""

    grid: Sequence[float]
    layers: Sequence[int]
    max_l0: float
    ev: EvalSet


@dataclass
class TrainedLayers:
    """What ``train_all_layers`` returns: a transcoder per layer, the l1 they were trained with, and
    the sweep's table when one chose it."""

    transcoders: dict[int, Any]
    l1: float
    sweep: pd.DataFrame | None = None


def train_all_layers(
    model: HookedTransformer,
    layers: Sequence[int],
    token_batches: Iterable[torch.Tensor],
    folder: str | os.PathLike,
    settings: Mapping[str, Any],
    batch_tokens: int,
    epochs: int = 1,
    sweep: L1Sweep | None = None,
) -> TrainedLayers:
    """One transcoder per layer, saved under ``folder/L<layer>`` (sae-lens format) and loaded on the
    model's device. One forward pass collects every layer's activations in RAM (float16, sinks
    excluded); then every transcoder trains for ``epochs`` globally shuffled passes over them.

    ``settings`` holds TranscoderTraining fields (d_sae, l1, lr, seed, resample_until, ...) and
    anything else that identifies the run (model, data fingerprint). With ``sweep``, ``settings``
    holds no l1: every grid value is first trained on the sweep's layers from the same activations
    and batches, the chosen one's transcoders are kept as those layers' (they are exactly what the
    main run would train) and the other layers train with it. A folder whose manifest records the
    same request is loaded instead of retrained (the sweep's table is kept in ``sweep.csv``).
    """
    folder = Path(folder)
    device = model.cfg.device
    request = {
        "layers": list(layers),
        "trainer_version": TRAINER_VERSION,
        "batch_tokens": batch_tokens,
        "epochs": epochs,
        **settings,
    }
    if sweep is not None:
        if "l1" in settings or not set(sweep.layers) <= set(layers):
            raise ValueError("with a sweep, settings hold no 'l1' and the sweep's layers are among the layers trained")
        request["sweep"] = {"grid": list(sweep.grid), "layers": list(sweep.layers), "max_l0": sweep.max_l0,
                            "eval": fingerprint([sweep.ev.tokens])}
    path = folder / MANIFEST
    if path.is_file() and (saved := json.loads(path.read_text())).get("request") == json.loads(json.dumps(request)):
        table = pd.read_csv(folder / "sweep.csv") if sweep is not None else None
        return TrainedLayers({layer: load_transcoder(folder / f"L{layer}", device) for layer in layers}, saved["l1"], table)
    acts = collect_activations(model, layers, token_batches)
    n_tokens = len(acts[layers[0]][0])
    n_steps = steps_per_run(n_tokens, batch_tokens, epochs)
    seed = int(settings.get("seed", 0))
    done: dict[int, SparseTranscoder] = {}
    table = None
    if sweep is None:
        l1 = float(settings["l1"])
    else:
        table, tried = sweep_l1(model, {layer: acts[layer] for layer in sweep.layers}, sweep.ev, sweep.grid,
                                settings, batch_tokens, epochs)
        l1 = choose_l1(table, sweep.max_l0)
        done = {layer: tried[(layer, l1)].transcoder for layer in sweep.layers}
    rest = [layer for layer in layers if layer not in done]
    configs = {layer: (layer, training_config(settings, l1=l1, checkpoint_dir=str(folder / f"ckpt{layer}"))) for layer in rest}
    if rest:
        trainers = train_transcoders(
            epoch_batches({layer: acts[layer] for layer in rest}, batch_tokens, epochs, seed=seed),
            configs, model.cfg.d_model, model.cfg.model_name, n_steps, "training all layers", init_data=acts, device=device,
        )
        done |= {layer: trainer.transcoder for layer, trainer in trainers.items()}
    out = {}
    for layer in layers:
        save_transcoder(done[layer], layer, folder / f"L{layer}", model.cfg.model_name)
        shutil.rmtree(folder / f"ckpt{layer}", ignore_errors=True)
        out[layer] = load_transcoder(folder / f"L{layer}", device)
    if table is not None:
        table.to_csv(folder / "sweep.csv", index=False)
    path.write_text(json.dumps({"request": request, "l1": l1}))
    return TrainedLayers(out, l1, table)


def sae_transformer(model: HookedTransformer) -> Any:
    """A ``HookedSAETransformer`` with ``model``'s config, tokenizer and weights (for ``add_sae``)."""
    from sae_lens import HookedSAETransformer

    wrapped = HookedSAETransformer(model.cfg, tokenizer=model.tokenizer)
    wrapped.load_state_dict(model.state_dict(), strict=False)
    return install_fast_blocks(wrapped).eval()


# ----------------------------------------------------------------------------- the SAE baseline


def token_dataset(windows: torch.Tensor) -> Any:
    """A pre-tokenised ``datasets.Dataset`` (column ``input_ids``) of [n, ctx] token windows."""
    import datasets

    return datasets.Dataset.from_dict({"input_ids": windows.long().tolist()})


def train_sae_with_sae_lens(
    model: HookedTransformer,
    layer: int,
    windows: torch.Tensor,
    d_sae: int,
    l1: float,
    training_tokens: int,
    out_dir: str | os.PathLike,
    cached_activations: str | os.PathLike | None = None,
    batch_tokens: int = 1024,
    lr: float = 1e-3,
    warmup_steps: int = 50,
    decay_steps: int = 0,
    seed: int = 0,
) -> Any:
    """Train a standard SAE on ``blocks.<layer>.hook_mlp_out`` with sae-lens's own runner.

    ``LanguageModelSAETrainingRunner`` gets ``override_model=model`` and ``override_dataset`` = the
    token ``windows``; with ``cached_activations`` (a ``cache_activations`` folder) it reads those
    very activations instead of re-running the model for every L1 value. The learning rate warms up
    over ``warmup_steps`` and falls linearly to 0 over the last ``decay_steps``. No wandb, no download.
    Activations are rescaled to norm sqrt(d_model) during training (folded back at the end), so L1
    values are comparable across layers. Attention sinks are skipped when reading the cache (marked
    ``SINK_ID``). Returns the trained inference ``SAE``.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sae_lens import (
        SAE,
        LanguageModelSAERunnerConfig,
        LanguageModelSAETrainingRunner,
        LoggingConfig,
        StandardTrainingSAEConfig,
    )

    ctx = windows.shape[1]
    out_dir = Path(out_dir)
    hook = mlp_hooks(layer)[1]
    cfg = LanguageModelSAERunnerConfig(
        sae=StandardTrainingSAEConfig(
            d_in=model.cfg.d_model,
            d_sae=d_sae,
            l1_coefficient=l1,
            normalize_activations="expected_average_only_in",
        ),
        model_name=model.cfg.model_name,
        hook_name=hook,
        dataset_path="",
        is_dataset_tokenized=True,
        streaming=False,
        context_size=ctx,
        use_cached_activations=cached_activations is not None,
        cached_activations_path=None if cached_activations is None else str(cached_activations),
        training_tokens=training_tokens,
        train_batch_size_tokens=batch_tokens,
        store_batch_size_prompts=max(1, batch_tokens // ctx),
        n_batches_in_buffer=max(2, 8 * batch_tokens // ctx),
        n_batches_for_norm_estimate=4,
        prepend_bos=False,
        sequence_separator_token=None,
        exclude_special_tokens=[SINK_ID],  # the cache marks sink positions with SINK_ID
        lr=lr,
        lr_warm_up_steps=warmup_steps,
        lr_decay_steps=decay_steps,
        device=str(model.cfg.device),
        seed=seed,
        logger=LoggingConfig(log_to_wandb=False),
        checkpoint_path=None,
        n_checkpoints=0,
        output_path=str(out_dir),
        verbose=False,
    )
    torch.manual_seed(seed)
    runner = LanguageModelSAETrainingRunner(
        cfg, override_dataset=token_dataset(windows), override_model=model
    )
    with torch.enable_grad():
        runner.run()
    return SAE.load_from_disk(out_dir).eval()


# ----------------------------------------------------------------------------- metrics


@dataclass
class EvalSet:
    """Validation tokens and what the model computes on them (kept in RAM; small).

    ``resid_pre`` / ``x`` / ``y`` hold each layer's input residual stream [batch, pos, d] and the
    MLP's normalised input and write [n_tokens, d] (every token, in ``tokens``' flattened order);
    ``keep`` [n_tokens] is False at attention sinks, which every metric leaves out.
    ``clean_probs`` [batch, pos - 1, vocab] (float32) are the unmodified model's next-token
    probabilities and ``clean_neg_entropy`` [batch, pos - 1] their sum of p log p, for KL;
    ``clean_ce`` is its mean next-token cross-entropy.
    """

    tokens: torch.Tensor
    sinks: torch.Tensor  # [batch, pos]
    resid_pre: dict[int, torch.Tensor]
    x: dict[int, torch.Tensor]
    y: dict[int, torch.Tensor]
    clean_probs: torch.Tensor
    clean_neg_entropy: torch.Tensor
    clean_ce: float
    zero_ablated: dict[int, dict[str, float]] = field(default_factory=dict, repr=False)  # ce_baselines' runs, per layer

    @property
    def keep(self) -> torch.Tensor:
        """[n_tokens] True where a token is not an attention sink."""
        return ~self.sinks.reshape(-1)


@torch.no_grad()
def eval_set(
    model: HookedTransformer,
    layers: Sequence[int],
    token_batches: Iterable[torch.Tensor],
) -> EvalSet:
    """Run validation batches once and keep, for each of ``layers``, its residual input and its
    MLP's input and output, plus the clean next-token probabilities and their sum of p log p."""
    names = [n for layer in layers for n in (f"blocks.{layer}.hook_resid_pre", *mlp_hooks(layer))]
    sink_name = sink_hook(model)
    parts: dict[str, list[torch.Tensor]] = {n: [] for n in ["tokens", "sinks", "probs", "neg_entropy", *names]}
    total_ce, count = 0.0, 0
    for tokens in token_batches:
        tokens = tokens.to(model.cfg.device)
        logits, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names or n == sink_name)
        logprobs = logits[:, :-1].float().log_softmax(-1)
        total_ce -= float(logprobs.gather(-1, tokens[:, 1:, None]).sum())
        count += tokens[:, 1:].numel()
        probs = logprobs.exp()
        parts["tokens"].append(tokens)
        parts["sinks"].append(model_sinks(model, tokens, cache[sink_name]))
        parts["probs"].append(probs)
        parts["neg_entropy"].append(torch.einsum("btv,btv->bt", probs, logprobs))
        for n in names:
            parts[n].append(cache[n])
    cat = {n: torch.cat(v) for n, v in parts.items()}
    d = model.cfg.d_model
    return EvalSet(
        tokens=cat["tokens"],
        sinks=cat["sinks"],
        resid_pre={layer: cat[f"blocks.{layer}.hook_resid_pre"] for layer in layers},
        x={layer: cat[mlp_hooks(layer)[0]].reshape(-1, d) for layer in layers},
        y={layer: cat[mlp_hooks(layer)[1]].reshape(-1, d) for layer in layers},
        clean_probs=cat["probs"],
        clean_neg_entropy=cat["neg_entropy"],
        clean_ce=total_ce / count,
    )


def replace_mlps(replacements: Mapping[int, Replacement], sinks: torch.Tensor | None = None) -> FwdHooks:
    """Hooks replacing MLP ``layer``'s write by ``fn(its normalised input, its real write)`` for
    each (layer, fn); at ``sinks`` ([batch, pos] True) the real write stays."""
    hooks: FwdHooks = []
    for layer, fn in replacements.items():
        seen: dict[str, torch.Tensor] = {}
        hook_in, hook_out = mlp_hooks(layer)

        def remember(act: torch.Tensor, hook, seen=seen) -> None:
            seen["input"] = act

        def replace(act: torch.Tensor, hook, seen=seen, fn=fn) -> torch.Tensor:
            new = fn(seen.pop("input"), act).to(act.dtype)
            if sinks is None:
                return new
            return torch.where(sinks[..., None].to(act.device), act, new)

        hooks += [(hook_in, remember), (hook_out, replace)]
    return hooks


def transcoder_fn(transcoder: Any, keep: torch.Tensor | None = None) -> Replacement:
    """A replacement predicting the MLP write with ``transcoder``; with ``keep`` (a [d_sae] bool
    mask) only those features stay active (the output bias is kept)."""

    def predict(x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        acts = transcoder.encode(x)
        return transcoder.decode(acts if keep is None else acts * keep.to(acts.device))

    return predict


def sae_fn(sae: Any) -> Replacement:
    """A replacement by an SAE's reconstruction of the real MLP write."""
    return lambda x, real: sae.decode(sae.encode(real))


def zero_fn(x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """A replacement by zeros (zero-ablation)."""
    return torch.zeros_like(real)


def splice_all(
    transcoders: Mapping[int, Any],
    keep: Mapping[int, torch.Tensor] | None = None,
    sinks: torch.Tensor | None = None,
) -> FwdHooks:
    """Hooks replacing every MLP that has a transcoder by its prediction (the real write stays at
    ``sinks``); with ``keep`` (layer -> feature ids), only those features stay active and the rest
    are zeroed (output bias kept)."""
    fns = {}
    for layer, tc in transcoders.items():
        mask = None
        if keep is not None:
            mask = torch.zeros(tc.W_enc.shape[1], dtype=torch.bool)
            mask[keep.get(layer, torch.empty(0, dtype=torch.long))] = True
        fns[layer] = transcoder_fn(tc, mask)
    return replace_mlps(fns, sinks)


@torch.no_grad()
def replaced_losses(
    model: HookedTransformer,
    ev: EvalSet,
    replacements: Mapping[int, Replacement] | None = None,
    batch_size: int = 16,
) -> dict[str, float]:
    """Mean next-token CE and KL(clean || replaced) per token on ``ev`` with MLP writes replaced
    (at non-sink positions), running only the layers from the first replaced one (from its cached
    residual stream)."""
    replacements = replacements or {}
    start = min(replacements, default=min(ev.resid_pre))
    total_ce, total_kl, count = 0.0, 0.0, 0
    for lo in range(0, len(ev.tokens), batch_size):
        tokens = ev.tokens[lo : lo + batch_size]
        hooks = replace_mlps(replacements, ev.sinks[lo : lo + batch_size])
        logits = model.run_with_hooks(
            ev.resid_pre[start][lo : lo + batch_size], start_at_layer=start, fwd_hooks=hooks
        )
        logprobs = logits[:, :-1].float().log_softmax(-1)
        total_ce += float(
            -logprobs.gather(-1, tokens[:, 1:, None].to(logprobs.device)).sum()
        )
        # KL(p || q) = sum p log p - sum p log q, one dot product per token
        cross = torch.einsum("btv,btv->bt", ev.clean_probs[lo : lo + batch_size].to(logprobs.device), logprobs)
        total_kl += float((ev.clean_neg_entropy[lo : lo + batch_size].to(logprobs.device) - cross).double().sum())
        count += tokens[:, 1:].numel()
    return {"ce": total_ce / count, "kl": total_kl / count}


def replacement_hooks(dictionary: Any, layer: int, kind: str, sinks: torch.Tensor | None = None) -> FwdHooks:
    """Hooks replacing MLP ``layer``'s write: by transcoder(MLP input) or by SAE(MLP output)."""
    return replace_mlps({layer: dictionary_fn(dictionary, kind)}, sinks)


def dictionary_fn(dictionary: Any, kind: str) -> Replacement:
    """The replacement a dictionary of ``kind`` ('transcoder' or 'sae') makes."""
    if kind == "transcoder":
        return transcoder_fn(dictionary)
    if kind == "sae":
        return sae_fn(dictionary)
    raise ValueError(f"kind must be 'transcoder' or 'sae', got {kind!r}")


def dictionary_input(ev: EvalSet, layer: int, kind: str) -> torch.Tensor:
    """What a dictionary of ``kind`` reads: the MLP input (transcoder) or the MLP output (SAE)."""
    return ev.x[layer] if kind == "transcoder" else ev.y[layer]


@torch.no_grad()
def feature_acts(dictionary: Any, inputs: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Feature activations [n_tokens, d_sae] of any dictionary with ``encode``."""
    return torch.cat(
        [dictionary.encode(inputs[i : i + batch_size]) for i in range(0, len(inputs), batch_size)]
    )


def fvu(y: torch.Tensor, recon: torch.Tensor) -> float:
    """Fraction of the variance of ``y`` [n, d] that ``recon`` leaves unexplained."""
    return float((y - recon).pow(2).sum() / (y - y.mean(0)).pow(2).sum())


@torch.no_grad()
def dictionary_metrics(
    model: HookedTransformer,
    ev: EvalSet,
    layer: int,
    dictionary: Any,
    kind: str,
    baselines: Mapping[str, float],
) -> dict[str, float]:
    """On non-sink tokens: L0, FVU, spliced CE and KL, CE increase over clean (nats), fraction of CE
    recovered vs zero-ablation, dead and dense fractions. ``baselines``: 'clean' and 'zero' CE."""
    keep = ev.keep
    acts = feature_acts(dictionary, dictionary_input(ev, layer, kind))[keep]
    losses = replaced_losses(model, ev, {layer: dictionary_fn(dictionary, kind)})
    freq = (acts > 0).float().mean(0)
    return {
        "l0": float((acts > 0).sum(-1).float().mean()),
        "fvu": fvu(ev.y[layer][keep], dictionary.decode(acts)),
        "ce_loss": losses["ce"],
        "delta_ce": losses["ce"] - baselines["clean"],
        "kl": losses["kl"],
        "frac_recovered": fraction_recovered(losses["ce"], baselines["clean"], baselines["zero"]),
        "dead_frac": float((freq == 0).float().mean()),
        "dense_frac": float((freq > DENSE_THRESHOLD).float().mean()),
    }


def ce_baselines(model: HookedTransformer, ev: EvalSet, layer: int) -> dict[str, float]:
    """Clean CE and CE with MLP ``layer`` zero-ablated at non-sink positions (and that KL); the
    zero-ablated run of ``model`` (the one ``ev`` was made with) is kept on ``ev`` for later calls."""
    if layer not in ev.zero_ablated:
        ev.zero_ablated[layer] = replaced_losses(model, ev, {layer: zero_fn})
    zero = ev.zero_ablated[layer]
    return {"clean": ev.clean_ce, "zero": zero["ce"], "zero_kl": zero["kl"]}


@torch.no_grad()
def layer_quality(
    model: HookedTransformer, transcoders: Mapping[int, Any], ev: EvalSet
) -> tuple[pd.DataFrame, dict]:
    """Per layer, on non-sink tokens: L0, FVU, dead fraction, CE increase and KL with that one MLP
    spliced, the same for zero-ablating it, and the fraction recovered; plus the totals for the
    clean model, every transcoder spliced at once and all those MLPs zero-ablated."""
    rows = []
    for layer, tc in tqdm(transcoders.items(), desc="per-layer quality"):
        base = ce_baselines(model, ev, layer)
        rows.append(
            {
                "layer": layer,
                **dictionary_metrics(model, ev, layer, tc, "transcoder", base),
                "zero_delta_ce": base["zero"] - base["clean"],
                "zero_kl": base["zero_kl"],
            }
        )
    clean = ev.clean_ce
    spliced = replaced_losses(model, ev, {layer: transcoder_fn(tc) for layer, tc in transcoders.items()})
    zeroed = replaced_losses(model, ev, dict.fromkeys(transcoders, zero_fn))
    totals = {
        "clean": clean,
        "all_spliced": spliced["ce"],
        "all_spliced_kl": spliced["kl"],
        "all_zero_ablated": zeroed["ce"],
        "all_zero_ablated_kl": zeroed["kl"],
        "all_spliced_recovered": fraction_recovered(spliced["ce"], clean, zeroed["ce"]),
    }
    return pd.DataFrame(rows), totals


def fraction_recovered(ce: float, clean_ce: float, zero_ce: float) -> float:
    """(zero-ablation CE - CE) / (zero-ablation CE - clean CE): 1 = as good as the MLP, 0 = as bad as no MLP."""
    gap = zero_ce - clean_ce
    return float("nan") if abs(gap) < 1e-12 else (zero_ce - ce) / gap


def pareto_points(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of a sweep table (columns kind, l0, ce_loss) not beaten on both L0 and CE by a row of
    the same kind."""
    keep = []
    for _, row in table.iterrows():
        same = table[table.kind == row.kind]
        beaten = ((same.l0 <= row.l0) & (same.ce_loss < row.ce_loss)) | (
            (same.l0 < row.l0) & (same.ce_loss <= row.ce_loss)
        )
        keep.append(not beaten.any())
    return table[keep]


def _inside_sae_range(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    tc = table[table.kind == "transcoder"].sort_values("l0")
    sae = table[table.kind == "sae"].sort_values("l0")
    return tc[(tc.l0 >= sae.l0.min()) & (tc.l0 <= sae.l0.max())], sae


def matched_l0_count(table: pd.DataFrame) -> int:
    """How many transcoders of a sweep table lie inside the SAEs' L0 range (the n of the matched-L0 gap)."""
    inside, sae = _inside_sae_range(table)
    return len(inside) if len(sae) >= 2 else 0


def matched_l0_gap(table: pd.DataFrame) -> float:
    """Mean CE(transcoder) - CE(SAE), interpolating the SAE curve (log L0) at the transcoders' L0s
    inside the SAEs' L0 range; NaN when the ranges do not overlap."""
    inside, sae = _inside_sae_range(table)
    if len(sae) < 2 or inside.empty:
        return float("nan")
    sae_ce = np.interp(np.log(inside.l0), np.log(sae.l0), sae.ce_loss)
    return float(np.mean(inside.ce_loss.to_numpy() - sae_ce))


# ----------------------------------------------------------------------------- interpretation


def live_features(acts: torch.Tensor, n: int, seed: int = 0, min_count: int = 3) -> list[int]:
    """``n`` random features active on at least ``min_count`` tokens of ``acts`` (fewer if there aren't)."""
    counts = (acts > 0).sum(0)
    live = torch.nonzero(counts >= min_count).flatten()
    order = torch.randperm(len(live), generator=torch.Generator().manual_seed(seed))
    return sorted(int(i) for i in live[order[:n]])


def top_contexts(
    model: HookedTransformer,
    tokens: torch.Tensor,
    acts: torch.Tensor,
    k: int = 8,
    left: int = 12,
    right: int = 3,
) -> pd.DataFrame:
    """The ``k`` tokens where a feature fires most: activation, token and its context, the token
    marked with [[ ]]. ``acts`` is the feature's activation per token ([n_tokens], in ``tokens``'
    flattened order)."""
    ctx = tokens.shape[1]
    n_live = int((acts > 0).sum())
    top = torch.topk(acts, min(k, n_live))
    rows = []
    for value, flat in zip(top.values.tolist(), top.indices.tolist(), strict=True):
        b, p = divmod(flat, ctx)
        before = model.to_string(tokens[b, max(p - left, 0) : p]) if p > 0 else ""
        token = model.to_string(tokens[b, p : p + 1])
        after = model.to_string(tokens[b, p + 1 : p + 1 + right]) if p + 1 < ctx else ""
        text = before + HIGHLIGHT[0] + token + HIGHLIGHT[1] + after
        rows.append({"activation": value, "token": token, "context": text.replace("\n", "⏎")})
    return pd.DataFrame(rows, columns=["activation", "token", "context"])


def rms_embeddings(model: HookedTransformer) -> torch.Tensor:
    """Every token embedding [d_vocab, d_model] scaled to unit RMS, as an MLP's RMS norm sees a token
    read straight from the embedding (the norm's weight is folded into the model)."""
    return model.W_E / model.W_E.pow(2).mean(-1, keepdim=True).sqrt()


def de_embedding(
    model: HookedTransformer, transcoder: Any, feature: int, k: int = 10
) -> pd.DataFrame:
    """Input tokens that drive a transcoder feature directly: each embedding, scaled to unit RMS
    (``rms_embeddings``), times the feature's encoder column."""
    emb = rms_embeddings(model)
    scores = emb @ transcoder.W_enc[:, feature].to(emb)
    return _token_table(model, scores, k, "de-embedding score")


def logit_effect(
    model: HookedTransformer, dictionary: Any, feature: int, k: int = 10
) -> pd.DataFrame:
    """Tokens whose logits the feature's decoder row pushes up most (W_dec[f] @ W_U; the final
    norm's scale is treated as a constant)."""
    return _token_table(
        model, dictionary.W_dec[feature].to(model.W_U) @ model.W_U, k, "logit effect"
    )


def _token_table(model: HookedTransformer, scores: torch.Tensor, k: int, name: str) -> pd.DataFrame:
    top = torch.topk(scores.detach(), k)
    return pd.DataFrame(
        {"token": [model.to_string(int(i)) for i in top.indices], name: top.values.tolist()}
    )


def token_consistency(contexts: pd.DataFrame) -> float:
    """An automatic stand-in for a human rating: the share of a feature's top contexts whose
    highlighted token is its most common one (1 = a single-token feature; not a judgement of
    meaning)."""
    if contexts.empty:
        return float("nan")
    return float(contexts.token.str.strip().str.lower().value_counts().iloc[0] / len(contexts))


def blind_cards(
    contexts: Mapping[str, Mapping[int, pd.DataFrame]], seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Shuffle every (dictionary, feature)'s contexts into anonymous cards for a blind rating.

    ``contexts`` maps a dictionary name to {feature: top_contexts table}. Returns ``cards`` (card
    id and the contexts as text, nothing else) and the ``key`` (card -> dictionary, feature) to
    keep hidden until the ratings are in.
    """
    items = [
        (name, feature, table)
        for name, feats in contexts.items()
        for feature, table in feats.items()
    ]
    order = np.random.default_rng(seed).permutation(len(items))
    cards, key = [], []
    for card, i in enumerate(order):
        name, feature, table = items[i]
        cards.append({"card": card, "contexts": "\n".join(table.context)})
        key.append({"card": card, "dictionary": name, "feature": feature})
    return pd.DataFrame(cards), pd.DataFrame(key)


def unblind(ratings: Mapping[int, float], key: pd.DataFrame) -> pd.DataFrame:
    """Mean and count of the ratings per dictionary, once every card has been rated."""
    missing = sorted(set(key.card) - set(ratings))
    if missing:
        raise ValueError(f"cards {missing} have no rating yet; rate every card before unblinding")
    rated = key.assign(rating=key.card.map(ratings))
    return rated.groupby("dictionary").rating.agg(["mean", "count"]).reset_index()


def rating_difference(
    ratings: Mapping[int, float], key: pd.DataFrame, first: str, second: str, n_perm: int = 2000, seed: int = 0
) -> dict[str, float]:
    """Mean rating of dictionary ``first`` minus ``second`` over their cards, with a two-sided
    permutation p-value (dictionary labels shuffled across the cards) and n (cards rated)."""
    from utils.stats import permutation_p_value

    rated = key[key.dictionary.isin([first, second])].assign(rating=key.card.map(ratings)).dropna()
    values, is_first = rated.rating.to_numpy(float), (rated.dictionary == first).to_numpy()
    if is_first.all() or not is_first.any():
        return {"difference": float("nan"), "p_value": float("nan"), "n": len(rated)}

    def diff(labels: np.ndarray) -> float:
        return float(values[labels].mean() - values[~labels].mean())

    rng = np.random.default_rng(seed)
    null = [abs(diff(rng.permutation(is_first))) for _ in range(n_perm)]
    observed = diff(is_first)
    return {"difference": observed, "p_value": permutation_p_value(abs(observed), null), "n": len(rated)}
