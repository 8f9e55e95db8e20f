"""Transcoder benchmarks on the embedded model (prints ratios; no assertions).

Throughputs are tokens per CPU-second (process time, best of 3 where noted), which a busy shared
machine disturbs far less than wall time.

1. Training throughput (tokens/s): our transcoder trainer vs sae-lens's SAETrainer (standard SAE), same
   dictionary size, same batches of the same cached activations. Target ratio >= 1.0.
2. Activation-store throughput (tokens/s): ``stream_activations`` (runs the model up to the layer,
   ``stop_at_layer``) vs a full-model forward capturing the same hooks.

    .venv/bin/python benchmarks/bench_transcoders.py [--layer 15 --tokens 4096 --d-sae 2304 --batch 512]
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from benchlib import corpus_run, timed

from utils import transcoders as T


def store_throughput(model, layer: int, windows: list[torch.Tensor]) -> tuple[float, float]:
    """Tokens/s of the activation store and of a full forward capturing the same two hooks."""
    n = sum(w.numel() for w in windows)
    names = set(T.mlp_hooks(layer))
    full = timed(
        lambda: [model.run_with_cache(w, names_filter=lambda h: h in names) for w in windows]
    )
    store = timed(lambda: list(T.stream_activations(model, [layer], windows)))  # stop_at_layer
    return n / store, n / full


def training_throughput(
    batches: list[dict], layer: int, d_model: int, d_sae: int, repeats: int = 3
) -> tuple[float, float]:
    """Best-of-``repeats`` tokens/s of our trainer and of sae-lens's SAETrainer on the same batches
    (the two alternate, so a busy machine slows both alike)."""
    # sae-lens takes ~1.5 s to import and only this comparison needs it: imported here, not at the top
    from sae_lens import StandardTrainingSAE, StandardTrainingSAEConfig
    from sae_lens.config import SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    n = sum(b[layer][0].shape[0] for b in batches)
    batch_size = batches[0][layer][1].shape[0]
    ours_s, theirs_s = [], []
    for _ in range(repeats):
        cfg = T.TranscoderTraining(d_sae=d_sae, l1=1e-3, resample_every=0, checkpoint_every=0)
        ours = T.TranscoderTrainer(cfg, layer, d_model, d_model)
        ours_s.append(timed(lambda ours=ours: [ours.step(*b[layer]) for b in batches]))
        sae = StandardTrainingSAE(
            StandardTrainingSAEConfig(d_in=d_model, d_sae=d_sae, l1_coefficient=1.0)
        )
        trainer_cfg = SAETrainerConfig(
            total_training_samples=n, train_batch_size_samples=batch_size, lr=1e-3, lr_end=1e-3
        )
        trainer = SAETrainer(
            cfg=trainer_cfg, sae=sae, data_provider=iter([b[layer][1] for b in batches])
        )
        with torch.enable_grad():
            theirs_s.append(timed(trainer.fit))
    return n / min(ours_s), n / min(theirs_s)


def main() -> None:
    """Run both benchmarks and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", type=int, default=15)
    parser.add_argument("--d-sae", type=int, default=2304)
    parser.add_argument("--batch", type=int, default=512)
    args, model, windows = corpus_run(parser, tokens=4096)
    model(windows[0][:1])  # warm-up

    store, full = store_throughput(model, args.layer, windows)
    print(
        f"activation store, layer {args.layer}: {store:,.0f} tokens/s with stop_at_layer vs {full:,.0f} full forward "
        f"-> ratio {store / full:.2f}"
    )

    with tempfile.TemporaryDirectory() as tmp:
        folder = T.cache_activations(model, [args.layer], windows, f"{tmp}/acts")
        batches = list(
            T.shuffled(T.cached_chunks(folder, [args.layer]), args.batch, 8 * args.batch)
        )
    ours, theirs = training_throughput(batches, args.layer, model.cfg.d_model, args.d_sae)
    print(
        f"training, d_sae {args.d_sae}, batch {args.batch}: transcoder {ours:,.0f} tokens/s vs sae-lens SAE {theirs:,.0f} "
        f"-> ratio {ours / theirs:.2f} (target >= 1.0)"
    )


if __name__ == "__main__":
    main()
