"""Transcoders trained once at length and shipped in ``data/transcoders/`` (issue 29): streaming,
resumable training of one transcoder per layer, export in sae-lens format, and the checked loader.

Notebook 03 trains its transcoders on 24K tokens in a few minutes; here they train on the whole
human-written training split, once, by ``scripts/train_transcoders.py``, over several sessions:

* what a run trains, in one typed object written beside it -> ``StreamSettings`` (the trainer's
  hyper-parameters, the data's size and order, the batching, the seed);
* its data: the training split cut into ``ctx``-token windows (``run_windows``), served in chunks
  of ``windows_per_chunk`` windows in a seeded random order per epoch (``chunk_windows``);
* one forward pass per chunk, only up to the last layer needed (``stream_activations``), feeds
  every layer's ``TranscoderTrainer``: the chunk's non-sink tokens, shuffled by a generator seeded
  from (seed, chunk), in ``batches_per_chunk`` batches; nothing but one chunk's activations is held
  -> ``StreamingRun.train_chunk``;
* sessions of it, with a progress bar, saving every few chunks and stopping after a number of
  chunks or minutes -> ``train_streaming`` (the run folder: ``default_run_folder``, under the cache);
* its state (every trainer's weights, Adam state, schedule, step, dead-feature counts, resampling
  pool, the chunk cursor and torch's RNG) saved atomically in the run folder, from which
  ``StreamingRun.open(..., resume=True)`` continues bit for bit as if never interrupted;
* the export: each layer as an sae-lens ``Transcoder`` folder (``L<layer>/``, float16 weights),
  ``provenance.json`` (tokens, steps, settings, commit, machine, wall time per session) and a
  sha256 ``manifest.json``, refused above ``MAX_SHIPPED_BYTES`` -> ``export_shipped``;
* loading, checksums first, with an error naming the file and the command that rebuilds it ->
  ``load_shipped_transcoders`` (the same sae-lens ``Transcoder`` objects notebook 03 uses),
  ``shipped_provenance``;
* whether they can stand in for a notebook's own training (same model, text and layers) and the
  line that labels them as loaded, with their recipe in words -> ``shipped_unusable``, ``shipped_recipe``,
  ``shipped_summary``.

Public names: ``StreamSettings``, ``StreamingRun``, ``train_streaming``, ``default_run_folder``, ``settings_key``, ``run_windows``, ``chunk_indices``, ``chunk_windows``,
``export_shipped``, ``load_shipped_transcoders``, ``shipped_provenance``, ``rebuild_command``,
``shipped_unusable``, ``shipped_recipe``, ``shipped_summary``, ``ShippedTranscodersError``, ``SHIPPED``, ``SHIPPED_DIR``,
``TRAIN_SCRIPT``, ``MAX_SHIPPED_BYTES``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from utils import provenance
from utils.data import token_batches
from utils.files import (
    MANIFEST,
    CacheError,
    atomic_write,
    check_manifest,
    replace_folder,
    write_manifest,
    write_text_atomic,
)
from utils.paths import REPO_ROOT, cache_dir
from utils.transcoders.activations import stream_activations
from utils.transcoders.layers import fingerprint
from utils.transcoders.model import load_transcoder
from utils.transcoders.training import (
    TRAINER_VERSION,
    TranscoderTrainer,
    TranscoderTraining,
    reject_unknown_fields,
)

__all__ = [
    "MAX_SHIPPED_BYTES",
    "SHIPPED",
    "SHIPPED_DIR",
    "TRAIN_SCRIPT",
    "ShippedTranscodersError",
    "StreamSettings",
    "StreamingRun",
    "chunk_indices",
    "chunk_windows",
    "default_run_folder",
    "export_shipped",
    "load_shipped_transcoders",
    "rebuild_command",
    "run_windows",
    "settings_key",
    "shipped_provenance",
    "shipped_recipe",
    "shipped_summary",
    "shipped_unusable",
    "train_streaming",
]

SHIPPED = "data/transcoders"  # relative to the repository root
SHIPPED_DIR = REPO_ROOT / SHIPPED  # the same folder, wherever a notebook or script runs from
TRAIN_SCRIPT = "scripts/train_transcoders.py"
MAX_SHIPPED_BYTES = 64_000_000  # the cap on the shipped weights (64 MB)
SETTINGS_FILE, STATE_FILE, PROGRESS_FILE, PROVENANCE_FILE = "settings.json", "state.pt", "progress.jsonl", "provenance.json"
STATE_VERSION = 1
ACTIVATIONS = ("relu", "batchtopk")  # L1-ReLU (the paper's) or BatchTopK with k features per token


# ----------------------------------------------------------------------------- settings and data


@reject_unknown_fields
@dataclass(frozen=True)
class StreamSettings:
    """Everything a streaming run's result depends on (with the code's commit and the corpus).

    ``n_tokens`` tokens of ``source``'s train split (documents shuffled by ``seed``) are cut into
    ``ctx``-token windows and served ``epochs`` times, each epoch in a fresh seeded order, in chunks of
    ``windows_per_chunk`` windows (a last partial chunk is dropped); each chunk's non-sink tokens make
    ``batches_per_chunk`` optimiser steps of about ``batch_tokens`` tokens. Warm-up, final decay and
    the end of dead-feature resampling are fractions of the run's steps.
    """

    model: str = "smollm2-135m"
    source: str = "prose"
    layers: tuple[int, ...] = tuple(range(30))
    n_tokens: int = 1_695_744  # the whole prose train split (1,698,668 tokens) in whole 32-window chunks
    epochs: int = 1
    ctx: int = 128
    windows_per_chunk: int = 32
    batch_tokens: int = 512
    d_sae: int = 768
    activation: str = "relu"
    k: int | None = None  # with activation "batchtopk": features per token on average (then l1 must be 0)
    aux_k: int | None = None  # with "batchtopk": AuxK on features idle for dead_after steps (TranscoderTraining)
    aux_coef: float = 1 / 32
    dead_after: int = 25
    skip: bool = False  # a skip transcoder (an affine x W_skip beside the features; not the paper's)
    l1: float = 0.03  # chosen by the recipe probe (data/transcoders/README.md): at 0.05, 13-17% of layer 10's features were dead
    lr: float = 8e-3
    warmup_fraction: float = 0.05
    decay_fraction: float = 0.3
    resample_every: int = 25
    resample_until_fraction: float = 0.5
    resample_pool_tokens: int = 2048
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(int(layer) for layer in self.layers))
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r} is not implemented; SparseTranscoder has {ACTIVATIONS}")
        if (self.activation == "batchtopk") != (self.k is not None):
            raise ValueError(f"k (features per token) goes with activation 'batchtopk' and only with it; got "
                             f"activation={self.activation!r}, k={self.k}")
        if not self.layers or len(set(self.layers)) != len(self.layers) or self.epochs < 1:
            raise ValueError(f"need distinct layers and epochs >= 1, got layers={self.layers}, epochs={self.epochs}")
        if self.ctx < 2 or self.batch_tokens < 1 or self.windows_per_chunk < 1 or self.chunks_per_epoch < 1:
            raise ValueError(
                f"need ctx >= 2, batch_tokens >= 1 and n_tokens >= ctx x windows_per_chunk "
                f"({self.ctx * self.windows_per_chunk}), got n_tokens={self.n_tokens}"
            )
        for name in ("warmup_fraction", "resample_until_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        self.training()  # TranscoderTraining's own checks

    @property
    def n_windows(self) -> int:
        """Windows per epoch (the ones a chunk can hold)."""
        return self.chunks_per_epoch * self.windows_per_chunk

    @property
    def chunks_per_epoch(self) -> int:
        return self.n_tokens // self.ctx // self.windows_per_chunk

    @property
    def n_chunks(self) -> int:
        return self.chunks_per_epoch * self.epochs

    @property
    def batches_per_chunk(self) -> int:
        return max(1, self.windows_per_chunk * self.ctx // self.batch_tokens)

    @property
    def total_steps(self) -> int:
        return self.n_chunks * self.batches_per_chunk

    def training(self) -> TranscoderTraining:
        """Each layer's ``TranscoderTraining`` (no per-step checkpoints: the run saves its own state)."""
        steps = self.total_steps
        return TranscoderTraining(
            d_sae=self.d_sae, l1=self.l1, lr=self.lr, warmup_steps=max(round(steps * self.warmup_fraction), 1),
            decay_fraction=self.decay_fraction, resample_every=self.resample_every,
            resample_until=round(steps * self.resample_until_fraction),
            resample_pool_tokens=self.resample_pool_tokens, checkpoint_every=0, seed=self.seed, skip=self.skip,
            k=self.k, aux_k=self.aux_k, aux_coef=self.aux_coef, dead_after=self.dead_after,
        )

    @property
    def recipe(self) -> str:
        """The training recipe in words, as summaries and tables name it."""
        aux = f" and AuxK (k_aux {self.aux_k}, weight {self.aux_coef:g})" if self.aux_k is not None else ""
        sparsity = (f"BatchTopK k {self.k}{aux}, a JumpReLU threshold at inference" if self.activation == "batchtopk"
                    else f"L1-ReLU, l1 {self.l1:g}")
        return f"{sparsity}, d_sae {self.d_sae}" + (", skip path" if self.skip else "")

    def to_dict(self) -> dict[str, Any]:
        """As JSON reads it back (lists for tuples)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> StreamSettings:
        return cls(**fields)

    def replace(self, **changes: Any) -> StreamSettings:
        return dataclasses.replace(self, **changes)


def run_windows(model: HookedTransformer, settings: StreamSettings) -> torch.Tensor:
    """The run's training windows, int32 [n_windows, ctx]: the train split of ``settings.source``,
    documents shuffled by the seed (``utils.data.token_batches``)."""
    n = settings.n_windows * settings.ctx
    batches = token_batches(model, "train", n, settings.ctx, 64, source=settings.source, shuffle_seed=settings.seed)
    return torch.cat(list(batches)).to(torch.int32)


def chunk_indices(settings: StreamSettings, index: int) -> torch.Tensor:
    """Which windows chunk ``index`` holds [windows_per_chunk]: its epoch's seeded permutation, sliced."""
    epoch, within = divmod(index, settings.chunks_per_epoch)
    generator = torch.Generator().manual_seed(settings.seed * 1_000_003 + epoch)
    order = torch.randperm(settings.n_windows, generator=generator)
    return order[within * settings.windows_per_chunk : (within + 1) * settings.windows_per_chunk]


def chunk_windows(windows: torch.Tensor, settings: StreamSettings, index: int) -> torch.Tensor:
    """Chunk ``index`` [windows_per_chunk, ctx] of the run (``chunk_indices``' windows)."""
    return windows[chunk_indices(settings, index)].long()


# ----------------------------------------------------------------------------- the run


def _trainer_state(trainer: TranscoderTrainer) -> dict[str, Any]:
    until = trainer.cfg.resample_until
    pool_needed = trainer.cfg.resample_every and (until is None or trainer.step_count < until)
    return {
        "transcoder": trainer.transcoder.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "step_count": trainer.step_count,
        "fired": trainer.fired.clone(),
        "idle": trainer.idle.clone(),
        "resampled": trainer.resampled,
        "initialised": trainer.initialised,
        "recent": list(trainer.recent) if pool_needed else [],
    }


def _restore_trainer(trainer: TranscoderTrainer, state: dict[str, Any]) -> None:
    trainer.transcoder.load_state_dict(state["transcoder"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.scheduler.load_state_dict(state["scheduler"])
    trainer.step_count = state["step_count"]
    trainer.fired.copy_(state["fired"])
    if "idle" in state:  # states saved before AuxK existed lack the counters, which only AuxK reads
        trainer.idle.copy_(state["idle"])
    trainer.resampled = state["resampled"]
    trainer.initialised = state["initialised"]
    trainer.recent = deque(state["recent"])


class StreamingRun:
    """One streaming training run in ``folder``: a ``TranscoderTrainer`` per layer and a chunk cursor.

    Open it with ``StreamingRun.open``; ``train_chunk`` trains on the next chunk, ``save`` writes the
    state atomically, ``done`` says whether every chunk has been seen.
    """

    def __init__(self, model: HookedTransformer, settings: StreamSettings, windows: torch.Tensor, folder: str | os.PathLike):
        if windows.shape != (settings.n_windows, settings.ctx):
            raise ValueError(f"windows must be [{settings.n_windows}, {settings.ctx}], got {list(windows.shape)}")
        self.model, self.settings, self.windows, self.folder = model, settings, windows, Path(folder)
        self.fingerprint = fingerprint(windows)  # its rows, hashed in order
        d, cfg = model.cfg.d_model, settings.training()
        self.trainers = {
            layer: TranscoderTrainer(cfg, layer, d, d, settings.model, model.cfg.device, settings.total_steps)
            for layer in settings.layers
        }
        self.chunk = 0
        self.sessions: list[dict[str, Any]] = []
        self.started = time.perf_counter()

    @classmethod
    def open(cls, model: HookedTransformer, settings: StreamSettings, windows: torch.Tensor,
             folder: str | os.PathLike, resume: bool = False) -> StreamingRun:
        """A fresh run in ``folder`` (refused where a state is already saved, unless ``resume``), or,
        with ``resume``, the saved one continued (its settings and windows must be the same)."""
        run = cls(model, settings, windows, folder)
        state_path = run.folder / STATE_FILE
        if resume and state_path.is_file():
            run._restore(torch.load(state_path, weights_only=False))
        elif state_path.is_file():
            raise FileExistsError(f"{run.folder} already holds a run; continue it with --resume or choose another --run folder")
        run.folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run.folder / SETTINGS_FILE, json.dumps(settings.to_dict(), indent=1) + "\n")
        run.sessions.append({**machine(), "first_chunk": run.chunk, "wall_s": 0.0})
        return run

    def _restore(self, state: dict[str, Any]) -> None:
        saved = StreamSettings.from_dict(state["settings"])
        if saved != self.settings:
            diff = {k: (v, getattr(self.settings, k)) for k, v in dataclasses.asdict(saved).items()
                    if v != getattr(self.settings, k)}
            raise ValueError(f"{self.folder} was started with other settings (saved, asked): {diff}")
        if state.get("trainer_version") != TRAINER_VERSION:
            raise ValueError(f"{self.folder} was trained by trainer version {state.get('trainer_version')}, this code has "
                             f"{TRAINER_VERSION}: start a fresh run (another --run folder, or delete this one)")
        if state["windows"] != self.fingerprint:
            raise ValueError(f"{self.folder} was trained on other windows ({state['windows']}, now {self.fingerprint})")
        for layer, trainer in self.trainers.items():
            _restore_trainer(trainer, state["trainers"][layer])
        self.chunk = state["chunk"]
        self.sessions = state["sessions"]
        torch.set_rng_state(state["torch_rng"])

    @property
    def done(self) -> bool:
        return self.chunk >= self.settings.n_chunks

    @property
    def steps(self) -> int:
        return next(iter(self.trainers.values())).step_count

    @torch.no_grad()
    def train_chunk(self) -> dict[int, dict[str, float]]:
        """One forward pass over the next chunk, then ``batches_per_chunk`` steps per layer; returns
        each layer's mean loss, nmse, L0 and last dead fraction over the chunk (also appended to
        ``progress.jsonl``)."""
        tokens = chunk_windows(self.windows, self.settings, self.chunk)
        _, sinks, pairs = next(stream_activations(self.model, list(self.settings.layers), [tokens]))
        return self.feed(sinks, pairs)

    @torch.no_grad()
    def feed(self, sinks: torch.Tensor, pairs: dict[int, tuple[torch.Tensor, torch.Tensor]]) -> dict[int, dict[str, float]]:
        """``train_chunk`` after its forward pass: the next chunk's sinks [windows, ctx] and
        {layer: (MLP input, MLP write)} [windows, ctx, d] (several runs with the same data can share one pass)."""
        s = self.settings
        keep = ~sinks.reshape(-1)  # on the model's device, like the activations (order: drawn on the CPU)
        generator = torch.Generator().manual_seed(s.seed * 1_000_003 + self.chunk)
        order = torch.randperm(int(keep.sum()), generator=generator).to(keep.device)
        summary = {}
        for layer, trainer in self.trainers.items():
            x, y = (a.reshape(-1, a.shape[-1])[keep][order].float() for a in pairs[layer])
            if not trainer.initialised:
                trainer.init_from_data(x, y)
            # each batch: a slice of the permutation, applied once more to the shuffled tokens (any fixed
            # partition would do; this one is what the recipe probe and the tests recorded)
            records = [trainer.step(x[part], y[part]) for part in order.tensor_split(s.batches_per_chunk)
                       if len(part)]
            summary[layer] = {key: sum(r[key] for r in records) / len(records) for key in ("loss", "nmse", "l0")}
            summary[layer]["dead_frac"] = records[-1]["dead_frac"]
            trainer.history.clear()  # the per-chunk summary is kept instead (progress.jsonl)
        self.chunk += 1
        line = {"chunk": self.chunk, "steps": self.steps, "session_s": round(time.perf_counter() - self.started, 2),
                "layers": {str(k): v for k, v in summary.items()}}
        with open(self.folder / PROGRESS_FILE, "a") as handle:
            handle.write(json.dumps(line) + "\n")
        return summary

    def wall_s(self) -> float:
        """Wall time of every session so far, this one's up to now."""
        self.sessions[-1]["wall_s"] = time.perf_counter() - self.started
        self.sessions[-1]["last_chunk"] = self.chunk
        return sum(session["wall_s"] for session in self.sessions)

    def state(self) -> dict[str, Any]:
        self.wall_s()
        return {
            "version": STATE_VERSION, "trainer_version": TRAINER_VERSION, "settings": self.settings.to_dict(),
            "windows": self.fingerprint, "chunk": self.chunk, "sessions": self.sessions,
            "torch_rng": torch.get_rng_state(),
            "trainers": {layer: _trainer_state(trainer) for layer, trainer in self.trainers.items()},
        }

    def save(self) -> Path:
        """Write the run's state to ``folder/state.pt`` atomically (a crash leaves the previous one)."""
        state = self.state()
        atomic_write(self.folder / STATE_FILE, lambda path: torch.save(state, path))
        return self.folder / STATE_FILE

    def provenance(self) -> dict[str, Any]:
        """What the export records beside the weights."""
        wall = self.wall_s()
        return {
            "settings": self.settings.to_dict(), "trainer_version": TRAINER_VERSION, "windows": self.fingerprint,
            "chunks": self.chunk, "n_chunks": self.settings.n_chunks, "complete": self.done,
            "tokens_seen": self.chunk * self.settings.windows_per_chunk * self.settings.ctx,
            "steps": self.steps, "wall_s": wall, "sessions": self.sessions,
            "code_commit": provenance.git("rev-parse", "HEAD") or None, "exported_utc": provenance.now_utc(),
            "dead_since_last_check": {str(layer): float((t.fired == 0).float().mean()) for layer, t in self.trainers.items()},
        }


def settings_key(settings: StreamSettings) -> str:
    """A short hash of the settings: the default run folder's name ends with it."""
    return hashlib.sha256(json.dumps(settings.to_dict(), sort_keys=True).encode()).hexdigest()[:10]


def default_run_folder(settings: StreamSettings) -> Path:
    """Where a run with these settings lives unless told otherwise: under the cache folder, not the repository."""
    return cache_dir() / "transcoders" / f"{settings.model}-{settings.source}-{settings_key(settings)}"


def train_streaming(
    model: HookedTransformer,
    settings: StreamSettings,
    windows: torch.Tensor,
    folder: str | os.PathLike,
    resume: bool = False,
    save_every: int = 10,
    max_chunks: int | None = None,
    max_seconds: float | None = None,
) -> StreamingRun:
    """Train (or, with ``resume``, continue) the run in ``folder`` chunk by chunk, with a progress bar,
    saving its state every ``save_every`` chunks and when this session stops: at the end, after
    ``max_chunks`` chunks or once ``max_seconds`` have passed (then continue it with ``resume``)."""
    run = StreamingRun.open(model, settings, windows, folder, resume=resume)
    todo = settings.n_chunks - run.chunk if max_chunks is None else min(max_chunks, settings.n_chunks - run.chunk)
    bar = tqdm(total=settings.n_chunks, initial=run.chunk, desc="training transcoders", unit="chunk")
    started = time.perf_counter()
    for done in range(1, todo + 1):
        summary = run.train_chunk()
        bar.update(1)
        first = summary[settings.layers[0]]
        bar.set_postfix(layer=settings.layers[0], loss=f"{first['loss']:.3f}", L0=f"{first['l0']:.0f}",
                        dead=f"{first['dead_frac']:.2f}")
        if save_every and done % save_every == 0:
            run.save()
        if max_seconds is not None and time.perf_counter() - started > max_seconds:
            break
    bar.close()
    run.save()
    return run


# ----------------------------------------------------------------------------- provenance


def machine() -> dict[str, Any]:
    """This machine and process (``utils.provenance.machine``), when this session started, and
    whether the training code had uncommitted changes."""
    found = provenance.machine()
    dirty = bool(provenance.git("status", "--porcelain", "--", "utils", "scripts")) if found["git_commit"] else None
    return {**found, "started_utc": provenance.now_utc(), "uncommitted_code_changes": dirty}


# ----------------------------------------------------------------------------- export and load


class ShippedTranscodersError(ValueError):
    """Shipped transcoders are missing, damaged or too large; the message names the file and the command that rebuilds them."""


def rebuild_command(folder: str | os.PathLike = SHIPPED) -> str:
    """The command that trains (or continues) the run recorded in ``folder`` and exports it there again."""
    return f"python {TRAIN_SCRIPT} --settings-from {Path(folder) / PROVENANCE_FILE} --resume --export {folder}"


def export_shipped(run: StreamingRun, folder: str | os.PathLike, max_bytes: int = MAX_SHIPPED_BYTES) -> int:
    """Write every layer of ``run`` to ``folder`` (replaced atomically): ``L<layer>/`` as an sae-lens
    ``Transcoder`` with float16 weights, ``provenance.json`` and a sha256 ``manifest.json`` of them; the
    folder's other files (its README, the recipe table) are kept, outside the manifest. Refused
    (``ShippedTranscodersError``, nothing written) when the files exceed ``max_bytes``. Returns their size in bytes."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".export"))
    try:
        for layer, trainer in run.trainers.items():
            half = _half(trainer.transcoder.to_sae_lens(layer, run.settings.model))
            half.save_model(staging / f"L{layer}")
        provenance = run.provenance()
        provenance["final_chunk"] = _last_progress(run.folder)
        write_text_atomic(staging / PROVENANCE_FILE, json.dumps(provenance, indent=1) + "\n")
        write_manifest(staging)
        size = sum(p.stat().st_size for p in staging.rglob("*") if p.is_file())
        if size > max_bytes:
            raise ShippedTranscodersError(
                f"the export would hold {size / 1e6:.1f} MB, above the cap of {max_bytes / 1e6:.1f} MB "
                f"({len(run.trainers)} layers x d_sae {run.settings.d_sae}); ship fewer features or layers"
            )
        if folder.is_dir():  # files of the folder's own (README.md, recipes.csv) stay, outside the manifest
            for kept in folder.iterdir():
                if kept.is_file() and kept.name not in (MANIFEST, PROVENANCE_FILE):
                    shutil.copy2(kept, staging / kept.name)
        for path in [staging, *staging.rglob("*")]:  # ordinary modes (mkdtemp and some writers use owner-only ones)
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        replace_folder(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return size


def _half(transcoder: Any) -> Any:
    """An sae-lens transcoder with float16 weights (and its config saying so)."""
    transcoder.cfg.dtype = "float16"
    return transcoder.to(torch.float16)


def _last_progress(folder: Path) -> dict[str, Any] | None:
    path = folder / PROGRESS_FILE
    if not path.is_file():
        return None
    lines = path.read_text().splitlines()
    return json.loads(lines[-1]) if lines else None


def _checked(folder: Path) -> dict[str, Any]:
    """``folder``'s provenance, once its manifest's checksums hold; else the error saying how to rebuild it."""
    again = (f"Restore it (the shipped folder: `git checkout -- {folder}`) or rebuild it: `{rebuild_command(folder)}` "
             f"(hours on two CPU cores; see {folder}/README.md)")
    if not folder.is_dir():
        raise ShippedTranscodersError(f"{folder} does not exist. {again}")
    try:
        check_manifest(folder)
    except CacheError as err:
        raise ShippedTranscodersError(f"{err}. {again}") from None
    try:
        return json.loads((folder / PROVENANCE_FILE).read_text())
    except (OSError, ValueError) as err:
        raise ShippedTranscodersError(f"{folder / PROVENANCE_FILE} is unreadable ({err}). {again}") from None


def shipped_provenance(folder: str | os.PathLike = SHIPPED_DIR) -> dict[str, Any]:
    """The provenance of the transcoders in ``folder`` (checksums checked first)."""
    return _checked(Path(folder))


def load_shipped_transcoders(
    folder: str | os.PathLike = SHIPPED_DIR, layers: Sequence[int] | None = None, device: str | torch.device = "cpu"
) -> dict[int, Any]:
    """{layer: sae-lens ``Transcoder``} (float32, on ``device``; what notebook 03 trains and splices)
    from the shipped ``folder``, every file's checksum checked first (``ShippedTranscodersError``
    names a missing or changed file and the command that rebuilds the folder). ``layers``: all shipped ones when None."""
    folder = Path(folder)
    shipped = [int(layer) for layer in _checked(folder)["settings"]["layers"]]
    missing = [layer for layer in (layers if layers is not None else shipped) if layer not in shipped]
    if missing:
        raise ShippedTranscodersError(f"{folder} ships no transcoder for layers {missing} (it has {shipped})")
    out = {}
    for layer in layers if layers is not None else shipped:
        tc = load_transcoder(folder / f"L{layer}", device)
        tc.cfg.dtype = "float32"
        out[layer] = tc.to(torch.float32)
    return out


def shipped_unusable(
    model_name: str, source: str, layers: Sequence[int], retrain: bool = False, folder: str | os.PathLike = SHIPPED_DIR
) -> str | None:
    """Why the shipped transcoders cannot stand in for transcoders of ``model_name`` on ``source`` text
    for ``layers`` (a sentence), or None when they can. A damaged folder is an error, not a reason."""
    folder = Path(folder)
    if retrain:
        return "retrain=True asks for every layer to be trained here"
    if not (folder / MANIFEST).is_file():
        return (f"{folder} holds no shipped transcoders (train them with `python {TRAIN_SCRIPT} --threads 2`, "
                f"then export with `--resume --export {SHIPPED}`; see {SHIPPED}/README.md)")
    settings = shipped_provenance(folder)["settings"]
    if settings["model"] != model_name:
        return f"the shipped transcoders belong to {settings['model']}, not {model_name}"
    if settings["source"] != source:
        return f"the shipped transcoders were trained on the {settings['source']!r} text, not {source!r}"
    missing = sorted(set(layers) - {int(layer) for layer in settings["layers"]})
    if missing:
        return f"no transcoder is shipped for layers {missing}"
    return None


def shipped_recipe(provenance: dict[str, Any]) -> str:
    """The recipe the shipped transcoders were trained with, in words (``StreamSettings.recipe``)."""
    return StreamSettings.from_dict(provenance["settings"]).recipe


def shipped_summary(provenance: dict[str, Any], n_loaded: int) -> str:
    """One line that labels loaded transcoders as recorded elsewhere: what trained them, on what, how long, where."""
    s = provenance["settings"]
    sessions = [session for session in provenance["sessions"] if session.get("last_chunk", 0) > session["first_chunk"]]
    cpus = sorted({session["cpu"] + (f" + {session['gpu']}" if session.get("gpu") else "") for session in sessions})
    commits = sorted({str(session.get("git_commit"))[:7] for session in sessions})
    state = "complete" if provenance["complete"] else f"INCOMPLETE: {provenance['chunks']} of {provenance['n_chunks']} chunks"
    return (f"Loaded {n_loaded} transcoders from {SHIPPED}/ (checksums checked), recorded by {TRAIN_SCRIPT}: "
            f"{provenance['tokens_seen']:,} tokens of the {s['source']} train split, {provenance['steps']:,} steps per layer, "
            f"{shipped_recipe(provenance)} ({state}); "
            f"{provenance['wall_s'] / 3600:.1f} h in {len(sessions)} training session(s) on {', '.join(cpus)} "
            f"at commit {', '.join(commits)}, exported {provenance['exported_utc'][:10]}.")
