"""Checks for the classroom exercises, one module per notebook (``nb00`` ... ``nb05``).

Each module exposes ``check_<function>(learner_function)``: it builds a few small inputs, runs the
learner's function and the reference implementation in ``utils`` on them, and reports through
:func:`utils.checks.check`. A notebook imports its module: ``from utils.exercises import nb05``.

Public names: the modules ``nb00``, ``nb01``, ``nb02``, ``nb03``, ``nb04``, ``nb05``.
"""

__all__ = ["nb00", "nb01", "nb02", "nb03", "nb04", "nb05"]
