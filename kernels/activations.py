"""Registry of activations, normalised so that E σ(ξ) = 0 and E σ(ξ)² = 1 for ξ ~ N(0, 1).

Every activation is used normalised: σ(x) = (f(x) − E f(ξ)) / sd f(ξ). Its Hermite data decide
what the theory (Wang, Wu & Fan 2024, Assumption 3) says about it:

- b = E σ'(ξ) = E[ξ σ(ξ)], the linear coefficient; the theory needs b ≠ 0;
- E σ''(ξ) = E[(ξ² − 1) σ(ξ)]; the theory needs it to be 0 (true for every odd σ). ReLU,
  softplus and GELU violate it and create uninformative outliers: they run, flagged not valid.

Gaussian expectations use Gauss–Legendre quadrature on [−12, 0] and [0, 12] (100 nodes each)
against the N(0, 1) density instead of Gauss–Hermite: splitting at 0 makes the rule exact to
about 1e-15 for activations with a kink there (ReLU), where Gauss–Hermite converges only like
1/nodes (1e-3 error at 100 nodes); the tails beyond |x| = 12 weigh less than 1e-30.

Names: ``tanh``, ``arctan``, ``erf``, ``sin``, ``sin:<omega>`` (sin(ωx), e.g. ``sin:2``),
``identity`` (alias ``linear``), ``relu``, ``gelu``, ``softplus``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.polynomial.legendre import leggauss

__all__ = [
    "Activation",
    "UnknownActivationError",
    "gaussian_expectation",
    "get_activation",
    "registered_activations",
]

_THEORY_TOL = 1e-9


class UnknownActivationError(ValueError):
    """An activation name that is not in the registry (the message lists the registered ones)."""


@functools.lru_cache(maxsize=1)
def _gauss_nodes(n_half: int = 100, cut: float = 12.0) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights w_i with Σ w_i g(x_i) ≈ E g(ξ), ξ ~ N(0,1), split at 0."""
    u, v = leggauss(n_half)
    pos = (u + 1.0) * cut / 2.0
    x = np.concatenate([-pos[::-1], pos])
    w = np.concatenate([v[::-1], v]) * cut / 2.0 * np.exp(-(x**2) / 2.0) / np.sqrt(2.0 * np.pi)
    return x, w


def gaussian_expectation(g: Callable[[np.ndarray], np.ndarray]) -> float:
    """E g(ξ) for ξ ~ N(0, 1), by the split Gauss–Legendre rule (exact to ~1e-15 for the registry)."""
    x, w = _gauss_nodes()
    return float(np.sum(w * g(x)))


def _erf(xp: Any, x: Any) -> Any:
    if xp.__name__ == "numpy":
        from scipy.special import erf
    else:  # cupy
        from cupyx.scipy.special import erf
    return erf(x)


def _raw_functions() -> dict[str, Callable[[Any, Any], Any]]:
    return {
        "tanh": lambda xp, x: xp.tanh(x),
        "arctan": lambda xp, x: xp.arctan(x),
        "erf": _erf,
        "identity": lambda xp, x: x,
        "relu": lambda xp, x: xp.maximum(x, 0),
        "gelu": lambda xp, x: 0.5 * x * (1.0 + _erf(xp, x / np.sqrt(2.0))),
        "softplus": lambda xp, x: xp.logaddexp(0, x),
    }


_ALIASES = {"linear": "identity"}
_PARAMETRISED = {"sin": "sin:<omega> (sin(omega x), omega > 0)"}


def registered_activations() -> list[str]:
    """Names accepted by :func:`get_activation` (``sin:<omega>`` stands for any omega > 0)."""
    return sorted([*_raw_functions(), "sin", *_ALIASES, _PARAMETRISED["sin"]])


@dataclass(frozen=True)
class Activation:
    """A normalised activation σ(x) = (f(x) − shift) / scale with its Hermite data.

    Attributes:
        name: canonical name (``"sin:2"`` for sin(2x); ``"sin"`` for ω = 1).
        b: E σ'(ξ) = E[ξ σ(ξ)].
        second: E σ''(ξ) = E[(ξ² − 1) σ(ξ)].
        shift, scale: E f(ξ) and sd f(ξ) of the raw function.
    """

    name: str
    b: float
    second: float
    shift: float
    scale: float
    _raw: Callable[[Any, Any], Any] = field(repr=False, compare=False)

    def __call__(self, x: Any, xp: Any = np) -> Any:
        """Apply the normalised activation elementwise with array module ``xp``."""
        y = self._raw(xp, x)
        if self.shift != 0.0:
            y = y - self.shift
        return y * (1.0 / self.scale)

    def raw(self, x: Any, xp: Any = np) -> Any:
        """The un-normalised function f."""
        return self._raw(xp, x)

    @property
    def theory_valid(self) -> bool:
        """Whether the paper's theory applies: E σ'' = 0 and b ≠ 0 (to 1e-9)."""
        return abs(self.second) < _THEORY_TOL and abs(self.b) > _THEORY_TOL

    @property
    def theory_reason(self) -> str:
        """Empty when :attr:`theory_valid`; otherwise why the theory does not apply."""
        if abs(self.b) <= _THEORY_TOL:
            return f"{self.name}: b = E sigma' = 0, no linear part to carry a spike"
        if abs(self.second) >= _THEORY_TOL:
            return f"{self.name}: E sigma'' = {self.second:.4g} != 0 (not odd; uninformative outliers)"
        return ""


def _parse(name: str) -> tuple[str, Callable[[Any, Any], Any]]:
    raw = _raw_functions()
    key = _ALIASES.get(name.strip().lower(), name.strip().lower())
    if key in raw:
        return key, raw[key]
    if key == "sin" or key.startswith("sin:"):
        omega_txt = key.partition(":")[2] or "1"
        try:
            omega = float(omega_txt)
        except ValueError:
            omega = float("nan")
        if not np.isfinite(omega) or omega <= 0:
            raise UnknownActivationError(
                f"activation {name!r}: omega in 'sin:<omega>' must be a positive number"
            )
        canonical = "sin" if omega == 1.0 else f"sin:{omega:g}"
        return canonical, lambda xp, x, w=omega: xp.sin(w * x)
    raise UnknownActivationError(
        f"activation {name!r} is not registered; choose one of {registered_activations()}"
    )


@functools.lru_cache(maxsize=256)
def get_activation(name: str) -> Activation:
    """The normalised activation called ``name``, with b and E σ'' by quadrature.

    Raises:
        UnknownActivationError: the name is not registered (message lists the registry).
    """
    canonical, f = _parse(name)
    shift = gaussian_expectation(lambda x: f(np, x))
    var = gaussian_expectation(lambda x: (f(np, x) - shift) ** 2)
    if var <= 0:
        raise UnknownActivationError(f"activation {name!r} is constant under N(0,1)")
    scale = float(np.sqrt(var))
    b = gaussian_expectation(lambda x: x * (f(np, x) - shift)) / scale
    second = gaussian_expectation(lambda x: (x**2 - 1) * (f(np, x) - shift)) / scale
    if abs(second) < 1e-12:
        second = 0.0
    if abs(shift) < 1e-14:
        shift = 0.0
    return Activation(canonical, float(b), float(second), float(shift), scale, f)
