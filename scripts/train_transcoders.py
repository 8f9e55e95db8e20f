"""Train the transcoders notebook 03 loads at default scale (issue 29): one per layer of SmolLM2-135M, on the
human-written prose train split, streaming and resumable, then export them to data/transcoders/.

One forward pass per chunk of windows (only up to the last layer listed) feeds every layer's trainer; the run's
state (every trainer's weights, optimiser, schedule, step, RNG and the chunk cursor) is saved atomically every
``--save-every`` chunks in the run folder (by default under the cache folder, not the repository), and
``--resume`` continues it bit for bit. A session can stop on its own after ``--max-chunks`` chunks or
``--max-minutes`` minutes; run the same command with ``--resume`` to go on.

    RECIPE="--activation batchtopk --k 64 --l1 0"   # the shipped recipe; without it: L1-ReLU (the paper's), l1 0.03
    python scripts/train_transcoders.py --threads 2 $RECIPE               # start (all 30 layers)
    python scripts/train_transcoders.py --threads 2 $RECIPE --resume --max-minutes 300
    python scripts/train_transcoders.py $RECIPE --resume --export data/transcoders  # when done (or a partial run)

Reproduce one shipped layer from its recorded settings and compare it with the shipped file:

    python scripts/train_transcoders.py --settings-from data/transcoders/provenance.json --layers 10 \\
        --export /tmp/check-L10 --check-against data/transcoders

See data/transcoders/README.md (format, checksums, measured time per chunk).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from utils.files import check_manifest
from utils.transcoders import shipped as S

# flag -> StreamSettings field (each flag's default is None: the settings' own default, or --settings-from's value)
SETTING_FLAGS = {
    "model": str, "source": str, "layers": int, "tokens": int, "epochs": int, "ctx": int, "windows_per_chunk": int,
    "batch_tokens": int, "d_sae": int, "activation": str, "k": int, "aux_k": int, "aux_coef": float,
    "dead_after": int, "l1": float, "lr": float, "warmup_fraction": float,
    "decay_fraction": float, "resample_every": int, "resample_until_fraction": float,
    "resample_pool_tokens": int, "seed": int,
}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, kind in SETTING_FLAGS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None, nargs="+" if name == "layers" else None,
                            help=f"settings: {'n_tokens' if name == 'tokens' else name} (default: {_default(name)})")
    parser.add_argument("--settings-from", help="a run's settings.json or a shipped provenance.json; flags given override it")
    parser.add_argument("--run", help="the run folder (default: under the cache folder, named by the settings' hash)")
    parser.add_argument("--resume", action="store_true", help="continue the run saved in the run folder")
    parser.add_argument("--save-every", type=int, default=10, help="chunks between saved states")
    parser.add_argument("--max-chunks", type=int, help="stop (saved) after this many chunks in this session")
    parser.add_argument("--max-minutes", type=float, help="stop (saved) after the chunk that passes this many minutes")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--export", help="write the run's transcoders here (sae-lens, float16, provenance, manifest)")
    parser.add_argument("--max-mb", type=float, default=S.MAX_SHIPPED_BYTES / 1e6, help="refuse an export above this size")
    parser.add_argument("--check-against", help="compare each exported layer's weights with this shipped folder's")
    return parser.parse_args(argv)


def _default(name: str):
    field = "n_tokens" if name == "tokens" else name
    return getattr(S.StreamSettings(), field)


def settings_of(args: argparse.Namespace) -> S.StreamSettings:
    """StreamSettings' defaults, then --settings-from's, then the flags given."""
    fields = {}
    if args.settings_from:
        recorded = json.loads(Path(args.settings_from).read_text())
        fields = recorded.get("settings", recorded)
    for name in SETTING_FLAGS:
        value = getattr(args, name)
        if value is not None:
            fields["n_tokens" if name == "tokens" else name] = value
    return S.StreamSettings.from_dict(fields)


def compare_layers(exported: Path, shipped: Path) -> dict[str, bool]:
    """Per layer of ``exported``: is its weights file byte-identical to ``shipped``'s (by the manifests' sha256)?"""
    mine, theirs = check_manifest(exported)["sha256"], check_manifest(shipped)["sha256"]
    return {name: theirs.get(name) == digest for name, digest in mine.items() if name.endswith(".safetensors")}


def main(argv: list[str] | None = None, model=None, windows: torch.Tensor | None = None) -> S.StreamingRun:
    """Command-line entry point (``model`` and ``windows`` may be given, as the tests do with a tiny model)."""
    args = parse(argv)
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    settings = settings_of(args)
    if model is None:
        from utils.models import load_model

        model = load_model(settings.model, device=args.device)
    if windows is None:
        windows = S.run_windows(model, settings)
    folder = Path(args.run) if args.run else S.default_run_folder(settings)
    print(f"run folder {folder}: {settings.n_chunks} chunks of {settings.windows_per_chunk} x {settings.ctx} tokens, "
          f"{settings.batches_per_chunk} steps per chunk and layer, {len(settings.layers)} layers", flush=True)
    max_seconds = None if args.max_minutes is None else args.max_minutes * 60
    run = S.train_streaming(model, settings, windows, folder, args.resume, args.save_every, args.max_chunks, max_seconds)
    state = "complete" if run.done else f"partial ({run.chunk}/{settings.n_chunks} chunks): continue it with --resume"
    print(f"{folder}: {state}; {run.steps} steps per layer, {run.wall_s():.0f} s over {len(run.sessions)} session(s)")
    if args.export:
        size = S.export_shipped(run, args.export, max_bytes=int(args.max_mb * 1e6))
        print(f"exported {len(settings.layers)} layers to {args.export}: {size / 1e6:.1f} MB")
        if args.check_against:
            same = compare_layers(Path(args.export), Path(args.check_against))
            for name, equal in same.items():
                print(f"{name}: {'identical to' if equal else 'DIFFERENT from'} {args.check_against}")
            if not all(same.values()):
                sys.exit(1)
    return run


if __name__ == "__main__":
    main()
