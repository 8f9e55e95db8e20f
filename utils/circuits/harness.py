"""Notebook 03's harness: its scale presets and the rating sheet it hands a class.

Not the paper's method (that is the rest of ``utils.circuits``): what notebook 03 needs around it.

* ``PRESETS``: every size each scale sets (``apply_scale(globals(), C.PRESETS)`` in the notebook).
* ``rating_sheet`` / ``save_rating_sheet``: the blind case study's features as cards for a class to
  rate (circuit evidence first, contexts after), with a hidden key.

Public names: ``PRESETS``, ``rating_sheet``, ``save_rating_sheet``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from transformer_lens import HookedTransformer

from utils import transcoders as T
from utils.outputs import results_folder

__all__ = ["PRESETS", "rating_sheet", "save_rating_sheet"]

PRESETS = {
    # every parameter a scale sets; `default` time on 2 CPU cores: see the notebook's runtime line (the target was 8 min)
    "smoke": {
        "tc_layers": [0, 1, 2, 3],
        "ctx": 64,
        "n_train_tokens": 2_048,
        "epochs": 2,
        "n_eval_tokens": 256,
        "n_dead_tokens": 512,
        "n_own_tokens": 128,
        "d_sae": 128,
        "batch_tokens": 256,
        "l1_grid": [0.03, 0.1],
        "sweep_layers": [1, 3],
        "n_prompts": 8,
        "n_traced": 1,
        "iterations": 2,
        "branches": 3,
        "beam": 3,
        "top_ks": [5, 20],
        "circuit_layers": 2,
        "precision_k": 2,
        "n_blind": 4,
        "n_perm": 20,
    },
    "dry_run": {  # a paper-scale rehearsal (dry_run=True): every branch, the smallest sizes
        "tc_layers": [0, 1],
        "n_train_tokens": 1_024,
        "epochs": 1,
        "n_eval_tokens": 128,
        "n_dead_tokens": 128,
        "n_own_tokens": 128,
        "d_sae": 64,
        "l1_grid": [0.1],
        "sweep_layers": [1],
        "n_prompts": 4,
        "iterations": 1,
        "branches": 2,
        "beam": 2,
        "top_ks": [5],
        "circuit_layers": 1,
        "precision_k": 1,
        "n_blind": 2,
        "n_perm": 10,
    },
    "default": {
        "model_name": "smollm2-135m",
        "source": "prose",  # human-written prose (utils.prose): train split for training, validation for metrics
        "tc_layers": None,  # every layer of the model (SmolLM2: 30, Gemma-3-270M: 18)
        "ctx": 128,
        "n_train_tokens": 24_576,
        "epochs": 4,
        "n_eval_tokens": 768,
        "n_dead_tokens": 16_384,  # features are counted dead over these (one streamed pass; ~30 s)
        "compare_own_text": True,  # the per-layer metrics again on the model's own text, beside
        "n_own_tokens": 256,  # its size: sized so the notebook stays within 8 min at default
        "d_sae": 768,
        "batch_tokens": 512,
        "l1_grid": [0.02, 0.03, 0.05],
        "sweep_layers": None,  # a third and two thirds of the depth (SmolLM2: 10, 20; Gemma-3-270M: 6, 12)
        "max_l0": 100.0,
        "n_prompts": 40,
        "n_traced": 4,
        "iterations": 3,
        "branches": 4,
        "beam": 6,
        "top_ks": [1, 3, 10, 30, 100, 300],
        "circuit_layers": 6,
        "precision_k": 10,
        "n_blind": 24,
        "n_perm": 200,
    },
    "paper": {  # the paper's set-up: GPT-2 small, a transcoder for each of its 12 MLPs, OpenWebText
        "model_name": "gpt2",
        "source": "openwebtext",
        "compare_own_text": False,  # the shipped corpus was written by SmolLM2, not by GPT-2
        "tc_layers": list(range(12)),
        "ctx": 128,
        "n_train_tokens": 1_048_576,
        "epochs": 2,
        "n_eval_tokens": 8_192,
        "n_dead_tokens": 1_048_576,
        "d_sae": 12_288,
        "batch_tokens": 4_096,
        "l1_grid": [0.003, 0.01, 0.03],
        "sweep_layers": [2, 6, 10],
        "n_prompts": 80,
        "n_traced": 10,
        "iterations": 4,
        "branches": 5,
        "beam": 8,
        "top_ks": [1, 3, 10, 30, 100, 300, 1000, 3000],
        "circuit_layers": 6,
        "precision_k": 20,
        "n_blind": 40,
        "n_perm": 1000,
    },
}


def rating_sheet(cases: pd.DataFrame, model: HookedTransformer, transcoders: Mapping[int, Any], seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Feature cards for a class and their hidden key. ``cases`` has columns layer, feature, hypothesis
    (``Hypothesis.describe``) and contexts (a top_contexts table). Each card shows the circuit evidence
    (the weight-only hypothesis and the logit-effect tokens) and the top contexts, with blank columns
    for the student's own hypothesis and a 1-5 rating of how well the contexts match it; the key maps
    cards back to (layer, feature)."""
    order = np.random.default_rng(seed).permutation(len(cases))
    cards, key = [], []
    for card, i in enumerate(order):
        row = cases.iloc[int(i)]
        effect = T.logit_effect(model, transcoders[int(row.layer)], int(row.feature), 8).token
        cards.append({"card": card, "evidence_from_weights": row.hypothesis, "outputs_it_promotes": " | ".join(effect),
                      "hypothesis (write first)": "", "top_contexts (read after)": "\n".join(row.contexts.context),
                      "rating 1-5": ""})
        key.append({"card": card, "layer": int(row.layer), "feature": int(row.feature)})
    return pd.DataFrame(cards), pd.DataFrame(key)


def save_rating_sheet(cards: pd.DataFrame, key: pd.DataFrame, results_dir: str, scale: str) -> Path:
    """Write ``rating_sheet.csv`` (cards) and ``rating_key.csv`` (keep it hidden) to the run's results folder."""
    folder = results_folder(results_dir, scale)
    folder.mkdir(parents=True, exist_ok=True)
    cards.to_csv(folder / "rating_sheet.csv", index=False)
    key.to_csv(folder / "rating_key.csv", index=False)
    return folder / "rating_sheet.csv"
