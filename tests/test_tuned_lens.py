import pytest
import torch

from tests.processes import finish, start, wait_for
from utils import tuned_lens
from utils.tuned_lens import TunedLens, fit_affine, fit_tuned_lens, lens_kl, rms_normalise


def test_fit_affine_recovers_a_known_map_and_keeps_the_identity():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 8, generator=gen)
    weight, bias = torch.randn(8, 8, generator=gen), torch.randn(8, generator=gen)
    w, b = fit_affine(x, x @ weight + bias, ridge=1e-9)
    torch.testing.assert_close(w, weight, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(b, bias, atol=1e-4, rtol=1e-4)
    w, b = fit_affine(x, x, ridge=0.1)  # the last layer predicts itself: the identity, exactly
    torch.testing.assert_close(w, torch.eye(8), atol=1e-5, rtol=0)
    torch.testing.assert_close(b, torch.zeros(8), atol=1e-5, rtol=0)
    # strong shrinkage pulls the fit towards the identity (the logit lens)
    w_strong, _ = fit_affine(x, x @ weight, ridge=1e6)
    assert (w_strong - torch.eye(8)).norm() < 1e-3 * (weight - torch.eye(8)).norm()
    with pytest.raises(ValueError, match=r"\[N, d\]"):
        fit_affine(x, x[:, :4])


def test_identity_lens_reads_like_the_logit_lens(tiny):
    gen = torch.Generator().manual_seed(1)
    states = torch.randn(10, tiny.cfg.n_layers, tiny.cfg.d_model, generator=gen)
    d, n_layers = tiny.cfg.d_model, tiny.cfg.n_layers
    identity = TunedLens(torch.eye(d).repeat(n_layers, 1, 1), torch.zeros(n_layers, d))
    torch.testing.assert_close(identity(states), rms_normalise(states))
    # the final norm is scale-invariant, so an identity lens gives the logit lens's KL
    torch.testing.assert_close(
        lens_kl(tiny, states, identity), lens_kl(tiny, states), atol=1e-5, rtol=1e-4
    )
    assert lens_kl(tiny, states)[-1] == pytest.approx(0, abs=1e-6)  # the final layer reads itself
    with pytest.raises(ValueError, match="layers, d_model"):
        identity(states[:, :1])


def test_fitted_lens_beats_the_logit_lens_and_is_cached(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("SUBLAYER_LAB_CACHE", str(tmp_path))
    gen = torch.Generator().manual_seed(2)
    n_layers, d = tiny.cfg.n_layers, tiny.cfg.d_model
    mix = torch.randn(d, d, generator=gen) / d**0.5
    first = torch.randn(600, d, generator=gen)
    states = torch.stack([first, first @ mix + 0.1 * torch.randn(600, d, generator=gen)], dim=1)
    monkeypatch.setattr(tuned_lens, "residual_samples", lambda *a, **k: states)
    lens = fit_tuned_lens(tiny, n_tokens=600, ctx=8, progress=False)
    assert lens.weight.shape == (n_layers, d, d)
    held_out = torch.stack([first[:50], first[:50] @ mix], dim=1)
    assert lens_kl(tiny, held_out, lens)[0] < 0.5 * lens_kl(tiny, held_out)[0]
    assert len(list((tmp_path / "tuned_lens").glob("*/lens.pt"))) == 1

    def no_refit(*args, **kwargs):
        raise AssertionError("the cached lens should have been loaded")

    monkeypatch.setattr(tuned_lens, "residual_samples", no_refit)
    cached = fit_tuned_lens(tiny, n_tokens=600, ctx=8, progress=False)
    torch.testing.assert_close(cached.weight, lens.weight)


def _fake_states(n_layers: int, d: int, n: int = 600) -> torch.Tensor:
    gen = torch.Generator().manual_seed(2)
    first = torch.randn(n, d, generator=gen)
    return torch.stack([first, first @ torch.randn(d, d, generator=gen) / d**0.5][:n_layers], dim=1)


def test_a_truncated_lens_is_refitted_with_a_warning_naming_it(tiny, tmp_path, monkeypatch):
    """A truncated lens file used to fail with torch's 'PytorchStreamReader failed' on every later run."""
    monkeypatch.setenv("SUBLAYER_LAB_CACHE", str(tmp_path))
    states = _fake_states(tiny.cfg.n_layers, tiny.cfg.d_model)
    monkeypatch.setattr(tuned_lens, "residual_samples", lambda *a, **k: states)
    lens = fit_tuned_lens(tiny, n_tokens=600, ctx=8, progress=False)
    (path,) = (tmp_path / "tuned_lens").glob("*/lens.pt")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.warns(UserWarning, match=rf"fitted tuned lens at {path.parent} is damaged \({path} does not match its checksum"):
        refitted = fit_tuned_lens(tiny, n_tokens=600, ctx=8, progress=False)
    torch.testing.assert_close(refitted.weight, lens.weight)
    torch.testing.assert_close(fit_tuned_lens(tiny, n_tokens=600, ctx=8, progress=False).weight, lens.weight)


FIT_SLOWLY = """
    import os, time
    from pathlib import Path
    from utils import tuned_lens
    from utils.models import tiny_model
    from tests.test_tuned_lens import _fake_states

    def residual_samples(model, *args, **kwargs):
        Path("{fitting}").touch()
        with open("{fits}", "a") as log:
            log.write("fitted\\n")
        while len(list(Path("{ready}").iterdir())) < 2:  # until the other process is at the lock too
            time.sleep(0.1)
        time.sleep(1)
        return _fake_states(model.cfg.n_layers, model.cfg.d_model)

    tuned_lens.residual_samples = residual_samples
    Path("{ready}").mkdir(exist_ok=True)
    Path("{ready}", str(os.getpid())).touch()
    lens = tuned_lens.fit_tuned_lens(tiny_model(), n_tokens=600, ctx=8, progress=False)
    print(float(lens.weight.sum()))
"""


def test_two_processes_fit_an_uncached_lens_once(tmp_path):
    """Two processes fitting the same lens into an empty cache: one fits, the other waits and loads it
    (both used to write the same ``custom-....tmp``, and one failed renaming it)."""
    code = FIT_SLOWLY.format(fitting=tmp_path / "fitting", fits=tmp_path / "fits", ready=tmp_path / "ready")
    first = start(code, SUBLAYER_LAB_CACHE=str(tmp_path / "cache"))
    wait_for(tmp_path / "fitting", first)
    second = start(code, SUBLAYER_LAB_CACHE=str(tmp_path / "cache"))
    (out1, _), (out2, err2) = finish(first), finish(second)
    assert out1 == out2 and (tmp_path / "fits").read_text() == "fitted\n"
    assert f"waiting for pid {first.pid}" in err2


def test_the_lens_is_fitted_on_the_named_source_and_cached_apart(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("SUBLAYER_LAB_CACHE", str(tmp_path))
    states = _fake_states(tiny.cfg.n_layers, tiny.cfg.d_model)
    sources = []
    monkeypatch.setattr(
        tuned_lens, "residual_samples", lambda *a, **k: sources.append(k["source"]) or states
    )
    for source in ("prose", "shipped", "prose"):
        fit_tuned_lens(tiny, n_tokens=600, ctx=8, progress=False, source=source)
    assert sources == ["prose", "shipped"]  # the second prose fit is loaded from its own folder
    assert len(list((tmp_path / "tuned_lens").glob("*/lens.pt"))) == 2
