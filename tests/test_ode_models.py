"""Unit tests of utils.ode_models (the networks around an ODE stack) on tiny models (CPU, seconds)."""

import pytest
import torch

from tests.test_ode_blocks import TINY, one_thread  # noqa: F401  (the thread-count fixture)
from utils import ode_blocks as ob
from utils import ode_models as om


def test_vit_and_lm_shapes():
    cfg = ob.ODEConfig(**TINY)
    vit = om.TinyViT(cfg, image_size=8, channels=1, patch=2, n_classes=10)
    assert vit(torch.rand(3, 1, 8, 8)).shape == (3, 10)
    lm = om.CharLM(cfg, vocab_size=20, ctx=12)
    assert lm(torch.randint(0, 20, (3, 12))).shape == (3, 12, 20)
    with pytest.raises(ValueError, match="exceeds the context"):
        lm(torch.randint(0, 20, (1, 13)))
    with pytest.raises(ValueError, match="not divisible by patch"):
        om.TinyViT(cfg, image_size=8, channels=1, patch=3, n_classes=10)


def test_variant_labels_name_the_sharing():
    assert om.Variant("rk2").label == "rk2"
    assert om.Variant("rk2", share=4).label == "rk2, share 4"
