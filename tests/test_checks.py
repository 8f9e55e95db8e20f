import pytest
import torch

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
