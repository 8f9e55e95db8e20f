"""Shared fixtures. Tests run offline: nothing may download."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# Notebook kernels inherit this environment: with MPLBACKEND unset they draw inline, so executed
# notebooks (and the HTML pages made from them) keep their figures; this process falls back to Agg.
os.environ.pop("MPLBACKEND", None)

import pytest  # noqa: E402
import torch  # noqa: E402

from utils.models import load_model, tiny_model  # noqa: E402


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
