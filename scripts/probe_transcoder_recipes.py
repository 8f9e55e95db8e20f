"""Compare transcoder recipes on a few layers before the long run (issue 29): notebook 03's recipe
(24,576 tokens held in RAM, 4 epochs) against streaming recipes that see more fresh tokens once.

One streamed pass over ``--tokens`` tokens of the prose train split (``scripts/train_transcoders.py``'s
data order) feeds every streaming recipe at once, and its first ``--today-tokens`` tokens (in the
corpus's order, as notebook 03 reads them) are kept to train today's recipe in RAM, exactly as the
notebook does (``train_transcoders`` over ``epoch_batches``, initialised from all its tokens). Every
transcoder is then measured on the prose validation split (non-sink tokens): L0, FVU, fraction of the
loss recovered, dead features. Wall times: training steps per recipe, plus its tokens' share of the
forward passes.

    OMP_NUM_THREADS=1 python scripts/probe_transcoder_recipes.py --threads 1 --out recipes.csv
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import pandas as pd
import torch

from utils.data import token_batches
from utils.models import load_model
from utils.transcoders import activations as A
from utils.transcoders import metrics as M
from utils.transcoders.shipped import StreamingRun, StreamSettings, chunk_indices, run_windows
from utils.transcoders.training import train_transcoders

RECIPES = ("base", "batch256", "l1", "wide", "skip", "topk", "topk_skip", "topk_auxk")
TOPK = 64  # BatchTopK's features per token: near the base recipe's L0 on layers 10 and 20 (57-85)
SKIP_WIDTH = 640  # the widest skip transcoder whose 30 layers fit the 64 MB cap in float16


def streaming_recipes(base: StreamSettings, aux_k: int, which: tuple[str, ...] = RECIPES) -> dict[str, StreamSettings]:
    """The streaming recipes: the base one and one change each (all read the same chunks); ``aux_k``:
    AuxK's features per token (Gao et al. take half the model's width)."""
    every = {
        "base": ("stream 1 epoch", base),
        "batch256": ("stream 1 epoch, batch 256 (2x steps)", base.replace(batch_tokens=base.batch_tokens // 2)),
        "l1": ("stream 1 epoch, l1 0.03", base.replace(l1=0.03)),
        "wide": ("stream 1 epoch, d_sae 1536", base.replace(d_sae=2 * base.d_sae)),
        "skip": ("stream 1 epoch, skip transcoder (affine x W_skip)", base.replace(skip=True)),
        "topk": (f"stream 1 epoch, BatchTopK k={TOPK}", base.replace(activation="batchtopk", k=TOPK, l1=0.0)),
        "topk_skip": (f"stream 1 epoch, BatchTopK k={TOPK}, skip, d_sae {SKIP_WIDTH}", base.replace(
            activation="batchtopk", k=TOPK, l1=0.0, skip=True, d_sae=SKIP_WIDTH)),
        "topk_auxk": (f"stream 1 epoch, BatchTopK k={TOPK}, AuxK k_aux {aux_k}", base.replace(
            activation="batchtopk", k=TOPK, l1=0.0, aux_k=aux_k)),
    }
    return dict(every[key] for key in which)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, nargs="+", default=[10, 20])
    parser.add_argument("--tokens", type=int, default=98_304, help="streamed tokens (1 epoch)")
    parser.add_argument("--today-tokens", type=int, default=24_576, help="notebook 03's training tokens")
    parser.add_argument("--today-epochs", type=int, default=4)
    parser.add_argument("--eval-tokens", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--recipes", nargs="+", choices=RECIPES, default=list(RECIPES), help="streaming recipes to train")
    parser.add_argument("--run", default="/tmp/transcoder-recipe-probe", help="scratch folder for the runs' logs")
    parser.add_argument("--out", default=None, help="write the table as CSV here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    model = load_model("smollm2-135m")
    base = StreamSettings(layers=tuple(args.layers), n_tokens=args.tokens)
    recipes = streaming_recipes(base, model.cfg.d_model // 2, tuple(args.recipes))
    started = time.perf_counter()
    ev = M.eval_set(model, args.layers, token_batches(model, "validation", args.eval_tokens, base.ctx, 8, source="prose"))
    windows = run_windows(model, base)
    eval_s = time.perf_counter() - started
    runs = {name: StreamingRun.open(model, s, windows, f"{args.run}/{i}") for i, (name, s) in enumerate(recipes.items())}
    train_s = dict.fromkeys(recipes, 0.0)
    n_today = args.today_tokens // base.ctx
    kept: dict[int, dict[int, tuple[torch.Tensor, torch.Tensor]]] = {}  # window -> layer -> (x, y), sinks dropped
    forward_s = 0.0
    for index in range(base.n_chunks):
        t0 = time.perf_counter()
        which = chunk_indices(base, index)
        _, sinks, pairs = next(A.stream_activations(model, args.layers, [windows[which].long()]))
        forward_s += time.perf_counter() - t0
        for row, window in enumerate(which.tolist()):
            if window < n_today:
                kept[window] = {layer: (x[row][~sinks[row]].half(), y[row][~sinks[row]].half())
                                for layer, (x, y) in pairs.items()}
        for name, run in runs.items():
            t0 = time.perf_counter()
            run.feed(sinks, pairs)
            train_s[name] += time.perf_counter() - t0
        print(f"chunk {index + 1}/{base.n_chunks}: forward {forward_s:.0f} s, training {sum(train_s.values()):.0f} s", flush=True)
    acts = {layer: tuple(torch.cat([kept[w][layer][i] for w in sorted(kept)]) for i in (0, 1)) for layer in args.layers}
    t0 = time.perf_counter()
    steps = A.steps_per_run(len(acts[args.layers[0]][0]), base.batch_tokens, args.today_epochs)
    bound = A.steps_per_run(args.today_tokens, base.batch_tokens, args.today_epochs)  # the notebook's schedule
    cfg = dataclasses.replace(base.training(), warmup_steps=max(bound // 20, 1), resample_until=bound // 2)
    today = train_transcoders(A.epoch_batches(acts, base.batch_tokens, args.today_epochs, seed=base.seed),
                              {layer: (layer, cfg) for layer in args.layers}, model.cfg.d_model,
                              total_steps=steps, desc="today's recipe", init_data=acts)
    today_s = time.perf_counter() - t0
    per_token_forward = forward_s / (base.n_windows * base.ctx)
    rows = []
    baselines = {layer: M.ce_baselines(model, ev, layer) for layer in args.layers}

    def measure(name: str, layer: int, transcoder, tokens: int, epochs: int, n_steps: int, s: StreamSettings, trained_s: float):
        row = M.dictionary_metrics(model, ev, layer, transcoder.to_sae_lens(layer), "transcoder", baselines[layer])
        rows.append({"recipe": name, "layer": layer, "tokens": tokens, "epochs": epochs, "steps": n_steps,
                     "d_sae": s.d_sae, "l1": s.l1, "batch_tokens": s.batch_tokens,
                     **{k: row[k] for k in ("l0", "fvu", "frac_recovered", "delta_ce", "dead_frac")},
                     "train_s": trained_s / len(args.layers), "forward_s": per_token_forward * tokens})

    for layer in args.layers:
        measure(f"today: {args.today_tokens} tokens x {args.today_epochs} epochs in RAM", layer, today[layer].transcoder,
                args.today_tokens, args.today_epochs, steps, base, today_s)
        for name, run in runs.items():
            measure(name, layer, run.trainers[layer].transcoder, base.n_windows * base.ctx, 1, run.steps,
                    run.settings, train_s[name])
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    print(table.round(3).to_string(index=False))
    print(f"eval set and windows {eval_s:.0f} s; forward passes {forward_s:.0f} s for {base.n_windows * base.ctx} tokens "
          f"to layer {max(args.layers)} ({forward_s / base.n_chunks:.1f} s per chunk of {base.windows_per_chunk * base.ctx}); "
          f"total {time.perf_counter() - started:.0f} s; threads {torch.get_num_threads()}")
    if args.out:
        table.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
