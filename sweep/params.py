"""The parameters each experiment understands: type, range, default, and whether they shape draws.

A parameter may be given under ``[fixed]`` (one value) or ``[axes]`` (several values, one cube
dimension). ``shapes_draws`` marks the parameters that change the shape of the random objects
(sizes and ratios) and therefore key the random seeds; the others (spike strength, learning rate,
activation, ...) reuse the same noise and weights: common random numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kernels.activations import UnknownActivationError, get_activation

__all__ = ["EXPERIMENTS", "ParamDef", "SpecError", "params_for"]


class SpecError(ValueError):
    """A study file that cannot run; the message names the key and the reason."""


def _positive(v: float) -> str | None:
    return None if v > 0 else "must be > 0"


def _non_negative(v: float) -> str | None:
    return None if v >= 0 else "must be >= 0"


def _at_least(lo: int) -> Callable[[int], str | None]:
    return lambda v: None if v >= lo else f"must be >= {lo}"


def _activation(v: str) -> str | None:
    try:
        get_activation(v)
    except UnknownActivationError as exc:
        return str(exc)
    return None


def _one_of(choices: tuple[str, ...]) -> Callable[[str], str | None]:
    return lambda v: None if v in choices else f"must be one of {list(choices)}"


@dataclass(frozen=True)
class ParamDef:
    """One study parameter.

    Attributes:
        kind: python type of a value (int, float or str).
        default: value used when the study gives none (None: required).
        check: returns an error reason for a bad value, or None.
        shapes_draws: whether it changes the random objects' shapes (keys the seed).
        axis: whether it may be a grid axis.
        doc: one line for ``sweep plan`` and the README.
    """

    kind: type
    default: Any
    check: Callable[[Any], str | None] | None
    shapes_draws: bool
    axis: bool
    doc: str
    units: str = ""


_COMMON: dict[str, ParamDef] = {
    "n": ParamDef(int, None, _at_least(8), True, True, "number of samples (columns of X)"),
    "input_ratio": ParamDef(float, 1.0, _positive, True, True, "d0 / n (gamma0 = n / d0)"),
    "width_ratio": ParamDef(float, 1.0, _positive, True, True, "hidden width / n (gamma = n / d)"),
    "activation": ParamDef(str, "tanh", _activation, False, True, "activation (normalised)"),
    "lr": ParamDef(float, 0.0, _non_negative, False, True, "learning rate eta (total over steps)"),
    "steps": ParamDef(int, 1, _at_least(1), False, True, "gradient steps T (eta_t = eta / T)"),
}

DEEP_CK: dict[str, ParamDef] = {
    **_COMMON,
    "depth": ParamDef(int, None, _at_least(0), True, False,
                      "layers 0..depth measured in one forward pass (the `layer` dimension)"),
    "input": ParamDef(str, "gmm", _one_of(("gmm", "spiked_cov")), True, True,
                      "input model: gmm (signal-plus-noise mixture) or spiked_cov"),
    "spike": ParamDef(float, None, _non_negative, False, True,
                      "spike strength theta of the single signal"),
    "input_scale": ParamDef(float, 1.0, _positive, False, True,
                            "input column norm s (noise entries N(0, s^2/d0); theory: s = 1)"),
}

ONE_STEP: dict[str, ParamDef] = {
    **_COMMON,
    "input_ratio": ParamDef(float, 0.8, _positive, True, True, "input dimension d / n"),
    "width_ratio": ParamDef(float, 1.2, _positive, True, True, "network width N / n"),
    "activation": ParamDef(str, "erf", _activation, False, True, "student activation"),
    "d": ParamDef(int, 0, _at_least(0), True, True,
                  "input dimension d (0: input_ratio * n; >0 overrides the ratio)"),
    "N": ParamDef(int, 0, _at_least(0), True, True,
                  "network width N (0: width_ratio * n; >0 overrides the ratio)"),
    "teacher": ParamDef(str, "erf", _activation, False, True, "teacher activation sigma*"),
    "noise": ParamDef(float, 0.0, _non_negative, False, True, "label noise sd sigma_eps"),
    "lr": ParamDef(float, 1.0, _non_negative, False, True, "total learning rate eta0 (eta = eta0 N^a)"),
    "lr_scaling": ParamDef(float, 0.0, _non_negative, False, True,
                           "exponent a in eta = eta0 * N^a (0: theory regime; 1/2: large steps)"),
}

EXPERIMENTS: dict[str, dict[str, ParamDef]] = {"deep-ck": DEEP_CK, "one-step": ONE_STEP}


def params_for(experiment: str) -> dict[str, ParamDef]:
    """The parameter table of ``experiment`` (SpecError listing the kinds when unknown)."""
    try:
        return EXPERIMENTS[experiment]
    except KeyError:
        raise SpecError(
            f"study.experiment: {experiment!r} is not an experiment; choose one of {sorted(EXPERIMENTS)}"
        ) from None
