"""The activation store: the (MLP input, MLP write) pairs a transcoder is trained on.

Dunefsky et al. stream a corpus through the model and train each transcoder on the activations of its
MLP: input ``x``, the MLP's normalised input, and target ``y``, its write (``mlp_hooks``). Attention
sinks (``utils.transcoders.sinks``) are marked or dropped on the way.

* running the model, only up to the last layer needed (``stop_at_layer``) -> ``stream_activations``;
* in RAM, sinks dropped -> ``collect_activations``;
* on disk, once for every layer, as a float16 Arrow dataset that sae-lens's ``use_cached_activations``
  reads too (sinks marked ``SINK_ID``) -> ``cache_activations``; read back whole, sinks dropped
  (``load_activations``) or in chunks (``cached_chunks``);
* batches: globally shuffled epochs of a set held in RAM -> ``epoch_batches`` (``steps_per_run``
  counts them); a shuffling buffer over a stream of chunks -> ``shuffled``.

Every {layer: (x, y)} mapping holds ``Pair``s of [n_tokens, d_model] tensors (or [batch, pos, d_model]
straight from the model).

Public names: ``Pair``, ``SINK_ID``, ``stream_activations``, ``collect_activations``,
``cache_activations``, ``load_activations``, ``cached_chunks``, ``epoch_batches``, ``steps_per_run``,
``shuffled``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import datasets
import numpy as np
import torch
from datasets.arrow_writer import ArrowWriter
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from utils.outputs import replace_folder
from utils.transcoders.model import mlp_hooks
from utils.transcoders.sinks import model_sinks, sink_hook, sink_layer

__all__ = [
    "SINK_ID",
    "Pair",
    "cache_activations",
    "cached_chunks",
    "collect_activations",
    "epoch_batches",
    "load_activations",
    "shuffled",
    "steps_per_run",
    "stream_activations",
]

SINK_ID = -1  # how a cached ``token_ids`` column marks an attention-sink position (sae-lens skips it)
Pair = tuple[torch.Tensor, torch.Tensor]  # (MLP input, MLP write)


@torch.no_grad()
def stream_activations(
    model: HookedTransformer, layers: Sequence[int], token_batches: Iterable[torch.Tensor]
) -> Iterator[tuple[torch.Tensor, torch.Tensor, dict[int, Pair]]]:
    """For each token batch [batch, pos]: the tokens, their attention sinks (``model_sinks``,
    [batch, pos]) and {layer: (MLP input, MLP output)} as [batch, pos, d].

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


@contextlib.contextmanager
def _no_datasets_progress() -> Iterator[None]:
    """No ``datasets`` progress bars within the block (the previous setting restored after)."""
    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


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
    folder.parent.mkdir(parents=True, exist_ok=True)
    # a staging folder of its own: a second run writing the same cache never deletes this one's
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".building"))
    try:
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
        with _no_datasets_progress():  # the copy is quick; its bar would only be noise
            datasets.Dataset.from_file(str(arrow)).save_to_disk(str(staging / "dataset"))
        replace_folder(staging / "dataset", folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _open_cache(folder: str | os.PathLike, layers: Sequence[int]) -> datasets.Dataset:
    """``cache_activations``'s dataset (numpy format), checked to hold every layer asked for."""
    dataset = datasets.load_from_disk(str(folder)).with_format("numpy")
    missing = [n for layer in layers for n in mlp_hooks(layer) if n not in dataset.column_names]
    if missing:
        raise ValueError(
            f"{folder} holds no activations for {missing}; rebuild it with cache_activations(..., layers={list(layers)})"
        )
    return dataset


def load_activations(folder: str | os.PathLike, layers: Sequence[int]) -> dict[int, Pair]:
    """Every non-sink token's (MLP input, MLP output) per layer from ``cache_activations``'s folder,
    as float16 [n_tokens, d] tensors in RAM (tokens in the cache's order)."""
    dataset = _open_cache(folder, layers)
    keep = torch.from_numpy(np.asarray(dataset["token_ids"])).reshape(-1) != SINK_ID

    def column(name: str) -> torch.Tensor:
        values = torch.from_numpy(np.asarray(dataset[name]))
        return values.reshape(-1, values.shape[-1])[keep]

    return {layer: tuple(column(n) for n in mlp_hooks(layer)) for layer in layers}


def cached_chunks(
    folder: str | os.PathLike,
    layers: Sequence[int],
    epochs: int = 1,
    windows_per_chunk: int = 16,
    seed: int = 0,
) -> Iterator[dict[int, Pair]]:
    """Stream {layer: (x, y)} chunks ([windows, ctx, d], sinks included) back from
    ``cache_activations``'s folder, ``epochs`` times.

    The dataset is memory-mapped; chunks of windows are read in a fresh random order each epoch.
    """
    dataset = _open_cache(folder, layers)
    rng = np.random.default_rng(seed)
    starts = np.arange(0, len(dataset), windows_per_chunk)
    for _ in range(epochs):
        for start in rng.permutation(starts):
            rows = dataset[int(start) : int(start) + windows_per_chunk]
            yield {
                layer: tuple(torch.from_numpy(np.asarray(rows[n])) for n in mlp_hooks(layer))
                for layer in layers
            }


def epoch_batches(
    acts: Mapping[int, Pair], batch_tokens: int, epochs: int, seed: int = 0
) -> Iterator[dict[int, Pair]]:
    """Float32 batches {layer: (x, y)} of ``batch_tokens`` tokens ([batch_tokens, d] each), reshuffled
    over the whole set each epoch (every layer sees the same tokens; the last incomplete batch of an
    epoch is dropped)."""
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


def _flat(pairs: Mapping[int, Pair]) -> dict[int, Pair]:
    return {
        layer: (x.reshape(-1, x.shape[-1]).float(), y.reshape(-1, y.shape[-1]).float())
        for layer, (x, y) in pairs.items()
    }


def shuffled(
    chunks: Iterable[Mapping[int, Pair]], batch_tokens: int, buffer_tokens: int, seed: int = 0
) -> Iterator[dict[int, Pair]]:
    """Re-batch a stream of {layer: (x, y)} chunks ([..., d] each) into shuffled float32 batches of
    ``batch_tokens`` tokens ([batch_tokens, d]).

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
