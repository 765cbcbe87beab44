"""One gradient step (Theorem 6): consistency of the prediction, thresholds, overrides, errors."""

from __future__ import annotations

import numpy as np
import pytest

from kernels.activations import get_activation
from kernels.theory import (
    critical_learning_rate,
    deep_levels,
    one_step_prediction,
)

SIZES = {"n": 2000, "d": 1600, "N": 2400}  # γ0 = N/d = 1.5, γ1 = N/n = 1.2


def test_one_step_is_one_fan_wang_layer() -> None:
    """Spike = ψ(λ1)/γ1 with λ1 the population spike of the weight Gram's "gmm" spike."""
    p = one_step_prediction("erf", "erf", lr=2.0, **SIZES)
    chain = deep_levels("erf", 1 / 1.5, [1 / 1.2])
    b2 = get_activation("erf").b ** 2
    th = p.theta1
    lam_w = (1 + th**2) * (1.5 + th**2) / th**2
    psi, _ = chain[1].psi(b2 * lam_w + 1 - b2)
    assert p.spike == pytest.approx(float(psi) / 1.2, rel=1e-12)
    assert p.edge == pytest.approx(chain[1].edge / 1.2, rel=1e-12)
    assert p.spike > p.edge


def test_no_step_no_spike() -> None:
    p = one_step_prediction("tanh", "tanh", lr=0.0, **SIZES)
    assert p.theta1 == 0.0 and not p.exists and np.isnan(p.spike) and p.alignment == 0.0
    # the bulk does not depend on the step: one Fan–Wang layer (γ1) on MP(γ0), divided by γ1
    assert p.edge == pytest.approx(deep_levels("tanh", 1 / 1.5, [1 / 1.2])[1].edge / 1.2)


@pytest.mark.parametrize("noise", [0.0, 0.5])
def test_critical_learning_rate_is_the_spike_threshold(noise: float) -> None:
    lr_c = critical_learning_rate("tanh", "tanh", noise_sd=noise, **SIZES)
    above = one_step_prediction("tanh", "tanh", lr=lr_c * (1 + 1e-6), noise_sd=noise, **SIZES)
    below = one_step_prediction("tanh", "tanh", lr=lr_c * (1 - 1e-6), noise_sd=noise, **SIZES)
    assert above.exists and not below.exists
    assert above.spike == pytest.approx(above.edge, rel=1e-3)  # born at the edge
    assert above.alignment == pytest.approx(0.0, abs=1e-3)


def test_label_noise_raises_theta1_and_lowers_alignment() -> None:
    clean = one_step_prediction("tanh", "tanh", lr=3.0, **SIZES)
    noisy = one_step_prediction("tanh", "tanh", lr=3.0, noise_sd=1.0, **SIZES)
    assert noisy.theta1 > clean.theta1
    assert noisy.theta2 == pytest.approx(clean.theta2, rel=1e-14)  # θ2 = b b* η
    assert noisy.alignment < clean.alignment


def test_theta1_override_scales_theta2_consistently() -> None:
    """Overriding θ1 with the formula's own value reproduces the prediction exactly."""
    p = one_step_prediction("erf", "tanh", lr=2.5, noise_sd=0.3, **SIZES)
    q = one_step_prediction("erf", "tanh", lr=99.0, noise_sd=0.3, theta1=p.theta1, **SIZES)
    assert q.theta2 == pytest.approx(p.theta2, rel=1e-14)
    assert q.spike == pytest.approx(p.spike, rel=1e-14)
    assert q.alignment == pytest.approx(p.alignment, rel=1e-14)
    smaller = one_step_prediction(
        "erf", "tanh", lr=2.5, noise_sd=0.3, theta1=0.8 * p.theta1, **SIZES
    )
    assert smaller.spike < p.spike and smaller.theta2 == pytest.approx(0.8 * p.theta2, rel=1e-14)


def test_alignment_grows_with_lr_and_stays_bounded() -> None:
    lrs = np.linspace(1.5, 20, 12)
    al = [one_step_prediction("erf", "erf", lr=float(lr), **SIZES).alignment for lr in lrs]
    assert np.all(np.diff(al) > 0) and max(al) < 1


def test_invalid_student_is_flagged_not_hidden() -> None:
    p = one_step_prediction("relu", "tanh", lr=2.0, **SIZES)
    assert not p.valid and "relu" in p.reason
    assert np.isfinite(p.edge)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n": 0}, "n"),
        ({"d": -5}, "d"),
        ({"N": np.nan}, "N"),
        ({"lr": -1.0}, "lr"),
        ({"noise_sd": -0.1}, "noise_sd"),
    ],
)
def test_bad_arguments(kwargs: dict, name: str) -> None:
    args = {"n": 100, "d": 100, "N": 100, "lr": 1.0} | kwargs
    with pytest.raises(ValueError, match=name):
        one_step_prediction("tanh", "tanh", **args)


def test_unknown_teacher_named() -> None:
    with pytest.raises(ValueError, match="teacher"):
        one_step_prediction("tanh", "cosh", lr=1.0, **SIZES)
