"""Notebook 02's computations: transcoders (Dunefsky, Chlenski & Nanda 2024) and SAE baselines.

A transcoder is a wide ReLU MLP trained to imitate one MLP sublayer: it reads the MLP's normalised
input (``blocks.L.ln2.hook_normalized``; the norms' weights are folded into the model) and predicts
its write (``blocks.L.hook_mlp_out``) through a sparse layer of features.

* Activations: ``stream_activations`` runs the model only up to the last layer needed
  (``stop_at_layer``) and yields (input, target) pairs per layer; ``cache_activations`` writes them
  once to disk (float16, a memory-mapped Arrow dataset that sae-lens reads too); ``shuffled``
  mixes any stream of them in a bounded buffer.
* Training: ``SparseTranscoder`` + ``TranscoderTrainer`` (normalised MSE + L1, Adam with warm-up,
  unit-norm decoder rows, dead-feature resampling, checkpoints, NaN guard); ``train_transcoders``
  trains one per layer from one stream. ``train_sae_with_sae_lens`` trains the SAE baseline with
  sae-lens's own ``LanguageModelSAETrainingRunner``.
* Export: transcoders are saved and loaded as sae-lens ``Transcoder`` objects, so
  ``HookedSAETransformer.add_sae`` can splice them.
* Metrics and interpretation: L0, FVU, spliced CE loss and fraction recovered, dead/dense
  fractions, top-activating contexts, de-embeddings, logit effects, a blind-rating helper.
"""

from __future__ import annotations

import itertools
import math
import os
import shutil
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from utils.hooks import FwdHooks, splice, sublayer_input_hook
from utils.model_layouts import install_fast_blocks
from utils.outputs import replace_folder
from utils.sublayers import Sublayer

PRESETS = {
    # every size the notebook uses; `default` is sized for <= 15 min on 2 CPU cores
    "smoke": {
        "layer": 3,
        "ctx": 64,
        "n_train_tokens": 2_048,
        "n_eval_tokens": 256,
        "epochs": 1,
        "d_sae": 256,
        "batch_tokens": 256,
        "transcoder_l1": [1e-3, 4e-3],
        "sae_l1": [1.0, 4.0],
        "n_interpret": 2,
        "n_blind": 2,
        "top_k": 5,
    },
    "default": {
        "layer": 15,
        "ctx": 128,
        "n_train_tokens": 49_152,
        "n_eval_tokens": 4_096,
        "epochs": 3,
        "d_sae": 2_304,
        "batch_tokens": 512,
        "transcoder_l1": [1.5e-3, 3e-3, 6e-3],
        "sae_l1": [2.0, 4.0, 8.0],
        "n_interpret": 4,
        "n_blind": 6,
        "top_k": 8,
    },
    "paper": {
        "layer": 15,
        "ctx": 128,
        "n_train_tokens": 4_194_304,
        "n_eval_tokens": 65_536,
        "epochs": 1,
        "d_sae": 4_608,
        "batch_tokens": 4_096,
        "transcoder_l1": [1e-3, 3e-3, 9e-3, 2.7e-2],
        "sae_l1": [2.0, 4.0, 8.0, 16.0],
        "n_interpret": 8,
        "n_blind": 20,
        "top_k": 12,
    },
}
DENSE_THRESHOLD = 0.1  # a feature active on more than this fraction of tokens is "dense"
HIGHLIGHT = ("[[", "]]")  # how a context marks the token a feature fires on
CHECKPOINT_NAME = "last_good"
TRAINER_VERSION = 3  # bump when a change to the trainer changes what it learns, so trained caches are rebuilt
Pair = tuple[torch.Tensor, torch.Tensor]


def mlp_hooks(layer: int) -> tuple[str, str]:
    """The transcoder's input and target hooks for MLP ``layer``."""
    s = Sublayer(layer, "mlp")
    return sublayer_input_hook(s), s.out_hook


# ----------------------------------------------------------------------------- activations


@torch.no_grad()
def stream_activations(
    model: HookedTransformer, layers: Sequence[int], token_batches: Iterable[torch.Tensor]
) -> Iterator[tuple[torch.Tensor, dict[int, Pair]]]:
    """For each token batch, the tokens and {layer: (MLP input, MLP output)} as [batch, pos, d].

    The model runs only up to the last layer asked for (``stop_at_layer``).
    """
    if not layers or min(layers) < 0 or max(layers) >= model.cfg.n_layers:
        raise ValueError(
            f"layers must be a non-empty subset of 0..{model.cfg.n_layers - 1}, got {list(layers)}"
        )
    names = {name for layer in layers for name in mlp_hooks(layer)}
    for tokens in token_batches:
        _, cache = model.run_with_cache(
            tokens.to(model.cfg.device),
            names_filter=lambda n: n in names,
            stop_at_layer=max(layers) + 1,
        )
        yield tokens, {layer: tuple(cache[n] for n in mlp_hooks(layer)) for layer in layers}


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

    Columns: ``token_ids`` [ctx] and one [ctx, d_model] column per hook name, the layout sae-lens's
    ``use_cached_activations`` reads. Batches are written as they come; nothing is held in RAM.
    Returns the dataset folder (replaced atomically).
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
        for tokens, pairs in tqdm(stream, desc="caching activations", unit="batch"):
            columns = {"token_ids": tokens.int().cpu().numpy()}
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


def cached_tokens(folder: str | os.PathLike) -> torch.Tensor:
    """The token windows [n_windows, ctx] a cache was built from."""
    import datasets

    return torch.from_numpy(
        np.asarray(datasets.load_from_disk(str(folder)).with_format("numpy")["token_ids"])
    ).long()


# ----------------------------------------------------------------------------- the transcoder


class SparseTranscoder(nn.Module):
    """Dunefsky et al.'s transcoder: z = ReLU(W_enc (x - b_pre) + b_enc), y = W_dec z + b_dec.

    Decoder rows are kept at unit norm, so the L1 penalty on z is the norm-weighted penalty.
    """

    def __init__(self, d_in: int, d_sae: int, d_out: int, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
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
        """Feature activations [..., d_sae]."""
        return torch.relu((x - self.b_pre) @ self.W_enc + self.b_enc)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Predicted MLP output from feature activations."""
        return z @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted MLP output [..., d_out] from the MLP's normalised input."""
        return self.decode(self.encode(x))

    @torch.no_grad()
    def init_biases(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Set the pre-bias to the mean input and the output bias to the mean target."""
        self.b_pre.copy_(x.reshape(-1, x.shape[-1]).mean(0))
        self.b_dec.copy_(y.reshape(-1, y.shape[-1]).mean(0))

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
        """This transcoder as an sae-lens ``Transcoder`` (pre-bias folded into b_enc; exact)."""
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
            out.W_enc.copy_(self.W_enc)
            out.b_enc.copy_(self.b_enc - self.b_pre @ self.W_enc)
            out.W_dec.copy_(self.W_dec)
            out.b_dec.copy_(self.b_dec)
        return out.eval()


def transcoder_loss(
    pred: torch.Tensor, target: torch.Tensor, acts: torch.Tensor, l1: float
) -> dict[str, torch.Tensor]:
    """The paper's loss: MSE / mean squared target norm + ``l1`` x mean per-token sum of activations."""
    mse = (pred - target).pow(2).sum(-1).mean() / target.pow(2).sum(-1).mean().clamp_min(1e-12)
    sparsity = acts.sum(-1).mean()
    return {"loss": mse + l1 * sparsity, "nmse": mse, "l1": sparsity}


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the last good checkpoint."""


@dataclass
class TrainConfig:
    """Hyper-parameters of one transcoder's training (sizes come from the notebook's parameters)."""

    d_sae: int
    l1: float
    lr: float = 1e-3
    warmup_steps: int = 50
    adam_betas: tuple[float, float] = (0.9, 0.999)
    resample_every: int = 200  # steps between dead-feature checks (0: never resample)
    resample_pool_tokens: int = 2048  # recent training tokens that resampled features are drawn from
    checkpoint_every: int = 100  # steps between checkpoints (0: only at the end)
    checkpoint_dir: str | None = None
    seed: int = 0

    def __post_init__(self):
        if self.d_sae < 1 or self.l1 < 0 or self.lr <= 0:
            raise ValueError(
                f"need d_sae >= 1, l1 >= 0 and lr > 0, got d_sae={self.d_sae}, l1={self.l1}, lr={self.lr}"
            )


@dataclass
class TranscoderTrainer:
    """Trains one ``SparseTranscoder`` step by step; see ``train_transcoders`` for the loop."""

    cfg: TrainConfig
    layer: int
    d_in: int
    d_out: int
    model_name: str = ""
    transcoder: SparseTranscoder = field(init=False)
    history: list[dict] = field(default_factory=list)
    step_count: int = 0
    last_checkpoint: Path | None = None

    def __post_init__(self):
        self.transcoder = SparseTranscoder(self.d_in, self.cfg.d_sae, self.d_out, self.cfg.seed)
        self.optimizer = torch.optim.Adam(
            self.transcoder.parameters(), lr=self.cfg.lr, betas=self.cfg.adam_betas, foreach=True
        )
        warm = max(self.cfg.warmup_steps, 1)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min(1.0, (s + 1) / warm)
        )
        self.fired = torch.zeros(self.cfg.d_sae, dtype=torch.long)
        self.resampled = 0
        self.recent: deque[tuple[torch.Tensor, torch.Tensor]] = deque()  # the resampling pool

    def step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """One Adam step on a batch; raises TrainingDiverged (without stepping) on a non-finite loss."""
        tc = self.transcoder
        if self.step_count == 0:
            tc.init_biases(x, y)
        with torch.enable_grad():
            acts = tc.encode(x)
            pred = tc.decode(acts)
            losses = transcoder_loss(pred, y, acts, self.cfg.l1)
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
        if self.cfg.resample_every:
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

        Each dead feature gets the normalised error of a token drawn with probability ~ its squared
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
        picks = torch.multinomial(weights + 1e-12, len(dead), replacement=False, generator=g)
        alive = torch.ones(tc.d_sae, dtype=torch.bool)
        alive[dead] = False
        enc_norm = tc.W_enc[:, alive].norm(dim=0).mean() if alive.any() else torch.tensor(1.0)
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
    configs: Mapping[Any, tuple[int, TrainConfig]],
    d_model: int,
    model_name: str = "",
    total_steps: int | None = None,
    desc: str = "training transcoders",
) -> dict[Any, TranscoderTrainer]:
    """Train transcoders from one stream of {layer: (x, y)} batches (one pass feeds them all).

    ``configs`` maps a key to ``(layer, TrainConfig)``; several transcoders may share a layer (an
    L1 sweep) or each read its own (one transcoder per layer). Returns the trainers (``.transcoder``,
    ``.history``), each checkpointed at the end when it has a ``checkpoint_dir``.
    """
    trainers = {
        key: TranscoderTrainer(cfg, layer, d_model, d_model, model_name)
        for key, (layer, cfg) in configs.items()
    }
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


def save_transcoder(
    transcoder: SparseTranscoder, layer: int, folder: str | os.PathLike, model_name: str = ""
) -> Path:
    """Save as an sae-lens ``Transcoder`` folder (cfg.json + safetensors)."""
    transcoder.to_sae_lens(layer, model_name).save_model(folder)
    return Path(folder)


def load_transcoder(folder: str | os.PathLike) -> Any:
    """Load an sae-lens ``Transcoder`` saved by ``save_transcoder`` (or by sae-lens)."""
    from sae_lens import Transcoder

    folder = Path(folder)
    if not (folder / "cfg.json").is_file():
        raise FileNotFoundError(
            f"{folder} holds no cfg.json; save the transcoder with save_transcoder(...) first"
        )
    return Transcoder.load_from_disk(folder).eval()


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
    seed: int = 0,
) -> Any:
    """Train a standard SAE on ``blocks.<layer>.hook_mlp_out`` with sae-lens's own runner.

    ``LanguageModelSAETrainingRunner`` gets ``override_model=model`` and ``override_dataset`` = the
    token ``windows``; with ``cached_activations`` (a ``cache_activations`` folder) it reads those
    very activations instead of re-running the model for every L1 value. No wandb, no download.
    Activations are rescaled to norm sqrt(d_model) during training (folded back at the end), so L1
    values are comparable across layers. Returns the trained inference ``SAE``.
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
        lr=lr,
        lr_warm_up_steps=warmup_steps,
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
    """Validation tokens and what the model computes on them at one layer (kept in RAM; small)."""

    layer: int
    tokens: torch.Tensor  # [batch, pos]
    resid_pre: torch.Tensor  # [batch, pos, d_model], the layer's input residual stream
    x: torch.Tensor  # [n_tokens, d_model], the MLP's normalised input
    y: torch.Tensor  # [n_tokens, d_model], the MLP's write


@torch.no_grad()
def eval_set(
    model: HookedTransformer, layer: int, token_batches: Iterable[torch.Tensor]
) -> EvalSet:
    """Run validation batches up to ``layer`` and keep its residual input, MLP input and output."""
    names = [f"blocks.{layer}.hook_resid_pre", *mlp_hooks(layer)]
    parts: dict[str, list[torch.Tensor]] = {n: [] for n in ["tokens", *names]}
    for tokens in token_batches:
        _, cache = model.run_with_cache(
            tokens, names_filter=lambda n: n in names, stop_at_layer=layer + 1
        )
        parts["tokens"].append(tokens)
        for n in names:
            parts[n].append(cache[n])
    cat = {n: torch.cat(v) for n, v in parts.items()}
    d = model.cfg.d_model
    return EvalSet(
        layer,
        cat["tokens"],
        cat[names[0]],
        cat[names[1]].reshape(-1, d),
        cat[names[2]].reshape(-1, d),
    )


@torch.no_grad()
def ce_loss(
    model: HookedTransformer, ev: EvalSet, fwd_hooks: FwdHooks = (), batch_size: int = 16
) -> float:
    """Mean next-token cross-entropy on ``ev``, running only layers >= ev.layer (from the cached
    residual stream) with ``fwd_hooks`` applied."""
    total, count = 0.0, 0
    for start in range(0, len(ev.tokens), batch_size):
        tokens = ev.tokens[start : start + batch_size]
        logits = model.run_with_hooks(
            ev.resid_pre[start : start + batch_size],
            start_at_layer=ev.layer,
            fwd_hooks=list(fwd_hooks),
        )
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
            tokens[:, 1:].reshape(-1).to(logits.device),
            reduction="sum",
        )
        total += float(loss)
        count += tokens[:, 1:].numel()
    return total / count


def replacement_hooks(dictionary: Any, layer: int, kind: str) -> FwdHooks:
    """Hooks replacing MLP ``layer``'s write: by transcoder(MLP input) or by SAE(MLP output)."""
    if kind == "transcoder":
        return splice(Sublayer(layer, "mlp"), lambda x: dictionary.decode(dictionary.encode(x)))
    if kind == "sae":
        return [
            (
                mlp_hooks(layer)[1],
                lambda act, hook: dictionary.decode(dictionary.encode(act)).to(act.dtype),
            )
        ]
    raise ValueError(f"kind must be 'transcoder' or 'sae', got {kind!r}")


def dictionary_input(ev: EvalSet, kind: str) -> torch.Tensor:
    """What a dictionary of ``kind`` reads: the MLP input (transcoder) or the MLP output (SAE)."""
    return ev.x if kind == "transcoder" else ev.y


@torch.no_grad()
def feature_acts(dictionary: Any, inputs: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Feature activations [n_tokens, d_sae] of any dictionary with ``encode``."""
    return torch.cat(
        [dictionary.encode(inputs[i : i + batch_size]) for i in range(0, len(inputs), batch_size)]
    )


@torch.no_grad()
def dictionary_metrics(
    model: HookedTransformer,
    ev: EvalSet,
    dictionary: Any,
    kind: str,
    clean_ce: float,
    zero_ce: float,
) -> dict[str, float]:
    """L0, FVU, spliced CE loss, fraction of CE recovered vs zero-ablation, dead and dense fractions."""
    acts = feature_acts(dictionary, dictionary_input(ev, kind))
    recon = dictionary.decode(acts)
    fvu = float((ev.y - recon).pow(2).sum() / (ev.y - ev.y.mean(0)).pow(2).sum())
    ce = ce_loss(model, ev, replacement_hooks(dictionary, ev.layer, kind))
    freq = (acts > 0).float().mean(0)
    return {
        "l0": float((acts > 0).sum(-1).float().mean()),
        "fvu": fvu,
        "ce_loss": ce,
        "frac_recovered": fraction_recovered(ce, clean_ce, zero_ce),
        "dead_frac": float((freq == 0).float().mean()),
        "dense_frac": float((freq > DENSE_THRESHOLD).float().mean()),
    }


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


def matched_l0_gap(table: pd.DataFrame) -> float:
    """Mean CE(transcoder) - CE(SAE), interpolating the SAE curve (log L0) at the transcoders' L0s
    inside the SAEs' L0 range; NaN when the ranges do not overlap."""
    tc = table[table.kind == "transcoder"].sort_values("l0")
    sae = table[table.kind == "sae"].sort_values("l0")
    inside = tc[(tc.l0 >= sae.l0.min()) & (tc.l0 <= sae.l0.max())]
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


def de_embedding(
    model: HookedTransformer, transcoder: Any, feature: int, k: int = 10
) -> pd.DataFrame:
    """Input tokens that drive a transcoder feature directly: each embedding, scaled to unit RMS
    (as the MLP's RMS norm would, its weight being folded), times the feature's encoder column."""
    emb = model.W_E / model.W_E.pow(2).mean(-1, keepdim=True).sqrt()
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
