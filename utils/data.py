"""The data the notebooks use: the shipped facts table and corpus, and their online counterparts.

Offline (shipped in ``data/``):
* ``load_facts()``: the authored facts table (relation, subject, prompt, target, subject span).
* ``corpus_documents(split)`` / ``token_batches(...)``: the corpus the embedded model wrote about
  an authored topic list (see ``scripts/generate_corpus.py``), with a fixed train/validation split.

Online (cached under the cache folder; a clear error when offline):
* ``load_known_1000(path_or_url)``: ROME's known_1000.json.
* ``token_batches(..., source="wikitext" | "pile-10k" | "openwebtext")`` through ``datasets``.

``load_fact_source(source)`` is a notebook's ``facts_source`` parameter: ``"shipped"``,
``"known_1000"``, or a file in either format (this repository's CSV or known_1000 JSON, told apart
by content).

Public names: ``load_facts``, ``load_known_1000``, ``load_fact_file``, ``load_fact_source``,
``FACT_SOURCES``, ``subject_span``, ``token_span``, ``read_text``, ``corpus_documents``,
``corpus_paragraphs``, ``corpus_texts``, ``text_name``, ``token_batches``, ``bos_prefix``, ``DataError``,
``DataUnavailableError``, ``FACT_COLUMNS``, ``FACTS_PATH``, ``CORPUS_DIR``, ``DATA_ROOT``, ``SPLITS``,
``ONLINE_CORPORA``, ``KNOWN_1000_URL``, ``KNOWN_1000_REQUIRED``.
"""

from __future__ import annotations

import csv
import difflib
import gzip
import hashlib
import io
import json
import os
import random
import urllib.request
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import pandas as pd
import torch

from utils.files import cached_folder
from utils.hub import hub_offline, offline_reason
from utils.paths import REPO_ROOT, cache_dir
from utils.prose import PROSE_SOURCE, prose_texts

__all__ = [
    "CORPUS_DIR",
    "DATA_ROOT",
    "FACTS_PATH",
    "FACT_COLUMNS",
    "FACT_SOURCES",
    "KNOWN_1000_REQUIRED",
    "KNOWN_1000_URL",
    "ONLINE_CORPORA",
    "SPLITS",
    "DataError",
    "DataUnavailableError",
    "bos_prefix",
    "corpus_documents",
    "corpus_paragraphs",
    "corpus_texts",
    "load_fact_file",
    "load_fact_source",
    "load_facts",
    "load_known_1000",
    "read_text",
    "subject_span",
    "text_name",
    "token_batches",
    "token_span",
]

DATA_ROOT = REPO_ROOT / "data"
FACTS_PATH = DATA_ROOT / "facts" / "facts.csv"
CORPUS_DIR = DATA_ROOT / "corpus"
SPLITS = ("train", "validation")
FACT_COLUMNS = ["relation", "subject", "prompt", "target", "subject_start", "subject_end"]
KNOWN_1000_URL = "https://rome.baulab.info/data/dsets/known_1000.json"
KNOWN_1000_REQUIRED = ("subject", "attribute", "prompt", "relation_id")  # known_id, template, prediction: optional
KNOWN_1000_FILE = "known_1000.json"
FACT_SOURCES = ("shipped", "known_1000")  # facts_source names; any other value is a file (CSV or known_1000 JSON)
OTHER_DELIMITERS = {";": "semicolons", "\t": "tabs", "|": "vertical bars"}
ONLINE_CORPORA = {
    # name: (datasets path, config, split, text field)
    "wikitext": ("Salesforce/wikitext", "wikitext-2-raw-v1", "train", "text"),  # SPRINT calibrates on WikiText-2
    "pile-10k": ("NeelNanda/pile-10k", None, "train", "text"),
    "openwebtext": ("Skylion007/openwebtext", None, "train", "text"),
}

TEXT_NAMES = {"shipped": "the model's own text", PROSE_SOURCE: "human text"}  # how tables name each source


class DataError(ValueError):
    """A data file is malformed; the message names the file and row."""


class DataUnavailableError(RuntimeError):
    """Online data cannot be fetched here; the message says what to do instead."""


def _validate_fact(row: dict, line: int, path: Path) -> dict:
    where = f"{path.name} row {line} ({row.get('relation')}, {row.get('subject')!r})"
    missing = [c for c in FACT_COLUMNS if not row.get(c)]
    if missing:
        raise DataError(f"{where}: empty or missing {missing}")
    try:
        start, end = int(row["subject_start"]), int(row["subject_end"])
    except ValueError:
        raise DataError(f"{where}: subject_start/subject_end must be integers") from None
    if row["prompt"][start:end] != row["subject"]:
        raise DataError(f"{where}: prompt[{start}:{end}] is {row['prompt'][start:end]!r}, not the subject")
    if row["prompt"].endswith(" ") or row["target"].startswith(" "):
        raise DataError(f"{where}: the prompt must not end, and the target must not start, with a space")
    return {**row, "subject_start": start, "subject_end": end}


def read_text(path: Path) -> str:
    """A data file's text as UTF-8; DataError naming the file and the fix when it is not UTF-8."""
    try:
        return path.read_text(encoding="utf-8-sig")  # a BOM, as spreadsheets write, is fine
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path}: not UTF-8 text (byte {err.object[err.start]:#x} at position {err.start}); "
            "save the file as UTF-8 (in a spreadsheet: 'CSV UTF-8')"
        ) from None


def _check_header(path: Path, fieldnames: list[str] | None, first_line: str) -> None:
    """DataError when the facts header lacks columns, naming a wrong delimiter when that is why."""
    if not first_line.strip():
        raise DataError(f"{path}: the file is empty; expected a header line {','.join(FACT_COLUMNS)} and one fact per line")
    absent = [c for c in FACT_COLUMNS if c not in (fieldnames or [])]
    if not absent:
        return
    for delimiter, name in OTHER_DELIMITERS.items():
        if set(FACT_COLUMNS) <= {c.strip() for c in first_line.split(delimiter)}:
            raise DataError(f"{path}: the columns are separated by {name}, not commas; save it as comma-separated CSV")
    raise DataError(f"{path.name}: missing columns {absent}; expected {FACT_COLUMNS}")


def load_facts(path: str | os.PathLike = FACTS_PATH) -> pd.DataFrame:
    """The facts table, validated row by row (a malformed row raises DataError naming it)."""
    path = Path(path)
    text = read_text(path)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    _check_header(path, reader.fieldnames, text.partition("\n")[0])
    rows = []
    for line, row in enumerate(reader, start=2):
        if None in row:  # csv puts fields beyond the header under the key None
            raise DataError(
                f"{path.name} row {line}: {len(row[None])} more field(s) than the {len(reader.fieldnames)} columns; "
                "quote a field that contains a comma"
            )
        rows.append(_validate_fact(row, line, path))
    if not rows:
        raise DataError(f"{path}: a header but no facts; add one fact per line below the header")
    facts = pd.DataFrame(rows, columns=FACT_COLUMNS)
    duplicated = facts.duplicated(["relation", "subject"])
    if duplicated.any():
        first = facts[duplicated].iloc[0]
        raise DataError(f"{path.name}: duplicate fact ({first.relation}, {first.subject!r})")
    return facts


def subject_span(prompt: str, subject: str) -> tuple[int, int]:
    """Character span of ``subject`` in ``prompt``; DataError if absent or ambiguous."""
    start = prompt.find(subject)
    if start < 0 or prompt.find(subject, start + 1) >= 0:
        state = "not found" if start < 0 else "found more than once"
        raise DataError(f"subject {subject!r} {state} in prompt {prompt!r}")
    return start, start + len(subject)


def token_span(tokenizer, text: str, char_start: int, char_end: int) -> tuple[int, int] | None:
    """Token positions [start, end) covering characters [char_start, char_end) of ``text``.

    Uses the tokenizer's offsets; returns None when no token overlaps the span (the caller skips
    and counts such prompts rather than guessing).
    """
    offsets = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)["offset_mapping"]
    inside = [
        i for i, (s, e) in enumerate(offsets) if s < char_end and e > char_start and text[s:e].strip()
    ]
    if not inside:
        return None
    return inside[0], inside[-1] + 1


def _download(url: str, target: Path) -> None:
    """Write the bytes at ``url`` to ``target``; DataUnavailableError saying what to do when that fails."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            target.write_bytes(response.read())
    except OSError as err:
        raise DataUnavailableError(
            f"cannot download {url} ({err}). Download known_1000.json on a machine "
            "with network access and pass its path, or use the shipped facts (load_facts())."
        ) from err


def load_known_1000(path_or_url: str | os.PathLike = KNOWN_1000_URL) -> pd.DataFrame:
    """ROME's known_1000 facts (1,209 rows) in this repository's facts columns, plus its own.

    A URL is downloaded once into the cache folder (checked on every later load, fetched again if
    damaged); a path is read by ``load_fact_file``, so it may also hold this repository's CSV format.
    """
    source = str(path_or_url)
    if not source.startswith(("http://", "https://")):
        return load_fact_file(source)
    folder = cache_dir() / "data" / f"known_1000-{hashlib.sha1(source.encode()).hexdigest()[:12]}"

    def download(staging: Path) -> pd.DataFrame:
        _download(source, staging / KNOWN_1000_FILE)
        return pd.DataFrame(_known_1000_records(staging / KNOWN_1000_FILE))

    def read(cached: Path) -> pd.DataFrame:
        return pd.DataFrame(_known_1000_records(cached / KNOWN_1000_FILE))

    return cached_folder(folder, download, read, f"the download of {source}")


def load_fact_file(path: str | os.PathLike) -> pd.DataFrame:
    """A facts file in either format, told apart by its content: known_1000 JSON (a list of records)
    or this repository's CSV (checked by ``load_facts``); DataError listing the choices when there is
    no such file."""
    path = Path(path)
    if not path.is_file():
        close = difflib.get_close_matches(str(path), FACT_SOURCES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DataError(
            f"facts source {str(path)!r} is neither one of {list(FACT_SOURCES)} nor an existing file{hint}. "
            f"Give 'shipped' (the authored table), 'known_1000' (ROME's, downloaded once), or the path of a "
            f"facts CSV (columns {','.join(FACT_COLUMNS)}) or of a known_1000-style JSON file."
        )
    if read_text(path).lstrip()[:1] in ("[", "{"):
        return pd.DataFrame(_known_1000_records(path))
    return load_facts(path)


def load_fact_source(source: str | os.PathLike = "shipped") -> pd.DataFrame:
    """A notebook's ``facts_source``: ``"shipped"`` (the authored table), ``"known_1000"`` (ROME's,
    downloaded once), a URL of a known_1000 file, or a facts file in either format."""
    name = str(source)
    if name == "shipped":
        return load_facts()
    return load_known_1000() if name == "known_1000" else load_known_1000(name)


def _known_1000_records(path: Path) -> list[dict]:
    """The records of a known_1000-style JSON file as fact rows, each checked (DataError names file and record)."""
    try:
        records = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err}); it should be a list of records like ROME's known_1000.json") from None
    if not isinstance(records, list) or not records:
        raise DataError(
            f"{path}: expected a non-empty JSON list of records with {list(KNOWN_1000_REQUIRED)}, "
            f"got {'an empty list' if records == [] else type(records).__name__}"
        )
    return [_known_1000_row(record, index, path) for index, record in enumerate(records)]


def _known_1000_row(record, index: int, path: Path) -> dict:
    """One known_1000 record as a fact row; DataError naming the file, the record index and the fix."""
    where = f"{path} record {index} (counting from 0)"
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected an object with {list(KNOWN_1000_REQUIRED)}, got {type(record).__name__}")
    absent = [key for key in KNOWN_1000_REQUIRED if key not in record]
    if absent:
        raise DataError(f"{where}: missing {absent}; every record needs {list(KNOWN_1000_REQUIRED)}")
    empty = [key for key in KNOWN_1000_REQUIRED if not isinstance(record[key], str) or not record[key].strip()]
    if empty:
        found = {key: record[key] for key in empty}
        raise DataError(f"{where}: {empty} must be non-empty text, got {found}")
    try:
        start, end = subject_span(record["prompt"], record["subject"])
    except DataError as err:
        raise DataError(f"{where}: {err}; fix the subject or the prompt, or drop the record") from None
    return {
        "relation": record["relation_id"],
        "subject": record["subject"],
        "prompt": record["prompt"].rstrip(),
        "target": record["attribute"].strip(),
        "subject_start": start,
        "subject_end": end,
        "known_id": record.get("known_id", index),
        "template": record.get("template"),
        "prediction": record.get("prediction"),
    }


@lru_cache(maxsize=4)
def corpus_documents(split: str = "train") -> tuple[dict, ...]:
    """The shipped corpus's documents for ``split``: dicts with ``topic`` and ``text``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    path = CORPUS_DIR / f"{split}.jsonl.gz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; regenerate it with `python scripts/generate_corpus.py`")
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return tuple(json.loads(line) for line in handle)


def corpus_paragraphs(topic: str) -> list[str]:
    """Every shipped paragraph written about ``topic`` (from both splits)."""
    return [d["text"] for split in SPLITS for d in corpus_documents(split) if d["topic"] == topic]


def _stream(path: str, config: str | None, split: str, field: str, **options) -> Iterator[str]:
    """Non-empty ``field`` texts of a ``datasets`` dataset, streamed (online corpora and local json files alike)."""
    # imported here: `datasets` takes seconds to import, and only streamed corpora need it
    from datasets import load_dataset

    dataset = load_dataset(path, config, split=split, streaming=True, **options)
    return (row[field] for row in dataset if row[field].strip())


def _local_texts(source: Path, split: str) -> Iterator[str]:
    """A local json/jsonl corpus (rows with ``text``): a file, or a folder holding ``<split>.jsonl``."""
    files = source / f"{split}.jsonl" if source.is_dir() else source
    if not files.is_file():
        raise FileNotFoundError(f"corpus source {str(source)!r} has no {files.name}; expected rows with a 'text' field")
    return _stream("json", None, "train", "text", data_files=str(files))


def _online_texts(source: str) -> Iterator[str]:
    if source not in ONLINE_CORPORA:
        raise ValueError(
            f"unknown corpus {source!r}; choose 'shipped', a json/jsonl file or folder, or one of {list(ONLINE_CORPORA)}"
        )
    path, config, split, field = ONLINE_CORPORA[source]
    reason = offline_reason()
    try:
        with hub_offline(reason is not None):  # fail at once, not after retries
            return _stream(path, config, split, field)
    except Exception as err:
        raise DataUnavailableError(
            f"cannot load {source} ({path}) through `datasets`{f' ({reason})' if reason else ''}: {err}. "
            "It streams from the Hugging Face hub during the run, so it needs network access; offline, "
            "use source='shipped' or a local json/jsonl file."
        ) from err


def corpus_texts(split: str = "train", source: str = "shipped") -> Iterator[str]:
    """Texts of a corpus: the shipped one (by split), the human-written ``"prose"`` (utils.prose, by split),
    a local json/jsonl file or folder, or an online one (streamed)."""
    if source == "shipped":
        return (d["text"] for d in corpus_documents(split))
    if source == PROSE_SOURCE:
        return prose_texts(split)
    if Path(source).suffix in (".json", ".jsonl") or Path(source).is_dir():
        return _local_texts(Path(source), split)
    return _online_texts(source)


def text_name(source: str) -> str:
    """How tables and sentences name text from ``source``: "the model's own text" (the shipped corpus,
    which the embedded model wrote), "human text" (``"prose"``), else the source's own name."""
    return TEXT_NAMES.get(source, source)


def bos_prefix(model) -> list[int]:
    """``[bos id]`` when ``model`` wants every sequence to start with its beginning-of-sequence token
    (``model.cfg.default_prepend_bos``, e.g. Gemma-3), else ``[]`` (SmolLM2, or a model without a
    tokenizer, which is given token ids as they are)."""
    if not model.cfg.default_prepend_bos or model.tokenizer is None:
        return []
    bos = model.tokenizer.bos_token_id
    if bos is None:
        raise ValueError("the model wants a BOS token first (cfg.default_prepend_bos) but its tokenizer has none")
    return [bos]


def token_batches(
    model,
    split: str = "train",
    n_tokens: int = 100_000,
    ctx: int = 128,
    batch_size: int = 8,
    source: str = "shipped",
    shuffle_seed: int | None = None,
) -> Iterator[torch.Tensor]:
    """Yield [batch, ctx] token windows of a corpus until ``n_tokens`` tokens have been yielded.

    Documents are tokenized, joined with the end-of-text token and cut into windows; ``shuffle_seed``
    shuffles the documents first. A model that wants a beginning-of-sequence token
    (``model.cfg.default_prepend_bos``, e.g. Gemma) gets ``<bos>`` then the next ``ctx - 1`` corpus
    tokens in every window; any other (SmolLM2) gets ``ctx`` corpus tokens, the stream cut as is.
    Windows are ``ctx`` long either way and ``n_tokens`` counts window tokens, BOS included. The last
    batch may be smaller. Raises if the corpus has fewer tokens than asked for.
    """
    if ctx < 2 or batch_size < 1 or n_tokens < ctx:
        raise ValueError("need ctx >= 2, batch_size >= 1 and n_tokens >= ctx")
    head = bos_prefix(model)
    texts = corpus_texts(split, source)
    if shuffle_seed is not None:
        texts = list(texts)
        random.Random(shuffle_seed).shuffle(texts)
    separator = model.tokenizer.eos_token_id
    body = ctx - len(head)  # corpus tokens per window
    n_windows = n_tokens // ctx
    buffer: list[int] = []
    batch: list[torch.Tensor] = []
    produced = 0
    for text in texts:
        buffer.extend(model.tokenizer(text, add_special_tokens=False)["input_ids"] + [separator])
        while len(buffer) >= body and produced < n_windows:
            batch.append(torch.tensor(head + buffer[:body]))
            del buffer[:body]
            produced += 1
            if len(batch) == batch_size:
                yield torch.stack(batch)
                batch = []
        if produced == n_windows:
            break
    if batch:
        yield torch.stack(batch)
    if produced < n_windows:
        raise ValueError(f"the {source} {split} corpus has only {produced * ctx} tokens of the {n_tokens} asked for")
