"""Shared fixtures. Tests run offline: nothing may download."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# Notebook kernels inherit this environment: with MPLBACKEND unset they draw inline, so executed
# notebooks (and the HTML pages made from them) keep their figures; this process falls back to Agg.
os.environ.pop("MPLBACKEND", None)
# Under pytest-xdist each worker gets its share of the cores, and so do the notebook kernels it starts
# (they inherit OMP_NUM_THREADS): two workers with two threads each on two cores spend much of their
# time spinning in OpenMP barriers.
from tests.cores import THREADS, WORKERS  # noqa: E402

if WORKERS > 1:
    os.environ["OMP_NUM_THREADS"] = str(THREADS)

import pytest  # noqa: E402
import torch  # noqa: E402
from transformer_lens import HookedTransformer  # noqa: E402

from utils.models import load_model, tiny_model, word_tokenizer  # noqa: E402

if WORKERS > 1:
    torch.set_num_threads(THREADS)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files that run notebooks first, the rest in their order: with ``--dist loadfile`` the long
    files then start early and the short ones fill the gaps, instead of one long file ending last."""
    heavy = {item.path for item in items if item.get_closest_marker("notebook")}
    items.sort(key=lambda item: item.path not in heavy)  # stable: keeps the order within each group


@pytest.fixture(scope="session")
def tiny():
    """A 2-layer random Llama-like model (GQA, rotary, gated MLP)."""
    torch.set_grad_enabled(False)
    return tiny_model()


@pytest.fixture(scope="session")
def embedded():
    """The embedded SmolLM2-135M (converted once per cache folder, then loaded from cache)."""
    return load_model()


@pytest.fixture
def tokens(tiny):
    """A fixed random batch of token ids for the tiny model."""
    return torch.randint(0, tiny.cfg.d_vocab, (3, 12), generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="session")
def bos_model():
    """``make(words, number_piece=r"\\d", **sizes)``: a tiny random model with a word tokenizer over
    ``words`` plus ``<bos>`` and ``<eos>`` (special tokens), and ``cfg.default_prepend_bos`` True, as
    Gemma-3 has it."""

    def make(words: list[str], number_piece: str = r"\d", **sizes) -> HookedTransformer:
        tokenizer = word_tokenizer(["<bos>", "<eos>", *words], number_piece)
        tokenizer.add_special_tokens({"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<eos>"})
        model = tiny_model(d_vocab=len(tokenizer), **sizes)
        # set_tokenizer would look a tokenizer with a BOS up on the hub; assigning it is enough offline
        model.tokenizer = tokenizer
        model.cfg.tokenizer_prepends_bos = False
        model.cfg.default_prepend_bos = True
        return model

    return make
