"""A transcoder for every layer, in one pass, cached on disk (notebook 03's harness).

Notebook 03 needs one transcoder per MLP layer, as Dunefsky et al.'s circuit analysis does. This module
trains them from one forward pass (``collect_activations``: every layer's activations in RAM, sinks
dropped) and one stream of batches feeding every trainer (``train_transcoders``), saves them in
sae-lens format with the request they answer and a checksum of every file (``utils.files``), and
loads them back instead of retraining when the request is the same (``train_all_layers``). A damaged
folder (a truncated transcoder, an unreadable manifest) is found on load and retrained, with a warning
naming the file; two processes asking at once train once. An optional L1 sweep on a few layers chooses the one
``l1`` every layer then trains with (``L1Sweep``, ``sweep_l1``, ``choose_l1``).

Settings are typed: ``LayerSettings`` holds ``TranscoderTraining``'s fields plus what identifies the
run's data, and rejects a field it does not know (naming the closest ones).

Public names: ``train_all_layers``, ``LayerSettings``, ``L1Sweep``, ``TrainedLayers``, ``sweep_l1``,
``choose_l1``, ``fingerprint``, ``REQUEST_FILE``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from transformer_lens import HookedTransformer

from utils.files import cached_folder
from utils.transcoders.activations import Pair, collect_activations, epoch_batches, steps_per_run
from utils.transcoders.metrics import EvalSet, ce_baselines, dictionary_metrics
from utils.transcoders.model import SparseTranscoder, load_transcoder, save_transcoder
from utils.transcoders.training import (
    TRAINER_VERSION,
    TranscoderTrainer,
    TranscoderTraining,
    reject_unknown_fields,
    train_transcoders,
)

__all__ = [
    "REQUEST_FILE",
    "L1Sweep",
    "LayerSettings",
    "TrainedLayers",
    "choose_l1",
    "fingerprint",
    "sweep_l1",
    "train_all_layers",
]

REQUEST_FILE = "request.json"  # the request a folder's transcoders answer (checksums: utils.files)


@reject_unknown_fields
@dataclass
class LayerSettings(TranscoderTraining):
    """What ``train_all_layers`` trains every layer with: ``TranscoderTraining``'s fields (``l1`` left
    None when an ``L1Sweep`` chooses it; ``checkpoint_dir`` is set per layer, so it stays None), plus
    what identifies the run's data, recorded in the manifest so that other data is not mistaken for it."""

    l1: float | None = None
    model: str = ""  # the model's name
    data: str = ""  # a fingerprint of the training windows (``fingerprint``)

    def __post_init__(self):
        if self.checkpoint_dir is not None:
            raise ValueError("train_all_layers sets each layer's checkpoint_dir; leave it None")
        self.training(l1=0.0 if self.l1 is None else self.l1)  # TranscoderTraining's checks

    def training(self, **fields: Any) -> TranscoderTraining:
        """One transcoder's ``TranscoderTraining``: these settings, with ``fields`` set on top."""
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(TranscoderTraining)}
        return TranscoderTraining(**shared | fields)


def fingerprint(windows: Sequence[torch.Tensor]) -> str:
    """A short hash of token windows, so cached transcoders are re-used only for the same data."""
    digest = hashlib.sha256()
    for w in windows:
        digest.update(w.to(torch.int32).cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


@torch.no_grad()
def sweep_l1(
    model: HookedTransformer,
    acts: Mapping[int, Pair],
    ev: EvalSet,
    l1s: Sequence[float],
    settings: LayerSettings,
    batch_tokens: int,
    epochs: int,
) -> tuple[pd.DataFrame, dict[tuple[int, float], TranscoderTrainer]]:
    """Train one transcoder per (layer in ``acts``, l1) from the same batches and measure each on
    ``ev`` (non-sink tokens): L0, FVU, ΔCE, KL, fraction recovered, dead fraction. Returns that table
    and the trainers, keyed by (layer, l1)."""
    configs = {(layer, l1): (layer, settings.training(l1=l1)) for layer in acts for l1 in l1s}
    n_tokens = len(next(iter(acts.values()))[0])
    trainers = train_transcoders(
        epoch_batches(acts, batch_tokens, epochs, seed=settings.seed),
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
    settings: LayerSettings | Mapping[str, Any],
    batch_tokens: int,
    epochs: int = 1,
    sweep: L1Sweep | None = None,
) -> TrainedLayers:
    """One transcoder per layer, saved under ``folder/L<layer>`` (sae-lens format) and loaded on the
    model's device. One forward pass collects every layer's activations in RAM (float16, sinks
    excluded); then every transcoder trains for ``epochs`` globally shuffled passes over them.

    ``settings``: a ``LayerSettings``, or a mapping of its fields (an unknown key raises a TypeError
    naming the closest fields). With ``sweep``, ``settings`` holds no l1: every grid value is first
    trained on the sweep's layers from the same activations and batches, the chosen one's transcoders
    are kept as those layers' (they are exactly what the main run would train) and the other layers
    train with it. A folder whose manifest records the same request is loaded instead of retrained
    (the sweep's table is kept in ``sweep.csv``).
    """
    if not isinstance(settings, LayerSettings):
        settings = LayerSettings(**settings)
    folder = Path(folder)
    device = model.cfg.device
    recorded = {k: v for k, v in dataclasses.asdict(settings).items() if k != "checkpoint_dir"}
    request = {
        "layers": list(layers),
        "trainer_version": TRAINER_VERSION,
        "batch_tokens": batch_tokens,
        "epochs": epochs,
        **recorded,
    }
    if sweep is not None:
        if settings.l1 is not None or not set(sweep.layers) <= set(layers):
            raise ValueError("with a sweep, settings hold no 'l1' and the sweep's layers are among the layers trained")
        request["sweep"] = {"grid": list(sweep.grid), "layers": list(sweep.layers), "max_l0": sweep.max_l0,
                            "eval": fingerprint([sweep.ev.tokens])}
    elif settings.l1 is None:
        raise ValueError("settings hold no 'l1': give one, or an L1Sweep to choose it")
    request = json.loads(json.dumps(request))  # as it reads back from the file

    def current(where: Path) -> bool:
        try:
            return json.loads((where / REQUEST_FILE).read_text()).get("request") == request
        except (OSError, ValueError, AttributeError):  # missing or damaged: the checksums will say which
            return True

    def load(where: Path) -> TrainedLayers:
        saved = json.loads((where / REQUEST_FILE).read_text())
        table = pd.read_csv(where / "sweep.csv") if sweep is not None else None
        loaded = {layer: load_transcoder(where / f"L{layer}", device) for layer in layers}
        return TrainedLayers(loaded, saved["l1"], table)

    def build(where: Path) -> TrainedLayers:
        l1, done, table = _train(model, layers, token_batches, settings, batch_tokens, epochs, sweep, folder)
        for layer in layers:
            save_transcoder(done[layer], layer, where / f"L{layer}", model.cfg.model_name)
        if table is not None:
            table.to_csv(where / "sweep.csv", index=False)
        (where / REQUEST_FILE).write_text(json.dumps({"request": request, "l1": l1}))
        return load(where)

    trained = cached_folder(folder, build, load, "a set of trained transcoders", current=current)
    for layer in layers:  # a finished run needs no checkpoints to resume from
        shutil.rmtree(_checkpoint_dir(folder, layer), ignore_errors=True)
    return trained


def _checkpoint_dir(folder: Path, layer: int) -> Path:
    """Where layer ``layer``'s trainer saves checkpoints: beside ``folder``, so an interrupted
    training resumes while ``folder`` itself only ever holds finished transcoders."""
    return folder.parent / f".{folder.name}.ckpt{layer}"


def _train(
    model: HookedTransformer,
    layers: Sequence[int],
    token_batches: Iterable[torch.Tensor],
    settings: LayerSettings,
    batch_tokens: int,
    epochs: int,
    sweep: L1Sweep | None,
    folder: Path,
) -> tuple[float, dict[int, SparseTranscoder], pd.DataFrame | None]:
    """``train_all_layers``' work: the l1 it used, a transcoder per layer and the sweep's table."""
    device = model.cfg.device
    acts = collect_activations(model, layers, token_batches)
    n_tokens = len(acts[layers[0]][0])
    n_steps = steps_per_run(n_tokens, batch_tokens, epochs)
    done: dict[int, SparseTranscoder] = {}
    table = None
    if sweep is None:
        l1 = float(settings.l1)
    else:
        table, tried = sweep_l1(model, {layer: acts[layer] for layer in sweep.layers}, sweep.ev, sweep.grid,
                                settings, batch_tokens, epochs)
        l1 = choose_l1(table, sweep.max_l0)
        done = {layer: tried[(layer, l1)].transcoder for layer in sweep.layers}
    rest = [layer for layer in layers if layer not in done]
    configs = {
        layer: (layer, settings.training(l1=l1, checkpoint_dir=str(_checkpoint_dir(folder, layer))))
        for layer in rest
    }
    if rest:
        trainers = train_transcoders(
            epoch_batches({layer: acts[layer] for layer in rest}, batch_tokens, epochs, seed=settings.seed),
            configs, model.cfg.d_model, model.cfg.model_name, n_steps, "training all layers", init_data=acts, device=device,
        )
        done |= {layer: trainer.transcoder for layer, trainer in trainers.items()}
    return l1, done, table
