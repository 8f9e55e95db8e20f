"""Checks for the classroom exercises, one module per notebook (``nb01`` ... ``nb05``).

Each module exposes ``check_<function>(learner_function)``: it builds a few small inputs, runs the
learner's function and the reference implementation in ``utils`` on them, and reports through
:func:`utils.checks.check`.
"""
