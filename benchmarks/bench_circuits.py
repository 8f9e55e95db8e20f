"""Multi-layer transcoder training: one streaming pass feeding every layer vs one pass per layer.

Prints the CPU-time ratio (process time, steadier than wall time on a shared machine) (one pass per layer / one shared pass; > 1 means the shared pass wins).

    .venv/bin/python benchmarks/bench_circuits.py [--layers 6 --tokens 2048 --d-sae 576]
"""

from __future__ import annotations

import argparse
import tempfile

from benchlib import corpus_run, timed

from utils import transcoders as T


def main() -> None:
    """Time both ways of training transcoders for ``--layers`` layers spread over the model."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--d-sae", type=int, default=576)
    parser.add_argument("--batch", type=int, default=256)
    args, model, windows = corpus_run(parser, tokens=2048)
    n = model.cfg.n_layers
    layers = sorted({round(i * (n - 1) / max(args.layers - 1, 1)) for i in range(args.layers)})
    settings = {"d_sae": args.d_sae, "l1": 5e-3, "seed": 0}
    with tempfile.TemporaryDirectory() as tmp:
        T.train_all_layers(model, [0], windows[:1], f"{tmp}/warm-up", settings, args.batch)
        shared = timed(lambda: T.train_all_layers(model, layers, windows, f"{tmp}/shared", settings, args.batch))
        separate = timed(
            lambda: [
                T.train_all_layers(model, [layer], windows, f"{tmp}/L{layer}", settings, args.batch)
                for layer in layers
            ]
        )
    print(
        f"layers {layers}, {args.tokens} tokens: shared pass {shared:.1f} s, one pass per layer {separate:.1f} s "
        f"-> ratio {separate / shared:.2f}"
    )


if __name__ == "__main__":
    main()
