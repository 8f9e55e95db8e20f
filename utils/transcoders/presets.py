"""Notebook 02's parameters at each scale (``apply_scale(globals(), T.PRESETS, T.RANGES)``).

Not part of the method: the sizes (tokens, features, L1 grids) that notebook 02 runs with at ``smoke``,
``default`` and ``paper`` scale, and a ``dry_run`` that rehearses the paper-scale branch at the
smallest sizes. The ``paper`` preset is the paper's Pareto comparison: Pythia-410M layer 15 on
OpenWebText.

Public names: ``PRESETS``, ``RANGES``.
"""

from __future__ import annotations

__all__ = ["PRESETS", "RANGES"]

# Parameter bounds where apply_scale's count rule (positive) does not fit: layer 0 is a real layer.
RANGES = {"layer": (0, None)}

PRESETS = {
    # every parameter a scale sets; `default` time on 2 CPU cores: see the notebook's runtime line (the target was 5 min)
    "smoke": {
        "layer": 3,
        "ctx": 64,
        "n_train_tokens": 2_048,
        "n_eval_tokens": 256,
        "n_compare_tokens": 128,
        "epochs": 2,
        "d_sae": 256,
        "batch_tokens": 256,
        "transcoder_l1": [0.03, 0.06, 0.1],
        "sae_l1": [1.0, 2.0, 4.0],
        "n_interpret": 2,
        "n_blind": 2,
        "top_k": 5,
    },
    "dry_run": {  # a paper-scale rehearsal (dry_run=True): every branch, the smallest sizes
        "n_train_tokens": 1_024,
        "n_eval_tokens": 128,
        "n_compare_tokens": 128,
        "epochs": 1,
        "d_sae": 128,
        "transcoder_l1": [0.1],
        "sae_l1": [1.0],
        "n_interpret": 1,
        "n_blind": 1,
    },
    "default": {
        "model_name": "smollm2-135m",
        "source": "prose",  # human-written prose (utils.prose); the model's own text is compared
        "compare_source": "shipped",
        "layer": 15,
        "ctx": 128,
        "n_train_tokens": 28_672,
        "n_eval_tokens": 2_048,
        "n_compare_tokens": 1_024,
        "epochs": 4,
        "d_sae": 2_304,
        "batch_tokens": 512,
        # grids whose L0 ranges interleave, so that >= 3 transcoders fall inside the SAEs' range
        # (measured on the shipped corpus: TC L1 0.03 -> L0 117, 0.1 -> 21; SAE 1 -> 57, 2 -> 17)
        "transcoder_l1": [0.02, 0.04, 0.07, 0.12],
        "sae_l1": [0.5, 1.0, 1.6, 2.5],
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
        "n_compare_tokens": 8_192,
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
