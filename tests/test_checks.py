import pytest
import torch

from utils import checks
from utils.checks import Case, ExerciseFailed, check, mismatch


def square(x):
    return x**2


CASES = [Case("a 2x3 tensor", (torch.arange(6.0).reshape(2, 3),)), Case("a scalar", (torch.tensor(3.0),))]


def test_check_passes_the_reference(capsys):
    check("Exercise 0.1", square, square, CASES)
    assert "✓ Exercise 0.1" in capsys.readouterr().out


def test_wrong_values_name_the_input_and_the_entry():
    with pytest.raises(ExerciseFailed, match=r"input 1 of 2 \(a 2x3 tensor\).*index \(1, 2\): expected 25, got 10"):
        check("Exercise 0.1", lambda x: x * 2, square, CASES)


def test_wrong_shape_and_exception_and_stub():
    with pytest.raises(ExerciseFailed, match="expected shape \\(2, 3\\).*got shape \\(3, 2\\)"):
        check("Exercise 0.1", lambda x: (x**2).T, square, CASES)
    with pytest.raises(ExerciseFailed, match="raised ZeroDivisionError"):
        check("Exercise 0.1", lambda x: 1 / 0, square, CASES)

    def stub(x):
        raise NotImplementedError

    with pytest.raises(NotImplementedError, match="Exercise 0.1: not written yet"):
        check("Exercise 0.1", stub, square, CASES)


def test_learner_cannot_change_the_reference_inputs():
    def mutating(x):
        x.zero_()
        return x

    with pytest.raises(ExerciseFailed):
        check("Exercise 0.1", mutating, square, CASES)
    assert CASES[0].args[0][0, 1] == 1.0


def test_mismatch_on_containers_and_numbers():
    assert mismatch({"a": 1.0}, {"a": 1.0}) is None
    assert "keys" in mismatch({"a": 1.0}, {"b": 1.0})
    assert "[1]" in mismatch((torch.zeros(2), torch.ones(2)), (torch.zeros(2), torch.zeros(2)))
    assert "expected a number" in mismatch(1.0, "one")
    assert "expected a tensor" in mismatch(torch.zeros(2), [0.0, 0.0])
    assert "entries differ" in mismatch(torch.tensor([True, False]), torch.tensor([True, True]))


def test_dtype_is_part_of_the_contract():
    mask = torch.tensor([True, False])
    assert "expected dtype torch.bool" in mismatch(mask, mask.float())
    assert "expected dtype torch.float32" in mismatch(torch.zeros(2), torch.zeros(2, dtype=torch.float64))
    assert "expected dtype torch.bool" in mismatch(mask, torch.where(mask, 0.0, float("-inf")))


def test_check_hands_back_the_learners_function():
    def mine(x):
        return x * x

    assert check("Exercise 0.1", mine, square, CASES) is mine


def test_an_error_names_the_learners_line():
    def buggy(x):
        y = x.sum(dim=5)  # the learner's bug
        return y

    with pytest.raises(ExerciseFailed, match=r"raised IndexError.*at line \d+ of test_checks.py \(in buggy\): y = x.sum\(dim=5\)"):
        check("Exercise 0.1", buggy, square, CASES)


def test_the_reference_is_hidden_while_the_learner_runs():
    with pytest.raises(ExerciseFailed, match="WriteItYourself: Exercise 0.1: write it yourself"):
        check("Exercise 0.1", lambda x: square(x), square, CASES)
    assert square(torch.tensor(2.0)) == 4.0, "the reference is back after the check"
    with pytest.raises(ExerciseFailed, match="write it yourself"):
        check("Exercise 0.1", lambda x: Squarer.of(x), Squarer.of, CASES)
    assert Squarer.of(torch.tensor(3.0)) == 9.0


class Squarer:
    """A reference that is a method of a class: hidden on the class."""

    @staticmethod
    def of(x):
        return x**2


def test_skip_hands_back_the_reference(monkeypatch, capsys):
    def stub(x):
        raise NotImplementedError

    monkeypatch.setattr(checks, "_skipped", set())
    checks.skip("Exercise 0.7")
    assert check("Exercise 0.7 square", stub, square, CASES) is square
    assert "skipped" in capsys.readouterr().out
    monkeypatch.setenv(checks.SKIP_ENV, "all")
    assert check("Exercise 0.8 square", stub, square, CASES) is square
    monkeypatch.setenv(checks.SKIP_ENV, "0.9")
    assert checks.skipped("Exercise 0.9") and not checks.skipped("Exercise 0.8")
