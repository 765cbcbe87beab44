"""Argument checks and validity flags shared by the theory entry points.

Two kinds of trouble are kept apart: arguments the theory cannot even be evaluated at (a ratio
≤ 0, a negative learning rate: a ValueError naming the argument), and settings where the
numbers can be computed but the theorems do not cover them (an activation with E σ'' ≠ 0 or
b = 0: returned with ``valid = False`` and the reason, never silently).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kernels.activations import Activation, UnknownActivationError, get_activation

__all__ = ["activation_status", "positive", "positive_ratios"]


def positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    """``value`` as a float, or a ValueError naming ``name`` if it is not finite and > 0 (≥ 0)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number, got {value!r}") from None
    ok = np.isfinite(v) and (v >= 0 if allow_zero else v > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: must be finite and {bound}, got {value!r}")
    return v


def positive_ratios(name: str, values: Sequence[float]) -> tuple[float, ...]:
    """Each ratio finite and > 0 (proportional regime); a ValueError names the bad entry."""
    if isinstance(values, str | bytes) or not hasattr(values, "__len__"):
        raise ValueError(f"{name}: expected a sequence of ratios, got {values!r}")
    return tuple(positive(f"{name}[{i}]", v) for i, v in enumerate(values))


def activation_status(name: str, argument: str = "activation") -> tuple[Activation, bool, str]:
    """(activation, valid, reason): valid iff E σ'' = 0 and b ≠ 0 (the paper's assumption).

    An unknown name raises :class:`UnknownActivationError` (a ValueError) naming ``argument``.
    """
    try:
        act = get_activation(name)
    except UnknownActivationError as err:
        raise UnknownActivationError(f"{argument}: {err}") from None
    return act, act.theory_valid, act.theory_reason
