"""Are the shipped BatchTopK transcoders' dead features an artefact of their one inference threshold? (issue 29)

BatchTopK keeps a batch's k x n largest activations while training; at inference one threshold per layer
stands in for that cut-off. A feature that training kept but whose activations mostly sit below that
threshold would look dead at inference only. This probe takes the last ``--chunks`` chunks of the shipped
run's training order, counts how often BatchTopK (batches of the run's size) keeps each feature there, and
gives each feature its own threshold: the value below which it would fire on those tokens exactly as often
as it was kept. It then measures the shipped transcoders with the shipped thresholds and with these, as
notebook 03 does (768 held-out prose tokens; dead features over 16,384), and prints both.

    python scripts/probe_transcoder_thresholds.py --threads 2 --chunks 8
"""

from __future__ import annotations

import argparse
import json

import torch

from utils.data import token_batches
from utils.models import load_model
from utils.transcoders import metrics as M
from utils.transcoders import shipped as S
from utils.transcoders.activations import stream_activations
from utils.transcoders.model import batch_topk


def kept_rate_thresholds(pre: torch.Tensor, k: int, batch_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-feature thresholds [d_sae], how many tokens BatchTopK kept each feature on [d_sae]) from the
    pre-activations ``pre`` [n, d_sae]: feature i fires above its threshold on as many of the n tokens as
    BatchTopK (batches of ``batch_tokens``) kept it on."""
    kept = sum((batch_topk(torch.relu(part), k) > 0).sum(0) for part in pre.split(batch_tokens))
    ranked = pre.sort(0, descending=True).values
    thresholds = ranked.gather(0, kept.clamp(max=len(pre) - 1)[None])[0].clamp_min(0)
    return torch.where(kept >= len(pre), torch.zeros_like(thresholds), thresholds), kept


def measure(model, transcoders, ev, dead_tokens: int) -> dict:
    """Notebook 03's summary of ``transcoders`` on the eval set ``ev``, dead features over ``dead_tokens``."""
    quality, totals = M.layer_quality(model, transcoders, ev)
    rates, _ = M.firing_rates(model, transcoders, token_batches(model, "validation", dead_tokens, 128, 8, source="prose"))
    return {"median_recovered": float(quality.frac_recovered.median()), "median_l0": float(quality.l0.median()),
            "all_spliced_delta_ce": totals["all_spliced"] - totals["clean"],
            "dead": {layer: round(float((rate == 0).float().mean()), 4) for layer, rate in rates.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=8, help="the run's last chunks the thresholds are set on")
    parser.add_argument("--eval-tokens", type=int, default=768)
    parser.add_argument("--dead-tokens", type=int, default=16_384)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    settings = S.StreamSettings.from_dict(S.shipped_provenance()["settings"])
    model = load_model(settings.model)
    transcoders = S.load_shipped_transcoders()
    windows = S.run_windows(model, settings)
    pre: dict[int, list[torch.Tensor]] = {layer: [] for layer in transcoders}
    for index in range(settings.n_chunks - args.chunks, settings.n_chunks):
        _, sinks, pairs = next(stream_activations(model, list(transcoders), [S.chunk_windows(windows, settings, index)]))
        for layer, (x, _) in pairs.items():
            pre[layer].append(x[~sinks] @ transcoders[layer].W_enc + transcoders[layer].b_enc)
    calibrated, never_kept = {}, {}
    for layer in transcoders:
        calibrated[layer], kept = kept_rate_thresholds(torch.cat(pre.pop(layer)), settings.k, settings.batch_tokens)
        never_kept[layer] = round(float((kept == 0).float().mean()), 4)
    print("never kept by BatchTopK on the calibration tokens:", json.dumps(never_kept), flush=True)
    ev = M.eval_set(model, list(transcoders), token_batches(model, "validation", args.eval_tokens, 128, 8, source="prose"))
    print("shipped (one threshold per layer):", json.dumps(measure(model, transcoders, ev, args.dead_tokens)), flush=True)
    for layer, tc in transcoders.items():
        tc.threshold.copy_(calibrated[layer])
    print("a threshold per feature:", json.dumps(measure(model, transcoders, ev, args.dead_tokens)), flush=True)


if __name__ == "__main__":
    main()
