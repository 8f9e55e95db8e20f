"""Representative functions run with the model on another device than new tensors default to.

See tests/device_check.py: on a CPU the two devices are simulated; with SUBLAYER_LAB_TEST_DEVICE=cuda
(scripts/paper_check.sh --devices) the model is on the GPU and PyTorch checks for real.
"""

import pytest
import torch

from tests.device_check import DeviceMismatch, elsewhere, model_device
from tests.test_ode_blocks import TINY
from utils import circuits as C
from utils import evaluation, hooks, tour
from utils import ode_blocks as ob
from utils import ode_experiments as ex
from utils import transcoders as T
from utils.models import tiny_model
from utils.sublayers import Sublayer
from utils.training import TrainConfig


@pytest.fixture(scope="module")
def model():
    """A tiny model on the test device, gradients off as in the notebooks."""
    torch.set_grad_enabled(False)
    return tiny_model(seed=3).to(model_device(), print_details=False)


def host_tokens(model, batch: int = 2, pos: int = 8) -> torch.Tensor:
    """Token ids made the way data loaders make them: on the default device."""
    return torch.randint(
        0, model.cfg.d_vocab, (batch, pos), generator=torch.Generator().manual_seed(0)
    )


def test_the_check_catches_a_host_tensor_meeting_the_model(model):
    with elsewhere(), pytest.raises((DeviceMismatch, RuntimeError), match="device"):
        torch.ones(model.cfg.d_model) + model.W_E[0]


def test_write_norms_and_hooks(model):
    with elsewhere():
        norms = tour.sublayer_write_norms(model, [host_tokens(model)])
        store = {}
        ablated = model.run_with_hooks(
            host_tokens(model),
            fwd_hooks=hooks.zero_ablate([Sublayer(0, "mlp")])
            + hooks.capture(["blocks.0.hook_mlp_out"], store),
        )
    assert (norms[["attn", "mlp"]] > 0).all().all() and torch.isfinite(ablated).all()
    assert store["blocks.0.hook_mlp_out"].abs().max() == 0


def test_pruning_evaluation(model):
    with elsewhere():
        ppl = evaluation.perplexity(model, [host_tokens(model)])
        scores = evaluation.token_loglikelihoods(model, [([1, 2, 3], [4, 5]), ([6], [7])])
    assert ppl > 1 and len(scores) == 2


def test_activation_store_and_transcoder_trainer(model):
    with elsewhere():
        tokens, _, acts = next(T.stream_activations(model, [0], [host_tokens(model)]))
        x, y = (a.flatten(0, 1) for a in acts[0])
        cfg = T.TranscoderTraining(d_sae=16, l1=1e-3, checkpoint_every=0, resample_every=0)
        with torch.enable_grad():
            trained = T.train_transcoders(
                [{0: (x, y)}] * 2,
                {"t": (0, cfg)},
                model.cfg.d_model,
                total_steps=2,
                device=model_device(),
            )
    assert trained["t"].step_count == 2 and tokens.shape == (2, 8)


def test_attribution(model):
    with elsewhere():
        tr = C.trace(model, host_tokens(model, 1)[0], {})
        table = C.contributions(model, tr, C.logit_target(model, 7, [1], [2]), {})
        value = C.target_value(tr, C.logit_target(model, 7, [1], [2]))
    assert abs(table.attribution.sum() + C.logit_target(model, 7, [1], [2]).bias - value) < 1e-3


def test_ode_runner():
    with elsewhere() as device:
        bench = ex.lm_benchmark("synthetic", 4000, 1200, ctx=16)
        runner = ex.Runner(
            ob.ODEConfig(**TINY),
            {"lm": TrainConfig(steps=2, batch_size=4, eval_every=2)},
            patch=2,
            device=device,
        )
        runs = runner.run({0: bench}, [ex.Variant("parallel")], desc="device test")
    assert len(runs) == 1 and runs.metric.notna().all()
