"""Record the runs notebook 04 loads at default scale instead of recomputing them (data/pruning/runs.json).

On one machine (a GPU makes it minutes; two CPU cores take hours): SPRINT's latency model measured there
with long-context KV-cache generation (dense, 25% of attentions removed, 25% of MLPs removed, interleaved
repeats); the refit diagnostic; then, for each calibration seed, every method's pruning order with its
measured cumulative pruning time and the evaluation of the pruned model at each target (perplexity,
cloze accuracy, templated probes). The file records the machine, date, git commit, parameters and
calibration hashes, and a SHA-256 checksum of its content that the notebook checks on load (with the
file's schema: every seed × method of its protocol).

    python scripts/record_baseline_orders.py --device cuda --out data/pruning/runs.json

A recording can be spread over several sessions (``--resume``, and ``--methods`` to choose what this one
records). Each session times a dense forward pass over the first seed's calibration tokens; the notebook
puts every run's pruning time on the first session's machine by the ratio of those passes, and each run
names the session that timed it.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from utils import pruning
from utils.models import load_model
from utils.provenance import machine as this_machine
from utils.provenance import now_utc


def machine() -> dict:
    """Where this ran (``utils.provenance.machine``), with the load average and the date."""
    return {**this_machine(), "load_average": os.getloadavg(), "date_utc": now_utc()}


def protocol_of(sizes: dict, diagnostic_windows: list[int]) -> pruning.RecordingProtocol:
    """What this script records: a scale preset's sizes and text source, every method, SPRINT's top-k 5."""
    return pruning.RecordingProtocol(
        targets=sizes["targets"], n_calib_windows=sizes["n_calib_windows"], calib_ctx=sizes["calib_ctx"],
        calib_seeds=sizes["calib_seeds"], n_val_tokens=sizes["n_val_tokens"], val_ctx=sizes["val_ctx"],
        n_task_items=sizes["n_task_items"], n_cloze_items=sizes["n_cloze_items"], cloze_ctx=sizes["cloze_ctx"],
        methods=list(pruning.METHODS), top_k=5, ridge_grid=sizes["ridge_grid"],
        diagnostic_windows=diagnostic_windows, diagnostic_candidates=0, source=sizes["source"])


def record(args: argparse.Namespace) -> None:
    """Measure the latency model, then record every method's runs, and write them."""
    torch.set_grad_enabled(False)
    torch.set_num_threads(args.threads)
    model = load_model(args.model, device=args.device)
    sizes = {**pruning.PRESETS["default"], **pruning.PRESETS[args.scale]}
    sizes.update({k: v for k, v in (("source", args.source), ("n_val_tokens", args.val_tokens)) if v is not None})
    protocol = protocol_of(sizes, args.diagnostic_windows)
    started = time.perf_counter()
    partial = pruning.read_runs(args.out) if args.resume and Path(args.out).is_file() else None  # checksum and schema checked
    if partial is None:
        _, latency_raw = pruning.measure_latency_model(model, sizes["latency_prompt_len"], sizes["latency_new_tokens"], args.repeats)
        print("latency", json.dumps(latency_raw["samples_s"]), f"{time.perf_counter() - started:.0f} s", flush=True)
    else:
        latency_raw = partial["latency"]
        print(f"resuming {args.out}: {sum(map(len, partial['runs'].values()))} runs already recorded", flush=True)
        if args.redo_refit:
            partial = pruning.redo_refit(model, partial, protocol, session=len(partial.get("sessions", [])))
            print(f"refit diagnostic measured again (ridge {partial['ridge']}); {', '.join(pruning.TUNED_METHODS)} "
                  "will be recorded again", flush=True)
    calib, _ = pruning.calibration_split(model, protocol.n_calib_windows, protocol.calib_ctx, protocol.calib_seeds[0], protocol.source)
    here = {**machine(), "reference_pass_s": pruning.reference_pass_s(model, calib)}
    print(f"dense pass over {calib.numel()} calibration tokens: {here['reference_pass_s']:.2f} s", flush=True)
    sessions = [*(partial or {}).get("sessions", []), here]  # one entry per start or resume
    earlier_s = (partial or {}).get("wall_s", 0.0)
    provenance = lambda: {"machine": sessions[0], "sessions": sessions, "wall_s": earlier_s + time.perf_counter() - started}  # noqa: E731
    save_partial = lambda partial: pruning.write_runs(args.out, {**partial, **provenance()})  # noqa: E731
    payload = pruning.record_runs(model, latency_raw, protocol, on_progress=save_partial,
                                  resume=partial, methods=args.methods, session=len(sessions) - 1)
    sessions[-1] = {**sessions[-1], "finished_utc": machine()["date_utc"], "load_average_at_end": os.getloadavg()}
    payload.update(provenance())
    pruning.write_runs(args.out, payload)
    missing = {m for methods in pruning.missing_runs(payload).values() for m in methods}
    if not missing:
        state = "complete"
    elif missing & set(args.methods or pruning.METHODS):
        state = "partial: continue it with --resume"
    else:  # what another model's file may leave out (the notebook says so)
        state = f"every seed of the --methods recorded; not recorded: {', '.join(sorted(missing))}"
    print(f"wrote {args.out} ({state}): {payload['wall_s']:.0f} s of recording in {len(sessions)} session(s); ridge {payload['ridge']}")


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of the latency model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--scale", default="default", choices=list(pruning.PRESETS))
    parser.add_argument("--resume", action="store_true",
                        help="continue the partial recording in --out (same protocol) instead of starting afresh")
    parser.add_argument("--redo-refit", action="store_true",
                        help="with --resume, after a change to SPRINT's refit: measure the refit diagnostic and ridge "
                             "again and record the tuned SPRINT runs again, keeping the latency model and every other run")
    parser.add_argument("--methods", nargs="+", choices=pruning.METHODS,
                        help="record only these methods now (for every seed); the file stays partial until all are in (another model than the embedded one may leave out the greedy sublayer baselines for good)")
    parser.add_argument("--source", choices=["shipped", "prose"],
                        help="text to calibrate and evaluate on (default: the preset's; prose = human-written)")
    parser.add_argument("--val-tokens", type=int, help="held-out tokens each snapshot is scored on (default: the preset's)")
    parser.add_argument("--diagnostic-windows", type=int, nargs="+", default=[16, 32, 64],
                        help="calibration sizes (windows of the preset's length) of the refit diagnostic")
    args = parser.parse_args()
    if args.redo_refit and not (args.resume and Path(args.out).is_file()):
        parser.error(f"--redo-refit changes an existing recording: add --resume and point --out at it ({args.out} is not a file)")
    record(args)


if __name__ == "__main__":
    main()
