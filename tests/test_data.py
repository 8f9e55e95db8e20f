import csv
import io
import itertools
import json
import re

import pytest
import torch

from utils import data
from utils.data import DataError, DataUnavailableError, load_facts, subject_span, token_span

MIN_FACTS, MIN_RELATIONS, MIN_CORPUS_TOKENS, MIN_TOPICS = 500, 12, 300_000, 500


def test_shipped_facts_are_large_and_valid():
    facts = load_facts()
    assert len(facts) >= MIN_FACTS and facts.relation.nunique() >= MIN_RELATIONS
    for row in facts.itertuples():
        assert row.prompt[row.subject_start : row.subject_end] == row.subject


def _write_facts(path, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=data.FACT_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def test_malformed_fact_row_is_named(tmp_path):
    good = {"relation": "r", "subject": "France", "prompt": "The capital of France is", "target": "Paris",
            "subject_start": 15, "subject_end": 21}
    bad = {**good, "subject": "Spain"}
    _write_facts(tmp_path / "f.csv", [good, bad])
    with pytest.raises(DataError, match=r"row 3 .*Spain"):
        load_facts(tmp_path / "f.csv")
    _write_facts(tmp_path / "g.csv", [good, {**good, "target": " Paris"}])
    with pytest.raises(DataError, match="row 3.*space"):
        load_facts(tmp_path / "g.csv")
    _write_facts(tmp_path / "h.csv", [good, good])
    with pytest.raises(DataError, match="duplicate"):
        load_facts(tmp_path / "h.csv")


HEADER = ",".join(data.FACT_COLUMNS)
FRANCE = "r,France,The capital of France is,Paris,15,21"


@pytest.mark.parametrize(
    "content, message",
    [
        ("relation,subject,prompt,target,subject_start,subject_end\nr,Zürich,In Zürich,Swiss,3,9\n".encode("latin-1"),
         r"not UTF-8 text \(byte 0xfc.*save the file as UTF-8"),
        (f"{HEADER}\n{FRANCE}\n".replace(",", ";").encode(), "separated by semicolons, not commas"),
        (f"{HEADER}\n{FRANCE}\n".replace(",", "\t").encode(), "separated by tabs, not commas"),
        (f"{HEADER}\n{FRANCE},extra\n".encode(), "row 2: 1 more field.*than the 6 columns; quote"),
        (f"{HEADER}\n".encode(), "a header but no facts"),
        (b"", "the file is empty; expected a header line relation,subject"),
    ],
    ids=["latin-1", "semicolons", "tabs", "extra-field", "header-only", "empty"],
)
def test_bad_facts_file_is_refused_naming_file_and_fix(tmp_path, content, message):
    path = tmp_path / "facts.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as error:
        load_facts(path)
    assert "facts.csv" in str(error.value)


def test_facts_file_saved_with_a_bom_is_read(tmp_path):
    path = tmp_path / "facts.csv"
    path.write_text(f"{HEADER}\n{FRANCE}\n", encoding="utf-8-sig")  # as a spreadsheet's 'CSV UTF-8' writes it
    assert load_facts(path).subject.tolist() == ["France"]


def test_subject_span_finds_or_refuses():
    assert subject_span("Where is Rome now", "Rome") == (9, 13)
    with pytest.raises(DataError, match="not found"):
        subject_span("Where is Rome", "Paris")
    with pytest.raises(DataError, match="more than once"):
        subject_span("Rome, Rome", "Rome")


@pytest.mark.embedded
def test_token_span_uses_offsets(embedded):
    prompt = "The Eiffel Tower is located in the city of"
    start, end = token_span(embedded.tokenizer, prompt, 4, 16)
    assert embedded.to_string(embedded.to_tokens(prompt)[0, start:end]).strip() == "Eiffel Tower"
    assert token_span(embedded.tokenizer, prompt, 200, 210) is None


def test_known_1000_offline_error_and_local_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SUBLAYER_LAB_CACHE", str(tmp_path / "cache"))

    def no_network(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(data.urllib.request, "urlopen", no_network)
    with pytest.raises(DataUnavailableError, match="pass its path"):
        data.load_known_1000()
    record = {"known_id": 0, "subject": "Vinson Massif", "attribute": "Antarctica", "template": "{} is located in the continent of",
              "prediction": " Antarctica", "prompt": "Vinson Massif is located in the continent of", "relation_id": "P30"}
    (tmp_path / "known.json").write_text(json.dumps([record]))
    facts = data.load_known_1000(tmp_path / "known.json")
    assert facts.loc[0, "target"] == "Antarctica" and facts.loc[0, "subject_end"] == len("Vinson Massif")


VINSON = {"known_id": 0, "subject": "Vinson Massif", "attribute": "Antarctica", "template": "{} is located in the continent of",
          "prediction": " Antarctica", "prompt": "Vinson Massif is located in the continent of", "relation_id": "P30"}


def _without(key):
    return {k: v for k, v in VINSON.items() if k != key}


@pytest.mark.parametrize(
    "records, message",
    [
        ([_without("subject")], r"record 0 \(counting from 0\): missing \['subject'\]; every record needs"),
        ([_without("attribute")], r"record 0 .*missing \['attribute'\]"),
        ([VINSON, {**VINSON, "subject": "Mount Everest"}], r"record 1 .*'Mount Everest' not found in prompt.*fix the subject"),
        ([{**VINSON, "subject": None}], r"record 0 .*\['subject'\] must be non-empty text, got \{'subject': None\}"),
        ([], "expected a non-empty JSON list of records.*got an empty list"),
        ([{**VINSON, "attribute": " "}], r"record 0 .*\['attribute'\] must be non-empty text"),
        ({"subject": "x"}, "expected a non-empty JSON list.*got dict"),
        (["Vinson Massif"], "record 0 .*expected an object"),
    ],
    ids=["no-subject", "no-attribute", "subject-not-in-prompt", "null-subject", "empty-list", "empty-attribute",
         "not-a-list", "not-an-object"],
)
def test_bad_known_1000_record_is_refused_naming_file_and_record(tmp_path, records, message):
    path = tmp_path / "known.json"
    path.write_text(json.dumps(records))
    with pytest.raises(DataError, match=message) as error:
        data.load_known_1000(path)
    assert str(path) in str(error.value)


def test_known_1000_without_its_unused_fields_loads(tmp_path):
    path = tmp_path / "known.json"
    path.write_text(json.dumps([{k: VINSON[k] for k in data.KNOWN_1000_REQUIRED}]))
    facts = data.load_known_1000(path)
    assert facts.loc[0, "known_id"] == 0 and facts.loc[0, "target"] == "Antarctica"


def test_known_1000_that_is_not_json_is_named(tmp_path):
    path = tmp_path / "known.json"
    path.write_text("[{'subject': 'single quotes'}]")
    with pytest.raises(DataError, match="known.json: not valid JSON"):
        data.load_known_1000(path)


def test_unknown_online_corpus_is_refused():
    with pytest.raises(ValueError, match="shipped"):
        next(data.corpus_texts(source="no-such-corpus"))


def test_shipped_corpus_is_large_split_and_covers_every_subject():
    record = json.loads((data.CORPUS_DIR / "generation.json").read_text())
    assert sum(c["tokens"] for c in record["counts"].values()) >= MIN_CORPUS_TOKENS
    topics = (data.CORPUS_DIR / "topics.txt").read_text().splitlines()
    assert len(set(topics)) == len(topics) >= MIN_TOPICS
    train = {d["topic"] for d in data.corpus_documents("train")}
    validation = {d["topic"] for d in data.corpus_documents("validation")}
    assert train and validation and not train & validation
    assert set(load_facts().subject) <= train | validation


def corpus_stream(tokenizer, split: str, n: int) -> list[int]:
    """The first ``n`` tokens of ``split``'s documents, each tokenized and followed by end-of-text, built
    by hand as token_batches has always cut its windows."""
    ids: list[int] = []
    for text in data.corpus_texts(split):
        ids += tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        if len(ids) >= n:
            return ids[:n]
    raise AssertionError("corpus too short")


@pytest.fixture(scope="module")
def corpus_words():
    """The words of the first validation documents, so a word tokenizer gives them varied ids."""
    texts = itertools.islice(data.corpus_texts("validation"), 5)
    return sorted({w for text in texts for w in re.findall(r"\w+|[^\w\s]+", text)})


@pytest.mark.parametrize("prepend_bos", [True, False])
def test_token_batches_start_with_bos_exactly_when_the_model_wants_it(bos_model, corpus_words, prepend_bos):
    model = bos_model(corpus_words)
    model.cfg.default_prepend_bos = prepend_bos
    batches = list(data.token_batches(model, "validation", n_tokens=6 * 16, ctx=16, batch_size=4))
    assert [b.shape for b in batches] == [torch.Size([4, 16]), torch.Size([2, 16])]
    windows = torch.cat(batches)
    bos = model.tokenizer.bos_token_id
    if prepend_bos:  # <bos>, then the stream cut every 15 tokens
        assert (windows[:, 0] == bos).all()
        assert windows[:, 1:].flatten().tolist() == corpus_stream(model.tokenizer, "validation", 6 * 15)
    else:  # the stream cut every 16 tokens, as always
        assert windows.flatten().tolist() == corpus_stream(model.tokenizer, "validation", 6 * 16)
        assert bos not in windows
    assert len(set(windows.flatten().tolist())) > 20  # the words have varied ids, so the check means something


@pytest.mark.embedded
def test_token_batches_shapes_and_budget(embedded):
    batches = list(data.token_batches(embedded, "validation", n_tokens=10 * 16, ctx=16, batch_size=4))
    assert [b.shape for b in batches] == [torch.Size([4, 16])] * 2 + [torch.Size([2, 16])]
    assert not embedded.cfg.default_prepend_bos  # SmolLM2: no BOS, the windows cut as they always were
    assert torch.cat(batches).flatten().tolist() == corpus_stream(embedded.tokenizer, "validation", 10 * 16)
    with pytest.raises(ValueError, match="ctx"):
        next(data.token_batches(embedded, ctx=1))


def test_online_corpus_offline_says_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataUnavailableError, match="source='shipped'"):
        next(data.corpus_texts(source="wikitext"))


def test_facts_source_reads_either_format_by_content(tmp_path):
    csv_file = tmp_path / "my_facts.txt"  # the name says nothing: the content decides
    csv_file.write_text(f"{HEADER}\n{FRANCE}\n")
    assert data.load_fact_source(csv_file).subject.tolist() == ["France"]
    json_file = tmp_path / "my_facts.csv"
    json_file.write_text(json.dumps([VINSON]))
    assert data.load_fact_source(str(json_file)).target.tolist() == ["Antarctica"]
    assert len(data.load_fact_source("shipped")) == len(load_facts())
    csv_file.write_text(f"{HEADER}\n{FRANCE}\n".replace(",", ";"))
    with pytest.raises(DataError, match="my_facts.txt: the columns are separated by semicolons"):  # the CSV checks apply
        data.load_fact_source(csv_file)


def test_unknown_facts_source_lists_the_choices():
    with pytest.raises(DataError, match=r"'Shipped' is neither one of \['shipped', 'known_1000'\] nor an existing file "
                                        r"\(did you mean 'shipped'\?\).*path of a facts CSV"):
        data.load_fact_source("Shipped")


def test_a_damaged_known_1000_download_is_fetched_again(tmp_path, monkeypatch):
    monkeypatch.setenv("SUBLAYER_LAB_CACHE", str(tmp_path))
    downloads = []

    class Response(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def urlopen(url, timeout):
        downloads.append(url)
        return Response(json.dumps([VINSON]).encode())

    monkeypatch.setattr(data.urllib.request, "urlopen", urlopen)
    assert data.load_known_1000().subject.tolist() == ["Vinson Massif"]
    assert data.load_known_1000().subject.tolist() == ["Vinson Massif"] and len(downloads) == 1
    (cached,) = (tmp_path / "data").glob("known_1000-*/known_1000.json")
    cached.write_text(cached.read_text()[:40])  # truncated
    with pytest.warns(UserWarning, match=rf"download of {data.KNOWN_1000_URL} at .* is damaged \({cached} does not match"):
        assert data.load_known_1000().subject.tolist() == ["Vinson Massif"]
    assert len(downloads) == 2


def test_the_recall_notebook_s_facts_loader_takes_either_format(tmp_path):
    """notebooks/01's load_fact_table passes any other facts_source to load_known_1000."""
    csv_file = tmp_path / "facts.csv"
    csv_file.write_text(f"{HEADER}\n{FRANCE}\n")
    assert data.load_known_1000(csv_file).subject.tolist() == ["France"]
    with pytest.raises(DataError, match="did you mean 'shipped'"):
        data.load_known_1000("Shipped")


def test_text_names_say_who_wrote_the_text():
    assert data.text_name("shipped") == "the model's own text"
    assert data.text_name("prose") == "human text"
    assert data.text_name("wikitext") == "wikitext"  # any other source goes by its own name
