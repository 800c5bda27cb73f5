"""The hard and the soft evaluation of a run, one rule for every task."""

from __future__ import annotations

from typing import Callable, TypeVar

Result = TypeVar("Result")


def hard_and_soft(method, evaluate: Callable[[str | None], Result]) -> tuple[Result, Result]:
    """The "hard" evaluation (the method's deployed mode, Eq. 12 for the paper's) and the
    "soft" one (its training mode, Eq. 7), in that order.

    A model without two such modes (full precision, or a method that computes one way) is
    evaluated once and "soft" repeats "hard", so every metrics record keeps both fields.

    Args:
        method: the run's ``QuantMethod``, or None for a full-precision model.
        evaluate: evaluates the model in a mode (None: as it is); it switches the mode itself.
    """
    if method is None or method.eval_mode is None:
        both = evaluate(None)
        return both, both
    hard = evaluate(method.eval_mode)
    if method.train_mode is None or method.train_mode == method.eval_mode:
        return hard, hard
    return hard, evaluate(method.train_mode)
