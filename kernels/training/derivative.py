"""Derivative σ' of the normalised activations, for exact gradients without autograd.

σ(x) = (f(x) − shift)/scale (see :mod:`kernels.activations`), so σ'(x) = f'(x)/scale with f' the
closed-form derivative of the raw function below. The registry in :mod:`kernels.activations` does
not expose σ' yet; this table covers every registered name and is checked against central finite
differences of the registered σ in the tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from kernels.activations import Activation, get_activation

__all__ = ["activation_derivative"]


def _gelu_prime(xp: Any, x: Any) -> Any:
    # f = x Φ(x), f' = Φ(x) + x φ(x); Φ through the registry's erf (works for numpy and cupy).
    phi_cdf = 0.5 * (1.0 + get_activation("erf").raw(x * (1.0 / math.sqrt(2.0)), xp=xp))
    return phi_cdf + x * xp.exp(-0.5 * x * x) * (1.0 / math.sqrt(2.0 * math.pi))


_RAW_PRIME: dict[str, Callable[[Any, Any], Any]] = {
    "tanh": lambda xp, x: 1.0 - xp.tanh(x) ** 2,
    "arctan": lambda xp, x: 1.0 / (1.0 + x * x),
    "erf": lambda xp, x: (2.0 / math.sqrt(math.pi)) * xp.exp(-x * x),
    "identity": lambda xp, x: xp.ones_like(x),
    "relu": lambda xp, x: (x > 0).astype(x.dtype),
    "gelu": _gelu_prime,
    # logaddexp(0, x)' = logistic(x), written through tanh to stay finite for large |x|.
    "softplus": lambda xp, x: 0.5 * (1.0 + xp.tanh(0.5 * x)),
}


def activation_derivative(act: Activation, x: Any, xp: Any) -> Any:
    """σ'(x) for the normalised activation ``act``, elementwise with array module ``xp``.

    Raises:
        ValueError: ``act`` has no derivative in this table (a new registry entry needs one here).
    """
    name = act.name
    if name == "sin" or name.startswith("sin:"):
        omega = float(name.partition(":")[2] or "1")
        raw = omega * xp.cos(omega * x)
    elif name in _RAW_PRIME:
        raw = _RAW_PRIME[name](xp, x)
    else:
        raise ValueError(f"activation: no derivative known for {name!r}; add it to {__name__}")
    return raw * (1.0 / act.scale)
