#!/usr/bin/env bash
# Paper-scale check on one GPU: every notebook at scale=paper with a step budget meant to fit about
# 10 minutes in all on one H100 (the budget is an estimate: not yet measured on a GPU).
#
#   scripts/paper_check.sh            # the papers' models and data: needs the network (or filled
#                                     # Hugging Face / Sublayer Lab caches) and a CUDA GPU
#   scripts/paper_check.sh --dry-run  # no download: paper branches on the embedded model and the
#                                     # shipped stand-ins, on the GPU (a wiring check, not the papers' numbers)
#   scripts/paper_check.sh --devices  # no download: the device tests (tiny models) with the model on the GPU
#
# Environment: PY (default .venv/bin/python), DEVICE (default cuda), OUT (default results/runs/paper_check,
# git-ignored). Each notebook's metrics go to $OUT/<notebook>/, a summary with the GPU's name and the
# wall times to $OUT/summary.json. Exit status 1 if any notebook or test failed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-results/runs/paper_check}
MODE=${1:-paper}
mkdir -p "$OUT"

case "$MODE" in
  --devices)
    SUBLAYER_LAB_TEST_DEVICE="$DEVICE" HF_HUB_OFFLINE=1 "$PY" -m pytest tests/test_devices.py -q \
      --junitxml="$OUT/devices.xml"
    exit $?
    ;;
  --dry-run) DRY=1 ;;
  paper) DRY=0 ;;
  *) echo "usage: $0 [--dry-run | --devices]" >&2; exit 2 ;;
esac

"$PY" - "$OUT" "$DEVICE" "$DRY" <<'PYTHON'
import json
import sys
import time
from pathlib import Path

import torch

from utils.reproduce import notebooks, run_notebook

# Step budgets on top of each notebook's paper preset (about 90 s each on one H100, estimated).
BUDGETS = {
    "00": {},
    "01": {"n_facts": 200, "knockout_stride": 2, "enrich_stride": 2},
    "02": {"n_train_tokens": 524_288, "n_eval_tokens": 16_384},
    "03": {"n_train_tokens": 262_144, "n_eval_tokens": 4_096, "n_prompts": 40, "n_traced": 4},
    "04": {"n_calib_windows": 32, "n_val_tokens": 65_536, "n_task_items": 100, "latency_repeats": 3},
    "05": {"seeds": 2, "image_steps": 3_000, "lm_steps": 2_000},
}
out, device, dry = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
card = torch.cuda.get_device_name(0) if device.startswith("cuda") and torch.cuda.is_available() else device
runs, failed = [], False
for notebook in notebooks():
    parameters = {"device": device, **({"dry_run": True} if dry else BUDGETS.get(notebook.stem[:2], {}))}
    started = time.time()
    try:
        run_notebook(notebook, "paper", results_root=out, parameters=parameters, failed_root=out / "failed")
        status = "ok"
    except Exception as err:  # keep going: the summary names every failure
        status, failed = f"failed: {type(err).__name__}: {err}", True
    runs.append({"notebook": notebook.stem, "status": status, "wall_time_s": round(time.time() - started, 1),
                 "parameters": parameters})
    print(f"{notebook.stem}: {status} ({runs[-1]['wall_time_s']} s)", flush=True)
summary = {"card": card, "dry_run": dry, "total_s": round(sum(r["wall_time_s"] for r in runs), 1), "runs": runs}
(out / "summary.json").write_text(json.dumps(summary, indent=1))
print(f"total {summary['total_s']} s on {card}; summary in {out / 'summary.json'}")
sys.exit(1 if failed else 0)
PYTHON
