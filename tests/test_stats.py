import numpy as np
import pytest

from utils import stats


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_n():
    rng = np.random.default_rng(0)
    small = stats.bootstrap_interval(rng.normal(1.0, 1.0, 20))
    large = stats.bootstrap_interval(rng.normal(1.0, 1.0, 2000))
    assert small.low < small.estimate < small.high and small.n == 20
    assert large.low < 1.0 < large.high
    assert (large.high - large.low) < (small.high - small.low) / 3


def test_bootstrap_interval_is_seeded():
    values = np.arange(30.0)
    assert stats.bootstrap_interval(values, seed=3) == stats.bootstrap_interval(values, seed=3)


def test_interval_errors_name_the_problem():
    with pytest.raises(ValueError, match="empty"):
        stats.bootstrap_interval([])
    with pytest.raises(ValueError, match="NaN"):
        stats.bootstrap_interval([1.0, float("nan")])
    with pytest.raises(ValueError, match="equal lengths"):
        stats.paired_difference([1, 2], [1, 2, 3])


def test_paired_difference_and_p_value():
    a = np.array([0.50, 0.61, 0.55, 0.58, 0.52, 0.60, 0.57, 0.54])
    b = a + np.array([0.05, 0.04, 0.06, 0.05, 0.03, 0.05, 0.04, 0.06])
    diff = stats.paired_difference(a, b)
    assert diff.low > 0 and diff.estimate == pytest.approx(0.0475)
    assert stats.paired_p_value(a, b) < 1e-4
    assert stats.paired_p_value(a, a) == 1.0
    assert stats.paired_p_value(a, a + 0.1) == 0.0


def test_permutation_p_value():
    null = np.arange(99.0)
    assert stats.permutation_p_value(1000.0, null) == pytest.approx(0.01)
    assert stats.permutation_p_value(-1.0, null) == 1.0


def test_holm_matches_hand_computation_and_keeps_order():
    adjusted = stats.holm({"a": 0.01, "b": 0.04, "c": 0.03})
    assert adjusted == pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06})
    assert list(adjusted) == ["a", "b", "c"]
    assert stats.holm({"x": 0.6, "y": 0.7}) == pytest.approx({"x": 1.0, "y": 1.0})




def test_power_grows_with_seeds_and_matches_the_normal_approximation():
    powers = [stats.paired_power(0.5, 1.0, n) for n in (5, 10, 40)]
    assert powers[0] < powers[1] < powers[2]
    # large n: close to the normal approximation Phi(d sqrt(n) - z_0.975)
    assert stats.paired_power(0.5, 1.0, 40) == pytest.approx(0.869, abs=0.01)
    assert stats.paired_power(0.5, 1.0, 1) == 0.0


def test_seeds_for_power_and_detectable_effect_invert_each_other():
    n = stats.seeds_for_power(0.5, 1.0, power=0.8)
    assert stats.paired_power(0.5, 1.0, n) >= 0.8 > stats.paired_power(0.5, 1.0, n - 1)
    assert n == 34  # textbook value for d = 0.5, two-sided alpha 0.05, power 0.8
    effect = stats.detectable_effect(1.0, n)
    assert effect <= 0.5 and stats.paired_power(effect, 1.0, n) == pytest.approx(0.8, abs=1e-6)
    with pytest.raises(ValueError, match="must be positive"):
        stats.paired_power(0.5, 0.0, 10)
