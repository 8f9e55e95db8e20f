"""Unit tests of utils.ode_comparisons (paired tests over seeds, verdicts, power) (CPU, seconds)."""

import pandas as pd
import pytest

from utils import ode_comparisons as cmp
from utils import stats
from utils.ode_models import Variant
from utils.verdicts import WORDS


def paired_runs(gains: dict[str, list[float]]) -> pd.DataFrame:
    """Runs of a baseline at 0.5 and of each variant at 0.5 + its per-seed gains."""
    rows = [{"kind": "parallel", "share": 1, "seed": s, "metric": 0.5} for s in range(8)]
    for kind, values in gains.items():
        rows += [
            {"kind": kind, "share": 1, "seed": s, "metric": 0.5 + g} for s, g in enumerate(values)
        ]
    return pd.DataFrame(rows)


def test_comparisons_are_paired_by_seed():
    # seed-to-seed swings are large, but each seed moves by exactly +0.01: a paired test sees it
    base = [0.1 * s for s in range(8)]
    rows = [{"kind": "parallel", "share": 1, "seed": s, "metric": b} for s, b in enumerate(base)]
    rows += [{"kind": "rk2", "share": 1, "seed": s, "metric": b + 0.01} for s, b in enumerate(base)]
    family = cmp.compare_family(
        pd.DataFrame(rows), Variant("parallel"), [Variant("rk2")], "metric", True
    )
    assert family["rk2"]["p_value"] == 0.0 and family["rk2"]["gain"] == pytest.approx(0.01)
    lower = cmp.compare_family(
        pd.DataFrame(rows), Variant("parallel"), [Variant("rk2")], "metric", False
    )
    assert lower["rk2"]["gain"] == pytest.approx(-0.01)  # lower is better: the gain changes sign


def test_a_comparison_needs_two_seeds_of_both_variants():
    runs = paired_runs({"rk2": [0.01] * 8})
    with pytest.raises(ValueError, match="at least 2 seeds"):
        cmp.paired_comparison(
            runs[runs.seed == 0], Variant("parallel"), Variant("rk2"), "metric", True
        )
    with pytest.raises(ValueError, match="no runs of 'rk4'"):
        cmp.paired_values(runs, Variant("rk4"), "metric")


def test_verdict_rule_uses_holm_across_a_family():
    noisy = [0.02, -0.012, 0.03, 0.0, 0.025, 0.005, 0.015, 0.02]
    runs = paired_runs(
        {"rk2": noisy, "rk4": [-0.05 + 0.001 * s for s in range(8)], "strang": [0.0] * 8}
    )
    family = cmp.compare_family(
        runs,
        Variant("parallel"),
        [Variant(k) for k in ("strang", "rk2", "rk4")],
        "metric",
        True,
    )
    assert all(c["p_holm"] >= c["p_value"] for c in family.values())
    assert (
        family["rk2"]["p_value"] < 0.05 < family["rk2"]["p_holm"]
    )  # significant alone, not after Holm
    rk2 = cmp.verdict(family["rk2"])
    assert (rk2.word, rk2.n) == ("within noise", 8)
    assert rk2.reason == f"p={family['rk2']['p_holm']:.3g}"  # the Holm-adjusted p is the one read
    assert cmp.verdict(family["rk4"]).word == "opposite"  # a clear fall: the other way
    assert cmp.verdict(family["strang"]).word == "within noise"
    assert cmp.family_verdict(family) == ("rk4", cmp.verdict(family["rk4"]))
    assert cmp.verdict({**family["rk2"], "n": 3}).word == "too few"
    assert cmp.verdict({**family["rk4"], "gain": 0.05}).word == "holds"
    assert {cmp.verdict(c).word for c in family.values()} <= set(WORDS)
    row = cmp.family_row("a better integrator helps", "paper", family, 100, "pts")
    assert row["verdict"] == "opposite" and row["n"] == 8 and row["rule"] == cmp.RULE
    assert row["interval"].startswith("rk4: -4.65 pts [") and "Holm p=" in row["interval"]
    assert row["here"].count("Holm p=") == 3
    single = cmp.comparison_row("c", "p", "h", family["strang"])
    assert single["verdict"] == "within noise" and single["interval"].startswith("+0.00 [")


def test_seeds_needed_reaches_the_power_and_a_floor():
    n = cmp.seeds_needed(effect=0.01, sd=0.01)
    assert n >= cmp.MIN_SEEDS
    assert stats.paired_power(0.01, 0.01, n) >= cmp.POWER
    assert cmp.seeds_needed(effect=1.0, sd=0.01) == cmp.MIN_SEEDS
