"""Training transcoders (Dunefsky, Chlenski & Nanda 2024): the optimiser loop around ``transcoder_loss``.

The paper trains each transcoder with Adam on the MSE + norm-weighted L1 loss, decoder rows kept at
unit norm, and revives dead features. Here, step by step (``TranscoderTrainer.step``):

* targets rescaled by ``out_scale`` and biases set from the data (``SparseTranscoder.init_from_data``);
* the loss (``transcoder_loss``), the decoder gradient's component along each row removed, a fused Adam
  step, decoder rows renormalised;
* the learning rate: a linear warm-up, then a linear fall to 0 over the run's last part -> ``lr_multiplier``;
* dead-feature resampling (Anthropic's recipe, no two features revived from the same token) from a
  pool of recent tokens, until a chosen step -> ``TranscoderTrainer.resample_dead``;
* optionally, for BatchTopK transcoders, Gao et al.'s (2024) auxiliary loss on the features that have
  not fired for ``dead_after`` steps, for the whole run (``auxk_loss``; not the paper's);
* checkpoints in sae-lens format and a guard that stops on a NaN loss, naming the last good
  checkpoint -> ``TranscoderTrainer.save_checkpoint``, ``TrainingDiverged``;
* optionally someone else's step (a learner's, notebook 02's Exercise 2.3): ``training_step(tc,
  optimizer, x, y, l1) -> loss`` does the loss, the gradient, the optimiser step and the decoder
  rows' norm; the trainer keeps the schedule, the resampling, the history and the checkpoints.

``train_transcoders`` trains many transcoders from one stream of batches (an L1 sweep, or one per
layer). ``TranscoderTraining`` holds one run's hyper-parameters; like every settings class here it
rejects a field it does not know, naming the closest ones (``reject_unknown_fields``).

Public names: ``TranscoderTraining``, ``TranscoderTrainer``, ``train_transcoders``, ``lr_multiplier``,
``TrainingDiverged``, ``reject_unknown_fields``, ``CHECKPOINT_NAME``, ``TRAINER_VERSION``.
"""

from __future__ import annotations

import difflib
import functools
import shutil
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import torch
from tqdm.auto import tqdm

from utils.outputs import replace_folder
from utils.transcoders.activations import Pair
from utils.transcoders.model import SparseTranscoder, auxk_loss, prediction, transcoder_loss

__all__ = [
    "CHECKPOINT_NAME",
    "TRAINER_VERSION",
    "TrainingDiverged",
    "TranscoderTrainer",
    "TranscoderTraining",
    "lr_multiplier",
    "reject_unknown_fields",
    "train_transcoders",
]

CHECKPOINT_NAME = "last_good"
TRAINER_VERSION = 6  # bump when a change to the trainer changes what it learns, so trained caches are rebuilt
StepFn = Callable[[SparseTranscoder, torch.optim.Optimizer, torch.Tensor, torch.Tensor, float], torch.Tensor]

Settings = TypeVar("Settings", bound=type)


def reject_unknown_fields(cls: Settings) -> Settings:
    """Class decorator for a dataclass: a keyword that is not one of its fields raises a TypeError
    naming it, its closest fields (difflib) and every field, instead of Python's bare message."""
    init = cls.__init__
    known = [f.name for f in fields(cls) if f.init]

    @functools.wraps(init)
    def checked_init(self, *args: Any, **kwargs: Any) -> None:
        unknown = [key for key in kwargs if key not in known]
        if unknown:
            hints = [
                f"{key!r}" + (f" (did you mean {' or '.join(map(repr, close))}?)" if close else "")
                for key in unknown
                for close in [difflib.get_close_matches(key, known, n=3)]
            ]
            raise TypeError(f"{cls.__name__} has no field {', '.join(hints)}; its fields: {', '.join(known)}")
        init(self, *args, **kwargs)

    cls.__init__ = checked_init
    return cls


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the last good checkpoint."""


@reject_unknown_fields
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
    skip: bool = False  # a skip transcoder: an affine x W_skip beside the features (not the paper's)
    k: int | None = None  # BatchTopK features, k per token on average, instead of the L1 penalty (not the paper's)
    aux_k: int | None = None  # with k: AuxK, dead features' k_aux largest activations fit the error (not the paper's)
    aux_coef: float = 1 / 32  # AuxK's weight in the loss (Gao et al.'s)
    dead_after: int = 25  # steps without firing after which AuxK counts a feature as dead

    def __post_init__(self):
        if self.k is not None and self.l1 != 0:
            raise ValueError(f"BatchTopK (k={self.k}) sets the sparsity itself: set l1=0 (got l1={self.l1})")
        if self.aux_k is not None and (self.k is None or self.aux_k < 1 or self.dead_after < 1):
            raise ValueError(f"AuxK (aux_k={self.aux_k}) needs BatchTopK features (k, got {self.k}), aux_k >= 1 "
                             f"and dead_after >= 1 (got {self.dead_after})")
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
    """Trains one ``SparseTranscoder`` step by step; see ``train_transcoders`` for the loop.

    ``training_step`` (default: the trainer's own) replaces the step itself; see ``step``."""

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
    training_step: StepFn | None = None

    def __post_init__(self):
        if self.training_step is not None and self.cfg.k is not None:
            raise ValueError("a custom training_step trains L1-ReLU transcoders only; leave k unset (None)")
        self.transcoder = SparseTranscoder(
            self.d_in, self.cfg.d_sae, self.d_out, self.cfg.seed, self.cfg.skip, self.cfg.k
        ).to(self.device)
        self.optimizer = torch.optim.Adam(
            self.transcoder.parameters(), lr=self.cfg.lr, betas=self.cfg.adam_betas, fused=True
        )
        self.initialised = False
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: lr_multiplier(s, self.cfg.warmup_steps, self.total_steps, self.cfg.decay_fraction),
        )
        self.fired = torch.zeros(self.cfg.d_sae, dtype=torch.long, device=self.device)
        self.idle = torch.zeros(self.cfg.d_sae, dtype=torch.long, device=self.device)  # steps since each last fired
        self.resampled = 0
        self.recent: deque[tuple[torch.Tensor, torch.Tensor]] = deque()  # the resampling pool

    def init_from_data(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Output scale and biases from a sample of (non-sink) training data, ``x`` [n, d_in] and
        ``y`` [n, d_out] (else: the first batch)."""
        self.transcoder.init_from_data(x.to(self.device), y.to(self.device))
        self.initialised = True

    def measure(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The activations and ``transcoder_loss`` on a batch (``y`` scaled); raises TrainingDiverged
        on a non-finite loss."""
        tc = self.transcoder
        acts = tc.encode_for_training(x)
        pred = prediction(tc, x, acts)
        losses = transcoder_loss(pred, y, acts, tc.W_dec, self.cfg.l1)
        if self.cfg.aux_k is not None and (dead := self.idle >= self.cfg.dead_after).any():
            losses["aux"] = auxk_loss(tc.preactivations(x, dead), tc.W_dec[dead], y - pred, self.cfg.aux_k)
            losses["loss"] = losses["loss"] + self.cfg.aux_coef * losses["aux"]
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
        return acts, losses

    def step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """One Adam step on a batch, inputs ``x`` [n, d_in] and real (unscaled) targets ``y``
        [n, d_out]; raises TrainingDiverged (without stepping) on a non-finite loss.

        With a ``training_step``, the batch is first measured without gradients (the activations
        for the history and the resampling, the loss for the guard), then that function steps
        (loss, gradient, optimiser, unit-norm decoder rows); the history's ``loss`` is the one it
        returns. With the trainer's own arithmetic it trains exactly what the default does.
        """
        tc = self.transcoder
        x, y = x.to(self.device), y.to(self.device)
        if not self.initialised:
            self.init_from_data(x, y)
        y = y * tc.out_scale
        if self.training_step is None:
            with torch.enable_grad():
                acts, losses = self.measure(x, y)
                self.optimizer.zero_grad(set_to_none=True)
                losses["loss"].backward()
            tc.remove_parallel_decoder_grad()
            self.optimizer.step()
            self.scheduler.step()
            tc.normalize_decoder()
            tc.update_threshold(acts)
        else:
            with torch.no_grad():
                acts, losses = self.measure(x, y)
            losses["loss"] = torch.as_tensor(self.training_step(tc, self.optimizer, x, y, self.cfg.l1))
            self.scheduler.step()
        active = acts.detach() > 0
        self.fired += active.sum(0)
        self.idle += 1
        self.idle[active.any(0)] = 0
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

        ``x`` [n, d_in]; ``y`` and ``pred`` [n, d_out] are in the scaled units the transcoder is
        trained in. Each dead feature gets the normalised error of a token drawn with probability ~
        its squared error as decoder row, the (scaled) centred input of that token as encoder column,
        zero encoder bias, and fresh Adam state. Tokens are drawn without replacement: two features
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
        self.idle[dead] = 0
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
    training_step: StepFn | None = None,
) -> dict[Any, TranscoderTrainer]:
    """Train transcoders from one stream of {layer: (x, y)} batches ([n, d_model] each; one pass
    feeds them all).

    ``configs`` maps a key to ``(layer, TranscoderTraining)``; several transcoders may share a layer
    (an L1 sweep) or each read its own (one transcoder per layer). ``init_data`` ({layer: (x, y)},
    sinks excluded) sets each one's output scale and biases (else its first batch does).
    ``training_step`` (default: the trainer's own) takes each optimiser step (``TranscoderTrainer.step``).
    Returns the trainers (``.transcoder``, ``.history``), each checkpointed at the end when it has a
    ``checkpoint_dir``.
    """
    trainers = {
        key: TranscoderTrainer(cfg, layer, d_model, d_model, model_name, device, total_steps,
                               training_step=training_step)
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
