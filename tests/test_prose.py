"""The shipped human-written corpus (data/prose/): its fixed split, its manifest and its loader."""

import gzip
import json
import shutil
from collections import Counter

import pytest
import torch

from utils import data, prose
from utils.files import sha256_file
from utils.prose import PROSE_SPLITS, DamagedCorpusError, prose_documents

MIN_TOKENS, MIN_SOURCES_PER_SPLIT, MIN_GENRES_PER_SPLIT = 1_000_000, 5, 5


@pytest.fixture(scope="module")
def manifest():
    return json.loads(prose.MANIFEST_PATH.read_text())


def test_splits_are_disjoint_and_cover_every_document():
    splits = {split: prose_documents(split) for split in PROSE_SPLITS}
    ids = [d["id"] for docs in splits.values() for d in docs]
    assert len(ids) == len(set(ids))  # no document in two splits (nor twice in one)
    with gzip.open(prose.DOCUMENTS_PATH, "rt", encoding="utf-8") as handle:
        every = [json.loads(line)["id"] for line in handle]
    assert sorted(ids) == sorted(every)
    for split, docs in splits.items():
        assert all(d["split"] == split and d["text"].strip() and d["licence"] for d in docs)


def test_every_split_mixes_sources_and_genres_and_the_manifest_counts_them(manifest):
    for split in PROSE_SPLITS:
        docs = prose_documents(split)
        assert len({d["source"] for d in docs}) >= MIN_SOURCES_PER_SPLIT
        assert len({d["genre"] for d in docs}) >= MIN_GENRES_PER_SPLIT
        counted = manifest["by_source"][split]
        assert counted["all"]["documents"] == len(docs)
        assert {k: v["documents"] for k, v in counted.items() if k != "all"} == dict(Counter(d["source"] for d in docs))
    assert sum(manifest["by_source"][s]["all"]["tokens"] for s in PROSE_SPLITS) >= MIN_TOKENS
    shares = {s: manifest["by_source"][s]["all"]["words"] for s in PROSE_SPLITS}
    total = sum(shares.values())
    assert shares["test"] / total == pytest.approx(0.10, abs=0.01)
    assert shares["validation"] / total == pytest.approx(0.05, abs=0.01)
    assert shares["calibration"] / total == pytest.approx(0.05, abs=0.01)


def test_a_prefix_of_a_split_already_mixes_its_sources():
    first = prose_documents("validation")[:10]
    assert len({d["source"] for d in first}) == MIN_SOURCES_PER_SPLIT


def test_manifest_records_the_file_checksum(manifest):
    assert manifest["sha256"] == sha256_file(prose.DOCUMENTS_PATH)
    assert manifest["bytes"] == prose.DOCUMENTS_PATH.stat().st_size


def test_unknown_split_is_refused():
    with pytest.raises(ValueError, match="calibration"):
        prose_documents("dev")


def _copy(tmp_path):
    paths = tmp_path / prose.DOCUMENTS_PATH.name, tmp_path / prose.MANIFEST_PATH.name
    shutil.copyfile(prose.DOCUMENTS_PATH, paths[0])
    shutil.copyfile(prose.MANIFEST_PATH, paths[1])
    return paths


def test_damaged_file_names_itself_and_the_rebuild_command(tmp_path):
    documents, manifest = _copy(tmp_path)
    payload = bytearray(documents.read_bytes())
    payload[len(payload) // 2] ^= 0xFF
    documents.write_bytes(bytes(payload))
    with pytest.raises(DamagedCorpusError) as error:
        prose_documents("test", documents, manifest)
    assert str(documents) in str(error.value) and prose.REBUILD_COMMAND in str(error.value)


def test_missing_file_names_itself_and_the_rebuild_command(tmp_path):
    documents, manifest = _copy(tmp_path)
    documents.unlink()
    with pytest.raises(FileNotFoundError) as error:
        prose_documents("test", documents, manifest)
    assert str(documents) in str(error.value) and prose.REBUILD_COMMAND in str(error.value)


@pytest.mark.embedded
def test_token_batches_stream_prose_offline(embedded):
    for split in PROSE_SPLITS:
        batches = list(data.token_batches(embedded, split, n_tokens=10 * 32, ctx=32, batch_size=4, source="prose"))
        assert [b.shape for b in batches] == [torch.Size([4, 32])] * 2 + [torch.Size([2, 32])]
    first = next(data.token_batches(embedded, "validation", n_tokens=64, ctx=32, batch_size=2, source="prose"))
    text = next(prose.prose_texts("validation"))
    assert first[0].tolist() == embedded.tokenizer(text, add_special_tokens=False)["input_ids"][:32]
