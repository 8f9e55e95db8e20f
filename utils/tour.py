"""Notebook 00's computations: residual-stream decomposition, direct logit attribution, logit lens,
and the sizes of attention vs MLP writes.

Public names: ``residual_components`` (every write into the residual stream, named by sublayer),
``decomposition_error``, ``direct_logit_attribution``, ``plot_attribution`` (its bars, every
sublayer labelled), ``decode_residual``, ``logit_lens``, ``sublayer_write_norms``,
``toolbox_interventions`` (the hook toolbox's contracts and a few interventions), and the notebook's
``PRESETS``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.patches import Patch
from tqdm.auto import tqdm
from transformer_lens import ActivationCache, HookedTransformer

from utils import hooks
from utils.sublayers import Sublayer, all_sublayers

__all__ = [
    "PRESETS",
    "decode_residual",
    "decomposition_error",
    "direct_logit_attribution",
    "toolbox_interventions",
    "logit_lens",
    "plot_attribution",
    "residual_components",
    "sublayer_write_norms",
]

PRESETS = {
    "smoke": {"n_norm_tokens": 256, "n_own_text_tokens": 128, "norm_ctx": 32},
    "default": {
        "model_name": "smollm2-135m",
        "n_norm_tokens": 16_384,
        "n_own_text_tokens": 8_192,
        "norm_ctx": 128,
    },
    # GPT-2 small: the model of the transcoder papers' circuits (notebooks 02/03)
    "paper": {
        "model_name": "gpt2",
        "n_norm_tokens": 65_536,
        "n_own_text_tokens": 16_384,
        "norm_ctx": 256,
    },
}


def residual_components(
    model: HookedTransformer, cache: ActivationCache
) -> dict[str, torch.Tensor]:
    """Every write into the residual stream, in order: the embedding then each sublayer ([batch, pos, d]).

    TransformerLens's ``decompose_resid`` does the stacking; here each write is named by its
    sublayer (``L3.mlp``), the addressing every notebook uses.
    """
    stack, labels = cache.decompose_resid(return_labels=True)
    names = {f"{s.layer}_{s.kind}_out": str(s) for s in all_sublayers(model)}
    return {names.get(label, label): write for label, write in zip(labels, stack, strict=True)}


def decomposition_error(model: HookedTransformer, cache: ActivationCache) -> float:
    """Max |final residual - sum of all writes| / max |final residual|: float rounding only, by construction.

    Relative, because a few positions (the first token especially) carry residual entries in the
    hundreds, where float32 rounding alone is about 1e-4 in absolute terms.
    """
    total = torch.stack(list(residual_components(model, cache).values())).sum(0)
    final = cache[hooks.resid_post(model.cfg.n_layers - 1)]
    return float((final - total).abs().max() / final.abs().max())


def direct_logit_attribution(
    model: HookedTransformer, cache: ActivationCache, token: int, pos: int = -1
) -> pd.Series:
    """Each write's direct contribution to ``token``'s logit at ``pos`` (batch element 0).

    The final norm is linearised: its scale at ``pos`` is treated as a constant, so the
    contributions (plus the unembedding bias) add up to the logit exactly (TransformerLens's
    ``logit_attrs`` on the named writes).
    """
    writes = residual_components(model, cache)
    stack = torch.stack([w[:1, pos] for w in writes.values()])  # [component, 1, d]
    attrs = cache.logit_attrs(
        stack, tokens=torch.tensor([token]), pos_slice=pos, batch_slice=slice(0, 1)
    )
    return pd.Series({name: float(a) for name, a in zip(writes, attrs[:, 0], strict=True)})


def plot_attribution(
    ax: Axes, dla: pd.Series, colors: dict[str, str], names: dict[str, str]
) -> None:
    """Horizontal bars of each sublayer's direct contribution (``dla`` indexed ``L3.attn``), one row
    per layer with its attention and MLP bars side by side, every layer labelled, layer 0 on top."""
    sub = dla.drop("embed", errors="ignore")
    for offset, kind in ((-0.2, "attn"), (0.2, "mlp")):
        part = sub[[n.endswith(f".{kind}") for n in sub.index]]
        layers = [int(n[1:].split(".")[0]) for n in part.index]
        ax.barh([la + offset for la in layers], part.values, height=0.4, color=colors[kind])
    n_layers = len(sub) // 2
    ax.set_yticks(range(n_layers), [f"layer {la}" for la in range(n_layers)], fontsize=8)
    ax.set_ylim(n_layers - 0.5, -0.5)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.legend(handles=[Patch(color=colors[k], label=names[k]) for k in colors], fontsize=9)


def toolbox_interventions(
    model: HookedTransformer, tokens: torch.Tensor, logits: torch.Tensor, answer: int, layer: int
) -> tuple[pd.DataFrame, bool, float]:
    """The hook toolbox on one prompt (``tokens`` [1, pos], its ``logits`` [1, pos, vocab]):
    p(answer) under no intervention, zero-ablating / skipping MLP ``layer``, and cutting the last
    token off from the rest in every layer; plus two contracts: a capturing hook leaves the logits
    bit-identical, and skipping equals zero-ablating (their max |logit difference|)."""
    mlp, store = Sublayer(layer, "mlp"), {}
    noop_same = torch.equal(hooks.run(model, tokens, hooks.capture([mlp.out_hook], store)), logits)
    zeroed = hooks.run(model, tokens, hooks.zero_ablate([mlp]))
    with hooks.skip(model, [mlp]):
        skipped = model(tokens)
    n = tokens.shape[1]
    last_to_first = hooks.edge_mask(n, [(n - 1, src) for src in range(n - 1)])
    cut = hooks.block_attention(range(model.cfg.n_layers), last_to_first)
    blocked = hooks.run(model, tokens, cut)
    runs = {
        "none": logits,
        f"zero-ablate MLP {layer}": zeroed,
        f"skip MLP {layer}": skipped,
        "last token sees only itself (all layers)": blocked,
    }
    frame = pd.DataFrame(
        {
            "intervention": list(runs),
            "p(answer)": [float(x[0, -1].softmax(-1)[answer]) for x in runs.values()],
        }
    )
    return frame, noop_same, float((skipped - zeroed).abs().max())


def decode_residual(model: HookedTransformer, resid: torch.Tensor) -> torch.Tensor:
    """Logits [batch, d_vocab] read from residual-stream vectors [batch, d_model]: final norm, then unembedding."""
    return model.unembed(model.ln_final(resid.unsqueeze(1)))[:, 0]


def logit_lens(
    model: HookedTransformer,
    cache: ActivationCache,
    token: int,
    pos: int = -1,
    decode: Callable[[HookedTransformer, torch.Tensor], torch.Tensor] = decode_residual,
) -> pd.DataFrame:
    """Probability and rank of ``token`` when each layer's residual stream is decoded directly.

    Each layer's output (the next layer's input, TransformerLens's ``accumulated_resid`` without the
    embedding) is decoded by ``decode(model, resid [layer, d]) -> logits [layer, d_vocab]``, the
    final norm recomputed on each (``decode_residual``, or a learner's own).
    """
    resid = cache.accumulated_resid(pos_slice=pos)[1:, 0]  # [layer, d] after layers 0..n-1
    rows = []
    for layer, logits in enumerate(decode(model, resid)):
        rows.append(
            {
                "layer": layer,
                "prob": float(logits.softmax(-1)[token]),
                "rank": int((logits > logits[token]).sum()) + 1,
                "top_token": model.to_string(logits.argmax()),
            }
        )
    return pd.DataFrame(rows)


@torch.no_grad()
def sublayer_write_norms(model: HookedTransformer, batches: Iterable[torch.Tensor]) -> pd.DataFrame:
    """Mean L2 norm per token of each layer's attention and MLP writes (first position excluded)."""
    names = [s.out_hook for s in all_sublayers(model)]
    sums = torch.zeros(len(names))
    count = 0
    for tokens in tqdm(list(batches), desc="norms"):
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
        sums += torch.stack([cache[n][:, 1:].norm(dim=-1).sum() for n in names]).cpu()
        count += tokens[:, 1:].numel()
    means = (sums / count).view(model.cfg.n_layers, 2)
    return pd.DataFrame(
        {"layer": range(model.cfg.n_layers), "attn": means[:, 0], "mlp": means[:, 1]}
    )
