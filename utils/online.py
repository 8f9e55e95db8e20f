"""What a notebook needs from the network at paper scale, and the offline stand-ins of a dry run.

A parameter named ``model_name``, ``source``, ``*_source`` or ``lm_eval_tasks`` names a model, a
dataset or lm-eval-harness tasks (whose datasets lm-eval downloads). Before a
paper-scale run does any work, ``require_online`` checks once (short timeout, or ``HF_HUB_OFFLINE``
read at call time) that the Hugging Face hub is reachable; when it is not, the run stops with one
message naming every model and dataset it needs and how to get them. ``dry_run_value`` swaps each of
them for an offline stand-in in the paper's format: the embedded model, the shipped corpus as a local
json-lines dataset (read through the same ``datasets`` streaming path), a known_1000-format JSON
built from the shipped facts, subject texts from the shipped corpus, and digits for CIFAR-100.
Whether the hub can be reached at all is ``utils.hub``'s question.

Public names: ``is_source_parameter``, ``online_needs``, ``require_online``, ``Need``,
``OnlineRequiredError``, ``dry_run_value``, ``stand_in_corpus``, ``stand_in_known_1000``,
``stand_in_subject_texts``, ``known_1000_records``, ``require_local_models``, ``DATASETS``,
``STAND_INS``, ``LM_EVAL_TASKS``, ``EMBEDDED_NAME``, ``GEMMA_NAME``, ``LOCAL_MODELS``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from utils.data import ONLINE_CORPORA, SPLITS, corpus_documents, load_facts
from utils.files import write_text_atomic
from utils.hub import offline_reason
from utils.paths import cache_dir

__all__ = [
    "DATASETS",
    "EMBEDDED_NAME",
    "GEMMA_NAME",
    "LM_EVAL_TASKS",
    "LOCAL_MODELS",
    "STAND_INS",
    "Need",
    "OnlineRequiredError",
    "dry_run_value",
    "is_source_parameter",
    "known_1000_records",
    "online_needs",
    "require_local_models",
    "require_online",
    "stand_in_corpus",
    "stand_in_known_1000",
    "stand_in_subject_texts",
]

EMBEDDED_NAME = "smollm2-135m"  # utils.models.EMBEDDED_NAME (kept here so this module stays light)
GEMMA_NAME = "gemma-3-270m"  # utils.gemma.GEMMA_NAME: opt-in, installed by `make env-gemma`
# Models that run offline from installed wheels (utils.models.EMBEDDED_MODELS), never downloaded,
# though TransformerLens's table also names "gemma-3-270m" (as google/gemma-3-270m on the hub).
LOCAL_MODELS = (EMBEDDED_NAME, GEMMA_NAME)
STAND_INS_DIR = "dry_run"
LM_EVAL_TASKS = "lm_eval_tasks"  # the parameter naming lm-eval-harness tasks (a dry run skips lm-eval)


class OnlineRequiredError(RuntimeError):
    """A paper-scale run needs models or data from the network and has none; the message lists them."""


def is_source_parameter(name: str) -> bool:
    """Whether a parameter names models or data: ``model_name``, ``source``, ``*_source`` or ``lm_eval_tasks``."""
    return name in ("model_name", "source", LM_EVAL_TASKS) or name.endswith("_source")


# ------------------------------------------------------------------------------ what is online
@dataclass(frozen=True)
class Need:
    """One model or dataset a run needs from the network."""

    parameter: str
    name: str
    kind: str  # "model" or "dataset"
    description: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name!r} ({self.parameter}): {self.description}"


KNOWN_1000_HOW = (
    "ROME's known_1000.json (1,209 facts, 0.3 MB), downloaded from rome.baulab.info and cached on first "
    "use; or download it yourself and pass its path"
)
DATASETS: dict[str, str] = {
    "known_1000": KNOWN_1000_HOW,
    "wikipedia": "English Wikipedia (wikimedia/wikipedia 20231101.en, about 20 GB) through `datasets`",
    "cifar100": "CIFAR-100 (uoft-cs/cifar100, about 160 MB) through `datasets`, cached on first use",
}


def _official_model(name: str) -> str | None:
    """The hub checkpoint that model name ``name`` downloads, or None for a local model."""
    if name in LOCAL_MODELS:
        return None
    # imported here: transformer_lens takes seconds to import, and only a model name needs it
    from transformer_lens.loading_from_pretrained import get_official_model_name

    try:
        return get_official_model_name(name)
    except ValueError:
        return None  # not a hub model (a model trained in the notebook, or a local name)


def _need(parameter: str, value: str) -> Need | None:
    """The network need of one value, or None when it is local (shipped, a file, a bundled set)."""
    if parameter == LM_EVAL_TASKS:
        return Need(
            parameter, value, "lm-eval task", "its dataset, downloaded by lm-eval-harness from the hub on first use"
        )
    if parameter == "model_name":
        official = _official_model(value)
        if official is None:
            return None
        return Need(
            parameter,
            value,
            "model",
            f"Hugging Face checkpoint {official}, downloaded by load_model on first use",
        )
    if value in DATASETS:
        return Need(parameter, value, "dataset", DATASETS[value])
    if value in ONLINE_CORPORA:
        path, config = ONLINE_CORPORA[value][:2]
        what = path + (f" ({config})" if config else "")
        return Need(
            parameter, value, "dataset", f"{what}, streamed through `datasets` during the run"
        )
    return None


def _values(value: Any) -> list[str]:
    return [
        v for v in (value if isinstance(value, list | tuple) else [value]) if isinstance(v, str)
    ]


def online_needs(parameters: Mapping[str, Any]) -> list[Need]:
    """Every model and dataset named by the source parameters in ``parameters`` that needs the network."""
    needs = []
    for name, value in parameters.items():
        if is_source_parameter(name):
            needs += [n for v in _values(value) if (n := _need(name, v)) is not None]
    return needs


def require_local_models(parameters: Mapping[str, Any]) -> None:
    """Stop at once, naming the install command, when a local model that ``model_name`` names is not
    installed here (utils.models.ModelUnavailableError); reads package metadata, never the network."""
    names = [v for v in _values(parameters.get("model_name")) if v in LOCAL_MODELS]
    if names:
        # imported here: utils.models imports transformer_lens (seconds), and only a local model needs it
        from utils.models import require_installed

        for name in names:
            require_installed(name)


def require_online(parameters: Mapping[str, Any]) -> None:
    """Stop with one message naming every online model/dataset when the network is unavailable."""
    needs = online_needs(parameters)
    if not needs:
        return
    reason = offline_reason()
    if reason is None:
        return
    listing = "\n".join(f"  - {need}" for need in needs)
    raise OnlineRequiredError(
        f"scale='paper' needs the network, and {reason}. This notebook needs:\n{listing}\n"
        "Run it on a machine that reaches huggingface.co (with HF_HUB_OFFLINE unset), or pass local copies "
        "(a known_1000.json path, a json/jsonl file or folder as a *_source), or rehearse offline with "
        "dry_run=True (the embedded model and shipped data in the paper's formats)."
    )


# ------------------------------------------------------------------------- dry-run stand-ins
def _write_once(path: Path, lines: Callable[[], list[str]]) -> Path:
    """Write ``lines()`` to ``path`` atomically unless it already exists; return the path."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, "\n".join(lines()) + "\n")
    return path


def stand_in_corpus() -> Path:
    """The shipped corpus as a local ``datasets`` json-lines folder (``train.jsonl``, ``validation.jsonl``)."""
    folder = cache_dir() / STAND_INS_DIR / "corpus"
    for split in SPLITS:
        _write_once(
            folder / f"{split}.jsonl",
            lambda split=split: [json.dumps({"text": d["text"]}) for d in corpus_documents(split)],
        )
    return folder


def known_1000_records() -> list[dict]:
    """The shipped facts in ROME's known_1000 record format (the prediction is the target)."""
    records = []
    for i, fact in enumerate(load_facts().itertuples()):
        start, end = fact.subject_start, fact.subject_end
        records.append(
            {
                "known_id": i,
                "subject": fact.subject,
                "attribute": fact.target,
                "template": fact.prompt[:start] + "{}" + fact.prompt[end:],
                "prediction": " " + fact.target,
                "prompt": fact.prompt,
                "relation_id": fact.relation,
            }
        )
    return records


def stand_in_known_1000() -> Path:
    """A known_1000-format JSON file made from the shipped facts."""
    path = cache_dir() / STAND_INS_DIR / "known_1000.json"
    return _write_once(path, lambda: [json.dumps(known_1000_records(), indent=1)])


def stand_in_subject_texts() -> Path:
    """Subject texts (Wikipedia's stand-in) as json lines ``{"title", "text"}`` from the shipped corpus."""
    path = cache_dir() / STAND_INS_DIR / "subject_texts.jsonl"
    return _write_once(
        path,
        lambda: [
            json.dumps({"title": d["topic"], "text": d["text"]})
            for s in SPLITS
            for d in corpus_documents(s)
        ],
    )


STAND_INS: dict[str, Callable[[], str]] = {
    "known_1000": lambda: str(stand_in_known_1000()),
    "wikipedia": lambda: str(stand_in_subject_texts()),
    "cifar100": lambda: "digits",
}


def dry_run_value(parameter: str, value: Any) -> Any:
    """The offline stand-in for a source parameter's value (unchanged when it is already local)."""
    if isinstance(value, list):
        return [dry_run_value(parameter, v) for v in value]
    need = _need(parameter, value) if isinstance(value, str) else None
    if need is None:
        return value
    if need.kind == "model":
        return EMBEDDED_NAME
    if need.kind == "lm-eval task":
        return value  # a dry run does not run lm-eval
    if value in STAND_INS:
        return STAND_INS[value]()
    return str(stand_in_corpus())
