"""Recorded runs (data/pruning/runs.json): recording them, the file's checksum and schema, resuming, timing scales.

What takes hours on two CPU cores (every method on every calibration seed, evaluated at every target)
is recorded once by ``scripts/record_baseline_orders.py`` and loaded by notebook 04 at ``default``.

* ``record_runs``: the refit diagnostic (first seed, ``measure_refit_diagnostic``), then for each
  calibration seed every method's order, measured cumulative pruning time and quality at each target;
  resumable (``resumable``, ``missing_runs``), each run naming the recording session that timed it; a
  pruned model that two methods reach (``snapshot_key``) is evaluated once (``evaluated_once``). When the
  refit changes, ``redo_refit`` keeps the rest and drops the runs that used it (``TUNED_METHODS``).
* ``write_runs`` / ``read_runs``: the file, written atomically with a SHA-256 ``checksum`` of its
  content (``content_checksum``), read back with the checksum and the schema checked
  (``schema_problems``). Every problem is a ``RecordedRunsError`` naming the file and the command
  that rebuilds it (``rebuild_command``).
* ``check_recorded``: loaded runs must be complete (every seed × method of their protocol), made
  with the notebook's protocol and the same calibration tokens.
* ``reference_pass_s`` / ``time_scales``: each session times a dense pass, so pruning times of
  sessions on different machines are put on the first session's machine.

A recording calibrated on another text than ``RECORDED_SOURCE`` lives beside it, named by its source
(``recorded_runs_file``: ``data/pruning/runs.shipped.json``, calibrated on the model's own text).

Public names: ``RECORDED_RUNS``, ``RECORDED_SOURCE``, ``recorded_runs_file``, ``RecordedRunsError``, ``record_runs``, ``write_runs``,
``read_runs``, ``content_checksum``, ``schema_problems``, ``check_recorded``, ``missing_runs``,
``resumable``, ``rebuild_command``, ``reference_pass_s``, ``time_scales``, ``snapshot_key``, ``evaluated_once``,
``measure_refit_diagnostic``, ``redo_refit``, ``TUNED_METHODS``.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from utils.evaluation import task_table
from utils.models import EMBEDDED_NAME
from utils.pruning.diagnostic import choose_ridge, diagnostic_summary, refit_diagnostic
from utils.pruning.latency import latency_from_raw
from utils.pruning.methods import run_method
from utils.pruning.protocol import (
    RecordingProtocol,
    calibration_split,
    eval_data,
    quality_metrics,
    tokens_hash,
)
from utils.pruning.pruned_model import original_down_projections
from utils.pruning.sprint import SPRINT_VARIANTS
from utils.sublayers import skipped_now

__all__ = [
    "CHECKSUM_KEY",
    "RECORDED_RUNS",
    "RECORDED_SOURCE",
    "RecordedRunsError",
    "check_recorded",
    "content_checksum",
    "evaluated_once",
    "missing_runs",
    "read_runs",
    "rebuild_command",
    "recorded_runs_file",
    "record_runs",
    "measure_refit_diagnostic",
    "redo_refit",
    "reference_pass_s",
    "resumable",
    "schema_problems",
    "snapshot_key",
    "time_scales",
    "TUNED_METHODS",
    "write_runs",
]

RECORDED_RUNS = "data/pruning/runs.json"  # relative to the repository root
RECORDED_SOURCE = "prose"  # the calibration text of RECORDED_RUNS (human prose), the default scale's ``source``
RECORD_SCRIPT = "scripts/record_baseline_orders.py"
CHECKSUM_KEY = "checksum"  # "sha256:<hex>" of the canonical JSON of every other key
TUNED_METHODS = tuple(name for name, (_, tuning) in SPRINT_VARIANTS.items() if tuning)  # the runs that use the refit


class RecordedRunsError(ValueError):
    """A recorded-runs file is unreadable, damaged, partial or from another protocol (the message says
    which file, and the command that rebuilds it)."""


def recorded_runs_file(model_name: str = EMBEDDED_NAME, source: str = RECORDED_SOURCE) -> str:
    """Where ``model_name``'s runs calibrated on ``source`` live, relative to the repository root:
    ``RECORDED_RUNS`` for the embedded model, ``data/pruning/runs-<model>.json`` for another, with
    ``.<source>`` before the suffix for another source than ``RECORDED_SOURCE``."""
    base = RECORDED_RUNS.removesuffix(".json")
    if model_name != EMBEDDED_NAME:
        base += f"-{model_name.replace('/', '--')}"
    return base + ("" if source == RECORDED_SOURCE else f".{source}") + ".json"


def rebuild_command(
    out: str | os.PathLike, resume: bool = False, model_name: str = EMBEDDED_NAME, source: str = RECORDED_SOURCE
) -> str:
    """The command that records (or, with ``resume``, continues) ``model_name``'s runs file ``out``."""
    model = "" if model_name == EMBEDDED_NAME else f" --model {model_name}"
    text = "" if source == RECORDED_SOURCE else f" --source {source}"
    return f"python {RECORD_SCRIPT}{model}{text} --out {out}" + (" --resume" if resume else "")


def _damaged(path: Path, out: str, problem: str) -> RecordedRunsError:
    """The error for a file that cannot be used as it is: restore it or record it again."""
    return RecordedRunsError(
        f"{path} {problem}. Restore it (the shipped file: `git checkout -- {out}`) or record it again: delete it and run "
        f"`{rebuild_command(out)}` (hours on two CPU cores, minutes on a GPU); notebook 04 can also compute "
        "everything live with recompute_baselines=True")


# ----------------------------------------------------------------------------- the file


def content_checksum(payload: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of a recording's content: every key but the checksum, as canonical JSON."""
    content = {k: v for k, v in payload.items() if k != CHECKSUM_KEY}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def write_runs(path: str | os.PathLike, payload: Mapping[str, Any]) -> None:
    """Write ``payload`` as JSON with its checksum, atomically (a unique temporary file, then a rename)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    content = {k: v for k, v in payload.items() if k != CHECKSUM_KEY}
    text = json.dumps({**content, CHECKSUM_KEY: content_checksum(content)}, indent=1) + "\n"
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex}.tmp")  # unique: two writers never share it
    try:
        tmp.write_text(text)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)


_TOP_LEVEL: dict[str, type | tuple[type, ...]] = {
    "kind": str, "complete": bool, "protocol": dict, "calibration_hashes": dict, "latency": dict, "dense": dict,
    "tasks": list, "kept_tasks": list, "diagnostic": list, "diagnostic_summary": list, "ridge": (int, float),
    "runs": dict, "machine": dict,
}
_NUMBER = (int, float)


def _run_problems(where: str, run: Any) -> list[str]:
    """What is wrong with one recorded run (``runs[seed][method]``)."""
    if not isinstance(run, dict):
        return [f"{where} is not an object"]
    problems = []
    if not isinstance(run.get("order"), list) or not all(isinstance(i, int) for i in run["order"]):
        problems.append(f"{where}.order is not a list of sublayer indices")
    if not isinstance(run.get("total_time_s"), _NUMBER):
        problems.append(f"{where}.total_time_s is not a number")
    if not isinstance(run.get("session", 0), int):
        problems.append(f"{where}.session is not an integer")
    steps = run.get("steps")
    if not isinstance(steps, list) or not steps:
        return [*problems, f"{where}.steps is not a non-empty list"]
    for i, step in enumerate(steps):
        if not (isinstance(step, dict) and isinstance(step.get("pruned"), list)
                and all(isinstance(step.get(k), _NUMBER) for k in ("time_s", "estimate"))):
            problems.append(f"{where}.steps[{i}] lacks pruned / time_s / estimate")
    return problems


def schema_problems(payload: Mapping[str, Any]) -> list[str]:
    """What is wrong with a recording's structure (empty when nothing is): keys and types, a protocol
    with exactly the known fields, the latency timings, and every run of a seed and method the protocol names."""
    problems = [f"{key!r} is missing or not a {kind.__name__ if isinstance(kind, type) else 'number'}"
                for key, kind in _TOP_LEVEL.items() if not isinstance(payload.get(key), kind)]
    if problems:
        return problems
    if payload["kind"] != "runs":
        problems.append(f"kind is {payload['kind']!r}, not 'runs'")
    try:
        protocol = RecordingProtocol(**payload["protocol"])
    except TypeError as exc:
        return [*problems, f"protocol: {exc}"]
    samples = payload["latency"].get("samples_s")
    if not (isinstance(samples, dict) and all(isinstance(samples.get(k), list) and samples[k]
                                              for k in ("dense", "attn_removed", "mlp_removed"))):
        problems.append("latency.samples_s lacks the dense / attn_removed / mlp_removed timings")
    if not all(isinstance(payload["latency"].get(k), int) for k in ("n_removed", "prompt_len", "new_tokens")):
        problems.append("latency lacks n_removed / prompt_len / new_tokens")
    seeds = {str(s) for s in protocol.calib_seeds}
    for seed, runs in payload["runs"].items():
        if seed not in seeds:
            problems.append(f"runs[{seed!r}]: seed {seed} is not in the protocol's calib_seeds {protocol.calib_seeds}")
        elif not isinstance(runs, dict):
            problems.append(f"runs[{seed!r}] is not an object")
        else:
            if seed not in payload["calibration_hashes"]:
                problems.append(f"calibration_hashes lacks seed {seed}")
            for method, run in runs.items():
                if method not in protocol.methods:
                    problems.append(f"runs[{seed!r}][{method!r}]: {method} is not in the protocol's methods")
                problems += _run_problems(f"runs[{seed!r}][{method!r}]", run)
    return problems


def read_runs(path: str | os.PathLike, out: str | None = None) -> dict:
    """A recorded-runs file, checked: readable JSON, the stored checksum, the schema.

    ``out`` is how the rebuild command in an error names the file (default: ``path``).
    """
    path = Path(path)
    out = out or str(path)
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise _damaged(path, out, "is not text (damaged)") from None
    if not text.strip():
        raise _damaged(path, out, "is empty")
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _damaged(path, out, f"is not valid JSON (truncated or damaged: {exc})") from None
    if not isinstance(payload, dict):
        raise _damaged(path, out, "does not hold a recording (a JSON object)")
    if CHECKSUM_KEY not in payload:
        raise _damaged(path, out, f"has no {CHECKSUM_KEY!r}: it was not written by {RECORD_SCRIPT}")
    if payload[CHECKSUM_KEY] != content_checksum(payload):
        raise _damaged(path, out, "does not match its checksum: its content was edited or damaged after it was written")
    problems = schema_problems(payload)
    if problems:
        raise _damaged(path, out, "is not a valid recording: " + "; ".join(problems[:5]) + ("; ..." if len(problems) > 5 else ""))
    return payload


# ----------------------------------------------------------------------------- recording


def missing_runs(payload: Mapping[str, Any]) -> dict[int, list[str]]:
    """Per calibration seed of a recording's protocol: the methods it has no run for yet."""
    protocol = payload["protocol"]
    return {s: [m for m in protocol["methods"] if m not in payload["runs"].get(str(s), {})] for s in protocol["calib_seeds"]}


def resumable(partial: Mapping[str, Any], protocol: RecordingProtocol) -> dict:
    """A copy of a partial recording to continue, after checking it was made with ``protocol``."""
    if not any(missing_runs(partial).values()):
        raise ValueError("cannot resume a complete recording; delete it or write to another file")
    recorded = RecordingProtocol(**partial["protocol"])
    if recorded != protocol:
        raise ValueError(f"cannot resume: the partial recording used another protocol ({recorded} vs {protocol})")
    return json.loads(json.dumps(partial))


def snapshot_key(model: HookedTransformer) -> str:
    """A digest of the pruned model's state: its skipped sublayers and every MLP's down-projection (all that
    pruning and SPRINT's refit change; ``restore_dense`` undoes exactly these)."""
    digest = hashlib.sha256(repr(sorted(s.index for s in skipped_now(model))).encode())
    for block in model.blocks:
        digest.update(block.mlp.W_out.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


def evaluated_once(measure: Callable[[HookedTransformer], dict]) -> Callable[[HookedTransformer], dict]:
    """``measure`` run once per pruned state (``snapshot_key``): methods that reach the very same model at a
    target (SPRINT with and without its latency term often do) share one evaluation, bit for bit."""
    seen: dict[str, dict] = {}

    def measure_once(model: HookedTransformer) -> dict:
        key = snapshot_key(model)
        if key not in seen:
            seen[key] = measure(model)
        return dict(seen[key])

    return measure_once


def measure_refit_diagnostic(model: HookedTransformer, protocol: RecordingProtocol) -> tuple[list[dict], list[dict]]:
    """(the refit diagnostic's rows, their summary) of a recording: on the first calibration seed, at each of the
    protocol's diagnostic window counts."""
    diagnostic = []
    for n_windows in protocol.diagnostic_windows:
        calib, held = calibration_split(model, n_windows, protocol.calib_ctx, protocol.calib_seeds[0], protocol.source)
        diagnostic += refit_diagnostic(model, calib, held, protocol.ridge_grid, protocol.diagnostic_candidates)
    return diagnostic, diagnostic_summary(diagnostic)


def redo_refit(model: HookedTransformer, recording: Mapping[str, Any], protocol: RecordingProtocol, session: int) -> dict:
    """A copy of ``recording`` for a refit that changed: its diagnostic and ridge measured again and the runs that
    used the refit (``TUNED_METHODS``) dropped, so that ``record_runs(resume=...)`` makes them again; the latency
    model and every other run are kept. What was redone, and in which session, is listed under 'redone'."""
    kept_runs = {seed: {m: run for m, run in runs.items() if m not in TUNED_METHODS} for seed, runs in recording["runs"].items()}
    payload = resumable({**recording, "runs": kept_runs}, protocol)  # checks the protocol
    diagnostic, summary = measure_refit_diagnostic(model, protocol)
    ridge = choose_ridge(summary, protocol.n_calib_windows * protocol.calib_ctx)
    payload.update(diagnostic=diagnostic, diagnostic_summary=summary, ridge=ridge, complete=False)
    payload.setdefault("redone", []).append({"session": session, "diagnostic": True, "methods": list(TUNED_METHODS)})
    return payload


def record_runs(
    model: HookedTransformer, latency_raw: dict, protocol: RecordingProtocol, ridge: float | None = None,
    on_progress: Callable[[dict], None] | None = None, resume: dict | None = None,
    methods: Sequence[str] | None = None, session: int = 0,
) -> dict:
    """Everything notebook 04 compares: the refit diagnostic (first seed), then for each calibration seed
    every method's order, measured cumulative pruning time and quality at each target.

    ``ridge`` None chooses it by the diagnostic (lowest held-out error at the protocol's calibration size).
    ``on_progress(partial payload)`` is called after every method (e.g. to save partial work).
    ``resume``, a partial payload of the same protocol, is continued: its latency model, diagnostic,
    ridge and finished methods are kept and only the missing (seed, method) runs are made.
    ``methods`` limits this call to those methods (the payload stays partial until every one is recorded);
    each run keeps ``session``, the index of the recording session (machine) that timed it.
    """
    data = eval_data(model, protocol)
    originals = original_down_projections(model)
    if resume is not None:
        payload = resumable(resume, protocol)
        latency_raw, chosen, kept = payload["latency"], payload["ridge"], payload["kept_tasks"]
    else:
        table = task_table(model, data.tasks)
        kept = [row["task"] for row in table if row["kept"]]
        diagnostic, summary = measure_refit_diagnostic(model, protocol)
        chosen = choose_ridge(summary, protocol.n_calib_windows * protocol.calib_ctx) if ridge is None else ridge
        payload = {"kind": "runs", "complete": False, "protocol": asdict(protocol), "calibration_hashes": {},
                   "latency": latency_raw, "dense": quality_metrics(model, data, kept), "tasks": table, "kept_tasks": kept,
                   "diagnostic": diagnostic, "diagnostic_summary": summary, "ridge": chosen, "runs": {}}
    latency = latency_from_raw(latency_raw, model.cfg.n_layers)
    on_step = evaluated_once(lambda m: quality_metrics(m, data, kept))
    unknown = set(methods or ()) - set(protocol.methods)
    if unknown:
        raise ValueError(f"methods {sorted(unknown)} are not in the protocol's {protocol.methods}")
    for seed in protocol.calib_seeds:
        calib, _ = calibration_split(model, protocol.n_calib_windows, protocol.calib_ctx, seed, protocol.source)
        digest = tokens_hash(calib)
        if payload["calibration_hashes"].setdefault(str(seed), digest) != digest:
            raise ValueError(f"cannot resume: seed {seed}'s calibration tokens differ from the partial recording's")
        runs = payload["runs"].setdefault(str(seed), {})
        todo = [m for m in protocol.methods if m not in runs and (methods is None or m in methods)]
        for name in tqdm(todo, desc=f"seed {seed}"):
            result = run_method(name, model, calib, latency, protocol.targets, originals, protocol.top_k, chosen, on_step)
            runs[name] = {"order": result.order, "total_time_s": result.total_time_s, "steps": result.steps, "session": session}
            if on_progress:
                on_progress(payload)
        payload["runs"][str(seed)] = {name: runs[name] for name in protocol.methods if name in runs}  # protocol order
    payload["complete"] = not any(missing_runs(payload).values())
    return payload


# ----------------------------------------------------------------------------- checking and timing scales


def check_recorded(
    payload: Mapping[str, Any], protocol: RecordingProtocol, hashes: dict[str, str], path: str = RECORDED_RUNS,
    optional: Sequence[str] = (),
) -> None:
    """Raise if loaded runs lack a (seed, method) run of their protocol (a method in ``optional`` may be
    missing from every seed, not from some), or were recorded with another protocol or other
    calibration tokens; ``path`` names the file in the message."""
    lacking = missing_runs(payload)
    partly = {m for m in optional if 0 < sum(m in methods for methods in lacking.values()) < len(lacking)}
    missing = {seed: [m for m in methods if m not in optional or m in partly] for seed, methods in lacking.items()}
    if any(missing.values()):
        raise RecordedRunsError(f"{path}: the recorded runs are partial (missing, per calibration seed: {missing}); "
                                f"continue them with `{rebuild_command(path, True, source=protocol.source)}`")
    ignored = ("diagnostic_windows", "diagnostic_candidates")  # the diagnostic does not change the runs
    recorded = RecordingProtocol(**payload["protocol"])
    diff = {f.name: (getattr(recorded, f.name), getattr(protocol, f.name)) for f in fields(RecordingProtocol)
            if f.name not in ignored and getattr(protocol, f.name) != getattr(recorded, f.name)}
    again = (f"set recompute_baselines=True, or record them again: delete {path} and run "
             f"`{rebuild_command(path, source=protocol.source)}`")
    if diff:
        raise RecordedRunsError(f"{path}: the recorded runs used other parameters {diff} (recorded, here); {again}")
    if payload["calibration_hashes"] != hashes:
        raise RecordedRunsError(f"{path}: the recorded runs used other calibration tokens (hash mismatch: the corpus or "
                                f"tokenizer changed); {again}")


def reference_pass_s(model: HookedTransformer, tokens: torch.Tensor, repeats: int = 3) -> float:
    """Median wall time of a dense forward pass over ``tokens`` [n, pos]: the speed of the machine that times runs."""
    tokens = tokens.to(model.cfg.device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(tokens)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_scales(payload: Mapping[str, Any]) -> dict[int, float]:
    """Per recording session: the factor that puts its pruning times on the first session's machine
    (ratio of their timed dense passes); 1 for a recording made in one session."""
    passes = [s.get("reference_pass_s") for s in payload.get("sessions", [])]
    if not passes or None in passes:
        return {i: 1.0 for i in range(max(len(passes), 1))}
    return {i: passes[0] / p for i, p in enumerate(passes)}
