"""The shipped transcoders' pipeline (utils.transcoders.shipped, scripts/train_transcoders.py) on a tiny random model:
streaming training resumes bit for bit, export and load round-trip, damage and size are refused with a clear
message, and the script reproduces one layer from its recorded settings."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from utils.transcoders import shipped as S

ROOT = Path(__file__).resolve().parent.parent


def script():
    spec = importlib.util.spec_from_file_location("train_transcoders", ROOT / "scripts" / "train_transcoders.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SETTINGS = S.StreamSettings(
    model="tiny", layers=(0, 1), n_tokens=6 * 8 * 16, ctx=16, windows_per_chunk=8, batch_tokens=32, d_sae=64,
    l1=20.0, lr=5e-2, resample_every=3, resample_until_fraction=0.8, resample_pool_tokens=64,
)


def tiny_windows(model, settings=SETTINGS, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.cfg.d_vocab, (settings.n_windows, settings.ctx), generator=generator).int()


def assert_same_run(a: S.StreamingRun, b: S.StreamingRun) -> None:
    assert a.chunk == b.chunk and a.steps == b.steps
    for layer in a.trainers:
        ta, tb = a.trainers[layer], b.trainers[layer]
        for name, value in ta.transcoder.state_dict().items():
            assert torch.equal(value, tb.transcoder.state_dict()[name]), (layer, name)
        for pa, pb in zip(ta.transcoder.parameters(), tb.transcoder.parameters(), strict=True):
            for key in ("exp_avg", "exp_avg_sq"):
                assert torch.equal(ta.optimizer.state[pa][key], tb.optimizer.state[pb][key]), (layer, key)
        assert torch.equal(ta.fired, tb.fired) and torch.equal(ta.idle, tb.idle) and ta.resampled == tb.resampled
        assert ta.scheduler.get_last_lr() == tb.scheduler.get_last_lr()


AUXK = SETTINGS.replace(activation="batchtopk", k=4, l1=0.0, aux_k=8, dead_after=2)  # BatchTopK with AuxK


@pytest.mark.parametrize("settings", [SETTINGS, AUXK], ids=["l1", "batchtopk-auxk"])
def test_resume_is_bit_for_bit(tiny, tmp_path, settings):
    windows = tiny_windows(tiny)
    straight = S.train_streaming(tiny, settings, windows, tmp_path / "straight", max_chunks=4)
    S.train_streaming(tiny, settings, windows, tmp_path / "split", max_chunks=2)
    resumed = S.train_streaming(tiny, settings, windows, tmp_path / "split", resume=True, max_chunks=2)
    assert resumed.chunk == 4 and len(resumed.sessions) == 2
    assert_same_run(straight, resumed)
    assert straight.trainers[0].resampled > 0  # the resampling pool was saved and restored too
    lines = (tmp_path / "split" / "progress.jsonl").read_text().splitlines()
    assert [json.loads(line)["chunk"] for line in lines] == [1, 2, 3, 4]
    assert json.loads((tmp_path / "split" / "settings.json").read_text()) == settings.to_dict()
    if settings.aux_k:  # the auxiliary loss did act (else this would only repeat the plain BatchTopK run)
        plain = S.train_streaming(tiny, settings.replace(aux_k=None), windows, tmp_path / "plain", max_chunks=4)
        assert not torch.equal(plain.trainers[0].transcoder.W_enc, straight.trainers[0].transcoder.W_enc)


def test_runs_refuse_other_settings_and_overwriting(tiny, tmp_path, monkeypatch):
    windows = tiny_windows(tiny)
    S.train_streaming(tiny, SETTINGS, windows, tmp_path / "run", max_chunks=1)
    with pytest.raises(FileExistsError, match="--resume"):
        S.StreamingRun.open(tiny, SETTINGS, windows, tmp_path / "run")
    with pytest.raises(ValueError, match="other settings.*l1"):
        S.StreamingRun.open(tiny, SETTINGS.replace(l1=0.1), windows, tmp_path / "run", resume=True)
    with pytest.raises(ValueError, match="other windows"):
        S.StreamingRun.open(tiny, SETTINGS, tiny_windows(tiny, seed=1), tmp_path / "run", resume=True)
    monkeypatch.setattr(S, "TRAINER_VERSION", S.TRAINER_VERSION + 1)
    with pytest.raises(ValueError, match="trainer version"):
        S.StreamingRun.open(tiny, SETTINGS, windows, tmp_path / "run", resume=True)


def test_settings_are_checked():
    with pytest.raises(TypeError, match="did you mean 'd_sae'"):
        S.StreamSettings(dsae=10)
    with pytest.raises(ValueError, match="not implemented"):
        S.StreamSettings(activation="topk")
    with pytest.raises(ValueError, match="n_tokens"):
        S.StreamSettings(n_tokens=100, ctx=16, windows_per_chunk=8)
    assert SETTINGS.total_steps == 6 * 4 and S.StreamSettings.from_dict(SETTINGS.to_dict()) == SETTINGS
    assert S.default_run_folder(SETTINGS) != S.default_run_folder(SETTINGS.replace(layers=(1,)))


def test_chunks_cover_each_epoch_once():
    settings = SETTINGS.replace(epochs=2)
    for epoch in range(2):
        seen = torch.cat([S.chunk_indices(settings, epoch * 6 + i) for i in range(6)])
        assert sorted(seen.tolist()) == list(range(settings.n_windows))
    assert not torch.equal(S.chunk_indices(settings, 0), S.chunk_indices(settings, 6))


@pytest.fixture(scope="module")
def exported(tiny, tmp_path_factory):
    """A short run on layers 0 and 1, exported: (run, folder)."""
    where = tmp_path_factory.mktemp("shipped")
    run = S.train_streaming(tiny, SETTINGS, tiny_windows(tiny), where / "run", max_chunks=3)
    (where / "out").mkdir()
    (where / "out" / "README.md").write_text("kept")
    S.export_shipped(run, where / "out")
    (where / "out" / "README.md").write_text("kept, and edited after the export")
    return run, where / "out"


def test_export_load_round_trip(tiny, exported):
    run, folder = exported
    assert sorted(p.name for p in folder.iterdir()) == ["L0", "L1", "README.md", "manifest.json", "provenance.json"]
    loaded = S.load_shipped_transcoders(folder, device=tiny.cfg.device)
    assert sorted(loaded) == [0, 1]
    x = torch.randn(50, tiny.cfg.d_model, generator=torch.Generator().manual_seed(0))
    for layer, tc in loaded.items():
        assert type(tc).__name__ == "Transcoder" and tc.W_enc.dtype == torch.float32
        reference = run.trainers[layer].transcoder.to_sae_lens(layer)
        assert torch.allclose(tc(x), reference(x), atol=2e-2 * reference(x).abs().max())
        half = reference.W_dec.detach().half().float()
        assert torch.equal(tc.W_dec, half)  # float16 on disk, exactly that when loaded
    prov = S.shipped_provenance(folder)
    assert prov["settings"] == SETTINGS.to_dict() and prov["chunks"] == 3 and not prov["complete"]
    assert prov["tokens_seen"] == 3 * 8 * 16 and prov["steps"] == 3 * 4
    assert {"cpu", "wall_s", "started_utc"} <= set(prov["sessions"][0]) and "code_commit" in prov
    assert list(S.load_shipped_transcoders(folder, layers=[1])) == [1]
    with pytest.raises(S.ShippedTranscodersError, match=r"no transcoder for layers \[5\]"):
        S.load_shipped_transcoders(folder, layers=[5])


def test_damaged_or_missing_files_name_the_rebuild_command(exported, tmp_path):
    _, folder = exported
    damaged = tmp_path / "transcoders"
    import shutil

    shutil.copytree(folder, damaged)
    weights = damaged / "L1" / "sae_weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(S.ShippedTranscodersError) as err:
        S.load_shipped_transcoders(damaged)
    message = str(err.value)
    assert "L1/sae_weights.safetensors" in message and "checksum" in message
    assert f"python scripts/train_transcoders.py --settings-from {damaged}/provenance.json --resume --export {damaged}" in message
    (damaged / "L0" / "cfg.json").unlink()
    with pytest.raises(S.ShippedTranscodersError, match="cfg.json is missing"):
        S.load_shipped_transcoders(damaged, layers=[0])
    with pytest.raises(S.ShippedTranscodersError, match="does not exist.*train_transcoders.py"):
        S.load_shipped_transcoders(tmp_path / "nowhere")


def test_shipped_stand_in_only_for_their_model_text_and_layers(exported, tmp_path):
    """shipped_unusable: None exactly when the shipped run covers the model, the text and the layers asked for."""
    _, folder = exported
    assert S.shipped_unusable("tiny", "prose", [0, 1], folder=folder) is None
    assert "retrain=True" in S.shipped_unusable("tiny", "prose", [0], retrain=True, folder=folder)
    assert "belong to tiny, not gpt2" in S.shipped_unusable("gpt2", "prose", [0], folder=folder)
    assert "trained on the 'prose' text, not 'shipped'" in S.shipped_unusable("tiny", "shipped", [0], folder=folder)
    assert "layers [2]" in S.shipped_unusable("tiny", "prose", [0, 2], folder=folder)
    assert "holds no shipped transcoders" in S.shipped_unusable("tiny", "prose", [0], folder=tmp_path)
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(folder, damaged)
    (damaged / "provenance.json").write_text("{}")
    with pytest.raises(S.ShippedTranscodersError, match="checksum"):  # damage is an error, never a quiet retrain
        S.shipped_unusable("tiny", "prose", [0], folder=damaged)


def test_the_summary_labels_them_as_loaded(exported):
    _, folder = exported
    line = S.shipped_summary(S.shipped_provenance(folder), 2)
    assert line.startswith("Loaded 2 transcoders from data/transcoders/ (checksums checked)")
    assert f"{3 * 8 * 16:,} tokens of the prose train split" in line and "12 steps per layer" in line
    assert "INCOMPLETE: 3 of 6 chunks" in line and "L1-ReLU, l1 20, d_sae 64" in line and "in 1 training session(s)" in line


def test_the_recipe_is_named_in_words():
    assert S.StreamSettings(l1=0.03).recipe == "L1-ReLU, l1 0.03, d_sae 768"
    topk = S.StreamSettings(activation="batchtopk", k=64, l1=0, d_sae=640, skip=True)
    assert topk.recipe == "BatchTopK k 64, a JumpReLU threshold at inference, d_sae 640, skip path"


def test_export_refused_above_the_size_cap(exported, tmp_path):
    run, folder = exported
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    with pytest.raises(S.ShippedTranscodersError, match="above the cap"):
        S.export_shipped(run, tmp_path / "big", max_bytes=size // 2)
    assert not (tmp_path / "big").exists() and not list(tmp_path.glob(".big*"))


def test_script_reproduces_one_layer_from_recorded_settings(tiny, tmp_path, capsys):
    train = script()
    windows = tiny_windows(tiny)
    settings = [f"--{k}" if v is None else f"--{k}={v}" for k, v in {
        "model": "tiny", "tokens": SETTINGS.n_tokens, "ctx": 16, "windows-per-chunk": 8, "batch-tokens": 32,
        "d-sae": 64, "l1": 20.0, "lr": 0.05, "resample-every": 3, "resample-until-fraction": 0.8,
        "resample-pool-tokens": 64}.items()]
    full = train.main([*settings, "--layers", "0", "1", "--run", str(tmp_path / "a"), "--max-chunks", "2",
                       "--export", str(tmp_path / "ship")], model=tiny, windows=windows)
    assert full.settings == SETTINGS and not full.done
    train.main(["--run", str(tmp_path / "a"), "--resume", *settings, "--layers", "0", "1", "--export",
                str(tmp_path / "ship")], model=tiny, windows=windows)
    assert S.shipped_provenance(tmp_path / "ship")["complete"]
    assert len(S.shipped_provenance(tmp_path / "ship")["sessions"]) == 2
    one = train.main(["--settings-from", str(tmp_path / "ship" / "provenance.json"), "--layers", "1", "--run",
                      str(tmp_path / "b"), "--export", str(tmp_path / "check"), "--check-against",
                      str(tmp_path / "ship")], model=tiny, windows=windows)
    assert one.settings == SETTINGS.replace(layers=(1,))
    assert "L1/sae_weights.safetensors: identical to" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        train.main(["--settings-from", str(tmp_path / "ship" / "provenance.json"), "--layers", "1", "--seed", "1",
                    "--run", str(tmp_path / "c"), "--export", str(tmp_path / "other"), "--check-against",
                    str(tmp_path / "ship")], model=tiny, windows=windows)


def test_a_batchtopk_run_resumes_bit_for_bit_and_ships_as_jumprelu(tiny, tmp_path):
    settings = SETTINGS.replace(activation="batchtopk", k=4, l1=0.0)
    windows = tiny_windows(tiny, settings)
    straight = S.train_streaming(tiny, settings, windows, tmp_path / "straight", max_chunks=4)
    S.train_streaming(tiny, settings, windows, tmp_path / "split", max_chunks=2)
    resumed = S.train_streaming(tiny, settings, windows, tmp_path / "split", resume=True, max_chunks=2)
    assert_same_run(straight, resumed)  # the threshold is part of the transcoder's state
    assert all(float(t.transcoder.threshold) > 0 for t in resumed.trainers.values())
    S.export_shipped(resumed, tmp_path / "out")
    loaded = S.load_shipped_transcoders(tmp_path / "out", device=tiny.cfg.device)
    x = torch.randn(50, tiny.cfg.d_model, generator=torch.Generator().manual_seed(0))
    for layer, tc in loaded.items():
        assert type(tc).__name__ == "JumpReLUTranscoder" and tc.threshold.dtype == torch.float32
        reference = resumed.trainers[layer].transcoder.to_sae_lens(layer)
        torch.testing.assert_close(tc.threshold, reference.threshold.half().float())
        assert torch.allclose(tc(x), reference(x), atol=2e-2 * reference(x).abs().max())
    assert S.shipped_provenance(tmp_path / "out")["settings"]["k"] == 4


def test_per_feature_thresholds_fire_as_often_as_batch_topk_kept_each_feature():
    spec = importlib.util.spec_from_file_location("probe", ROOT / "scripts" / "probe_transcoder_thresholds.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    pre = torch.randn(96, 12, generator=torch.Generator().manual_seed(0))
    pre[:, 11] = -1.0  # a feature that is never positive is never kept, and never fires
    thresholds, kept = probe.kept_rate_thresholds(pre, k=3, batch_tokens=32)
    assert int(kept.sum()) == 3 * 96 and kept[11] == 0
    assert torch.equal((pre > thresholds).sum(0), kept)  # each fires on as many tokens as it was kept on
