"""utils.replication (the claim × model table) and utils.reproduce's --model, on hand-made results."""

import json

import pytest

from utils import replication, reproduce
from utils.verdicts import HOLDS, NOT_TESTABLE, OPPOSITE, WITHIN_NOISE

GEMMA = "gemma-3-270m"


def write_metrics(folder, model, verdicts):
    folder.mkdir(parents=True)
    rows = [{"claim": claim, "paper": "p", "here": "h", "verdict": verdict} for claim, verdict in verdicts.items()]
    (folder / "metrics.json").write_text(json.dumps({"model": model, "paper_vs_here": rows}))


@pytest.fixture
def two_models(tmp_path):
    write_metrics(tmp_path / "01_recall", "smollm2-135m",
                  {"a": HOLDS, "b": HOLDS, "c": WITHIN_NOISE, "d": OPPOSITE, "e": HOLDS})
    write_metrics(replication.model_root(GEMMA, tmp_path) / "01_recall", GEMMA,
                  {"a": HOLDS, "b": NOT_TESTABLE, "c": HOLDS, "d": WITHIN_NOISE})
    write_metrics(tmp_path / "05_ode", "tiny-ode-transformer", {"f": HOLDS})  # trains its own models
    return tmp_path


def test_each_claim_gets_its_line_from_the_verdicts(two_models):
    rows = {r["claim"]: r for r in replication.claim_model_rows(two_models)}
    assert rows["a"]["where it reproduces"] == "replicates on both"
    assert rows["b"]["where it reproduces"] == "only on smollm2-135m"
    assert rows["c"]["where it reproduces"] == f"only on {GEMMA}"
    assert rows["d"]["where it reproduces"] == "neither"
    assert rows["e"]["where it reproduces"] == f"not run on {GEMMA}; holds on smollm2-135m"
    assert (rows["b"]["smollm2-135m"], rows["b"][GEMMA]) == (HOLDS, NOT_TESTABLE)
    assert "f" not in rows and all(set(r) == set(rows["a"]) for r in rows.values())  # 05 is not paired


def test_without_a_second_model_there_is_no_table(tmp_path):
    write_metrics(tmp_path / "01_recall", "smollm2-135m", {"a": HOLDS})
    assert replication.second_models(tmp_path) == []
    assert replication.claim_model_table(tmp_path) == "" == replication.claim_model_section(tmp_path)


def test_the_report_holds_the_claim_model_table(two_models):
    report = reproduce.write_report(two_models).read_text()
    assert "### Claim × model" in report
    assert f"| 01_recall | c | within noise | holds | only on {GEMMA} |" in report


@pytest.mark.parametrize("name", ["", "../x", ".hidden", "a/b"])
def test_a_model_folder_name_must_be_plain(name, tmp_path):
    with pytest.raises(ValueError, match="plain folder name"):
        replication.model_root(name, tmp_path)


def test_only_notebooks_on_the_embedded_model_take_a_second_model():
    taken = [nb.name[:2] for nb in reproduce.notebooks() if reproduce.takes_embedded_model(nb)]
    assert taken == ["00", "01", "02", "03", "04"]  # 05 trains its own models


def test_a_second_model_run_passes_the_model_and_writes_under_models(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(reproduce, "run_notebook", lambda nb, scale, target, parameters, page: calls.append(
        (nb.name[:2], target, parameters)) or {"run": {"wall_time_s": 1.0}})
    assert reproduce.main(["--scale", "smoke", "--model", GEMMA, "--only", "00,05",
                           "--results-root", str(tmp_path)]) == 0
    assert calls == [("00", tmp_path / "smoke" / "models" / GEMMA, {"model_name": GEMMA})]


def test_the_default_model_is_not_a_second_model(capsys):
    with pytest.raises(SystemExit):
        reproduce.main(["--model", "smollm2-135m"])
    assert "leave --model out" in capsys.readouterr().err
