"""The SAE baseline (Dunefsky, Chlenski & Nanda 2024 compare transcoders with SAEs on the MLP's output).

The SAEs are trained by sae-lens's own runner, not by this package's trainer, so the comparison is
with the standard tool: ``LanguageModelSAETrainingRunner`` gets the model and the token windows, and
reads the very activations the transcoders were trained on from ``cache_activations``'s folder
(attention sinks skipped) instead of re-running the model for every L1 value. The run is quiet:
``quiet_sae_lens`` scopes sae-lens's logger, its warnings and its progress bars to the call, so a
notebook cell prints nothing to stderr (nothing outside the call is silenced).

Public names: ``train_sae_with_sae_lens``, ``token_dataset``, ``quiet_sae_lens``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import datasets
import torch
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from utils.transcoders.activations import SINK_ID
from utils.transcoders.model import mlp_hooks

__all__ = ["quiet_sae_lens", "token_dataset", "train_sae_with_sae_lens"]

# sae-lens's modules whose progress bars a training run draws (each imports ``tqdm`` by name)
_PROGRESS_MODULES = (
    "sae_lens.training.activation_scaler",
    "sae_lens.training.activations_store",
    "sae_lens.training.sae_trainer",
)


@contextlib.contextmanager
def quiet_sae_lens() -> Iterator[None]:
    """Within the block: sae-lens's logger only reports errors, warnings raised are dropped, and
    sae-lens's progress bars are not drawn; everything is restored on exit."""
    logger = logging.getLogger("sae_lens")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.ExitStack() as patches:
            warnings.simplefilter("ignore")  # scoped: catch_warnings restores the filters on exit
            for name in _PROGRESS_MODULES:
                module = importlib.import_module(name)  # sae-lens is heavy: loaded on first use
                patches.enter_context(
                    mock.patch.object(module, "tqdm", functools.partial(tqdm, disable=True))
                )
            yield
    finally:
        logger.setLevel(level)


def token_dataset(windows: torch.Tensor) -> datasets.Dataset:
    """A pre-tokenised ``datasets.Dataset`` (column ``input_ids``) of [n, ctx] token windows."""
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
    """Train a standard SAE on MLP ``layer``'s write with sae-lens's own runner.

    ``LanguageModelSAETrainingRunner`` gets ``override_model=model`` and ``override_dataset`` = the
    token ``windows`` [n, ctx]; with ``cached_activations`` (a ``cache_activations`` folder) it reads
    those very activations instead of re-running the model for every L1 value. The learning rate
    warms up over ``warmup_steps`` and falls linearly to 0 over the last ``decay_steps``. No wandb, no
    download. Activations are rescaled to norm sqrt(d_model) during training (folded back at the end),
    so L1 values are comparable across layers. Attention sinks are skipped when reading the cache
    (marked ``SINK_ID``). Nothing is written to stderr (``quiet_sae_lens``). Returns the trained
    inference ``SAE``.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # set before sae-lens loads, so it never downloads
    from sae_lens import (  # heavy (~1.5 s to import): only the SAE baseline needs it
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
        prepend_bos=model.cfg.default_prepend_bos,  # the windows already start with BOS if so (token_batches)
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
    with quiet_sae_lens():
        runner = LanguageModelSAETrainingRunner(
            cfg, override_dataset=token_dataset(windows), override_model=model
        )
        with torch.enable_grad():
            runner.run()
        return SAE.load_from_disk(out_dir).eval()
