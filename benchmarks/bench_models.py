"""Embedded-model benchmarks: cold conversion, warm load, and forward speed against transformers.

    python benchmarks/bench_models.py [--skip-cold]

Prints times and ratios; asserts nothing. Targets (issue #2): warm load <= 5 s, cold <= 60 s,
warm-load peak RSS <= 2 GB, TransformerLens/transformers throughput ratio >= 0.8 for an 8x128
batch and for a 10-token prompt. HF and TransformerLens calls are interleaved so that load from
other processes affects both sides alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

LOAD_SNIPPET = """
import resource, time
t = time.perf_counter()
from utils.models import load_model
imported = time.perf_counter()
model = load_model()
print(f"{imported - t:.2f} {time.perf_counter() - imported:.2f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")
"""


def timed_load(cache: str) -> tuple[float, float, float]:
    """Seconds to import (torch, TransformerLens, transformers), seconds of load_model(), and peak RSS (MB),
    in a fresh process using cache folder ``cache``."""
    env = {**os.environ, "SUBLAYER_LAB_CACHE": cache, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", LOAD_SNIPPET], env=env, capture_output=True, text=True, check=True)
    imports, seconds, rss = out.stdout.split()[-3:]
    return float(imports), float(seconds), float(rss)


def interleaved_median(fns: dict, inputs: torch.Tensor, repeats: int) -> dict[str, float]:
    """Median seconds per call of each function on ``inputs``, calls interleaved, after a warm-up."""
    times = {name: [] for name in fns}
    with torch.no_grad():
        for fn in fns.values():
            fn(inputs)
        for _ in range(repeats):
            for name, fn in fns.items():
                start = time.perf_counter()
                fn(inputs)
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    """Run and print the benchmarks."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-cold", action="store_true", help="skip the cold conversion (about 30-60 s)")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()

    from utils.models import cache_dir, load_hf_embedded, load_model

    if not args.skip_cold:
        with tempfile.TemporaryDirectory() as empty:
            imports, cold, cold_rss = timed_load(empty)
        print(f"cold conversion: {cold:.1f} s + {imports:.1f} s of imports (target <= 60 s), peak RSS {cold_rss:.0f} MB")
    imports, warm, warm_rss = timed_load(str(cache_dir()))
    print(
        f"warm load from cache: {warm:.1f} s + {imports:.1f} s of imports = {warm + imports:.1f} s (target <= 5 s), "
        f"peak RSS {warm_rss:.0f} MB (target <= 2048 MB)"
    )

    hf_model, _ = load_hf_embedded()
    tl_model = load_model()
    fns = {"transformers": lambda x: hf_model(x).logits, "transformer_lens": tl_model}
    generator = torch.Generator().manual_seed(0)
    for shape in [(8, 128), (1, 10)]:
        tokens = torch.randint(0, tl_model.cfg.d_vocab, shape, generator=generator)
        median = interleaved_median(fns, tokens, args.repeats)
        ratio = median["transformers"] / median["transformer_lens"]
        print(
            f"forward {shape[0]}x{shape[1]}: transformers {median['transformers'] * 1e3:.1f} ms, "
            f"TransformerLens {median['transformer_lens'] * 1e3:.1f} ms, throughput ratio TL/HF {ratio:.2f} (target >= 0.8)"
        )


if __name__ == "__main__":
    main()
