"""Every paper claim across the embedded models: does a verdict replicate on a second model family?

The reference results of the default model live in ``results/<notebook>/``; a second model's, made
by ``python -m utils.reproduce --reference --model NAME``, in ``results/models/NAME/<notebook>/``
(same layout, pages included). This module pairs their claims, notebook by notebook and claim by
claim (the claim's text is its key), and says in one computed line per claim where it reproduces.

* ``model_root``: where a second model's reference results go.
* ``second_models``: the second models that have reference results.
* ``replication_line``: the line for one claim, from its verdict on each model.
* ``claim_model_rows`` / ``claim_model_table``: the claim × model table (rows, or Markdown);
  ``claim_model_section`` with its heading, for REPORT.md and README.

Public names: ``MODELS_FOLDER``, ``model_root``, ``second_models``, ``replication_line``,
``claim_model_rows``, ``claim_model_table``, ``claim_model_section``.
"""

from __future__ import annotations

from pathlib import Path

from utils.online import EMBEDDED_NAME
from utils.outputs import METRICS_FILE, RESULTS_ROOT, load_metrics
from utils.tables import markdown_table
from utils.verdicts import HOLDS

__all__ = [
    "MODELS_FOLDER",
    "claim_model_rows",
    "claim_model_section",
    "claim_model_table",
    "model_root",
    "replication_line",
    "second_models",
]

MODELS_FOLDER = "models"  # results/models/<model name>/: a second model's reference results
NOT_RUN = "not run"


def model_root(name: str, results_root: Path = RESULTS_ROOT) -> Path:
    """The folder of ``name``'s reference results (a second model's), inside ``results_root``."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"a model name must be a plain folder name such as 'gemma-3-270m', got {name!r}")
    return results_root / MODELS_FOLDER / name


def second_models(results_root: Path = RESULTS_ROOT) -> list[str]:
    """The second models with at least one notebook's reference results, by name."""
    folder = results_root / MODELS_FOLDER
    return sorted(p.name for p in folder.iterdir() if any(p.glob(f"*/{METRICS_FILE}"))) if folder.is_dir() else []


def replication_line(verdicts_by_model: dict[str, str]) -> str:
    """Where a claim reproduces (its verdict is *holds*), in words: on both (all) models, only on
    some, or on none; a model where the claim was not run is named as such."""
    missing = [m for m, v in verdicts_by_model.items() if v == NOT_RUN]
    held = [m for m, v in verdicts_by_model.items() if v == HOLDS]
    ran = [m for m in verdicts_by_model if m not in missing]
    if missing:
        return f"not run on {', '.join(missing)}" + (f"; holds on {', '.join(held)}" if held else "")
    if len(held) == len(ran):
        return "replicates on both" if len(ran) == 2 else "replicates on all"
    return f"only on {', '.join(held)}" if held else "neither"


def _claims(folder: Path) -> dict[str, str]:
    """claim -> verdict of one results folder (empty when it has no metrics)."""
    if not (folder / METRICS_FILE).is_file():
        return {}
    return {row["claim"]: row["verdict"] for row in load_metrics(folder).get("paper_vs_here", [])}


def claim_model_rows(results_root: Path = RESULTS_ROOT) -> list[dict[str, str]]:
    """One row per claim of the default model's reference (notebooks on the embedded model only):
    its verdict on every model and the line ``replication_line`` computes; empty when no second
    model has results."""
    others = second_models(results_root)
    if not others:
        return []
    rows = []
    for folder in sorted(p.parent for p in results_root.glob(f"[0-9][0-9]_*/{METRICS_FILE}")):
        main = load_metrics(folder)
        main_name = str(main.get("model"))
        if main_name != EMBEDDED_NAME:  # a notebook that trains its own models (05) has no second model
            continue
        other_claims = {name: _claims(model_root(name, results_root) / folder.name) for name in others}
        for row in main.get("paper_vs_here", []):
            verdicts = {main_name: row["verdict"]}
            verdicts |= {name: other_claims[name].get(row["claim"], NOT_RUN) for name in others}
            rows.append({"notebook": folder.name, "claim": row["claim"], **verdicts,
                         "where it reproduces": replication_line(verdicts)})
    return rows


def claim_model_table(results_root: Path = RESULTS_ROOT) -> str:
    """``claim_model_rows`` as a Markdown table, or '' when there is no second model."""
    rows = claim_model_rows(results_root)
    return markdown_table(rows) if rows else ""


def claim_model_section(results_root: Path = RESULTS_ROOT) -> str:
    """The claim × model table with its heading, or '' when no second model has reference results."""
    table = claim_model_table(results_root)
    return (
        "\n\n### Claim × model\n\nEach paper claim's verdict on every model with reference results (a "
        f"second model's are in `{results_root.name}/models/<model>/`, with their pages), and where it "
        "reproduces (its verdict is *holds*), computed from those verdicts:\n\n" + table
        if table
        else ""
    )
