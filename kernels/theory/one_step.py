"""One gradient step on a two-layer network: the paper's Theorem 6 (THEORY.md §5).

Notation of §5 (rows are samples): X ∈ R^{n×d}, W ∈ R^{d×N}; γ0 = N/d, γ1 = N/n; student σ with
coefficient b, teacher σ* with b*, label noise σ_ε; total learning rate η = Σ η_t.

- Rank-one update W_T ≈ W0 + (bη/n) Xᵀy aᵀ of size θ1 = |b| η √((γ1/γ0)(1 + σ_ε²) + b*²), and
  θ2 = b b* η (= θ1 b*/√((γ1/γ0)(1 + σ_ε²) + b*²) when θ1 is given as a realised size).
- Test CK K = σ(X̃W_T)σ(X̃W_T)ᵀ/N: population spike λ1 = b²(1+θ1²)(γ0+θ1²)/θ1² + 1 − b² on the
  bulk ν = law of b² x + 1 − b², x ~ MP(γ0), ratio γ1 — i.e. one Fan–Wang layer on top of the
  level MP(γ0) carrying the "gmm" input spike of strength θ1.
- Spike iff θ1⁴ > γ0 and ψ'(λ1) > 0: λ_max(K) → ψ(λ1)/γ1; bulk edge E/γ1.
- Squared label alignment (1/n)(ỹᵀû)² → (b b*)² ψ(λ1) φ/λ1² · θ2² (θ1⁴ − γ0)(γ0 + θ1²)/θ1⁶ with
  φ = λ1 ψ'(λ1)/ψ(λ1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels.theory.chain import gaussian_chain
from kernels.theory.inputs import input_spikes, spike_strength_at
from kernels.theory.levels import DeformedLevel
from kernels.theory.validation import activation_status, positive

__all__ = ["OneStepPrediction", "critical_learning_rate", "one_step_prediction"]


@dataclass(frozen=True)
class OneStepPrediction:
    """Theorem 6 limits for one (activation, teacher, n, d, N, η, σ_ε).

    Attributes:
        theta1, theta2: rank-one update size and its label part.
        spike: limit of λ_max of the test CK (NaN if no spike).
        edge: limit of the test-CK bulk edge.
        alignment: squared label alignment (1/n)(ỹᵀû)² (0 if no spike).
        exists: whether the test CK has a spike.
        valid: whether the student activation is covered by the theorem; reason says why not.
        gamma0, gamma1: N/d and N/n.
    """

    theta1: float
    theta2: float
    spike: float
    edge: float
    alignment: float
    exists: bool
    valid: bool
    reason: str
    gamma0: float
    gamma1: float


def _sizes(n: int, d: int, N: int) -> tuple[float, float]:
    for name, v in (("n", n), ("d", d), ("N", N)):
        positive(name, v)
    return N / d, N / n


def _label_scale(gamma0: float, gamma1: float, noise_sd: float, b_star: float) -> float:
    """√((γ1/γ0)(1 + σ_ε²) + b*²): θ1 = |b| η times this."""
    return float(np.sqrt(gamma1 / gamma0 * (1.0 + noise_sd**2) + b_star**2))


def one_step_prediction(
    activation: str,
    teacher: str,
    n: int,
    d: int,
    N: int,
    lr: float,
    noise_sd: float = 0.0,
    theta1: float | None = None,
) -> OneStepPrediction:
    """Theorem 6 prediction; ``theta1`` overrides the rank-one size (e.g. a realised ‖W_T − W0‖)."""
    gamma0, gamma1 = _sizes(n, d, N)
    lr = positive("lr", lr, allow_zero=True)
    noise_sd = positive("noise_sd", noise_sd, allow_zero=True)
    act, valid, reason = activation_status(activation)
    b, b_star = act.b, activation_status(teacher, "teacher")[0].b
    scale = _label_scale(gamma0, gamma1, noise_sd, b_star)
    th1 = abs(b) * lr * scale if theta1 is None else positive("theta1", theta1, allow_zero=True)
    th2 = th1 * b_star / scale
    chain = gaussian_chain(b, (gamma0, gamma1))
    level = chain[1]
    assert isinstance(level, DeformedLevel)
    edge = level.edge / gamma1
    lam_w, _, sep = input_spikes("gmm", th1, gamma0)
    alpha = level.b2 * float(lam_w) + 1.0 - level.b2
    exists = bool(sep) and alpha > level.alpha_c
    spike, align = np.nan, 0.0
    if exists:
        p, dp = (float(v) for v in level.psi(alpha))
        phi = alpha * dp / p
        align = (b * b_star) ** 2 * p * phi / alpha**2
        align *= th2**2 * (th1**4 - gamma0) * (gamma0 + th1**2) / th1**6
        spike = p / gamma1
    return OneStepPrediction(
        theta1=float(th1),
        theta2=float(th2),
        spike=float(spike),
        edge=float(edge),
        alignment=float(align),
        exists=exists,
        valid=valid,
        reason=reason,
        gamma0=gamma0,
        gamma1=gamma1,
    )


def critical_learning_rate(
    activation: str, teacher: str, n: int, d: int, N: int, noise_sd: float = 0.0
) -> float:
    """Smallest η with a test-CK spike (∞ if b = 0).

    The spike needs λ1 > α_c, i.e. the weight-Gram spike λ_W > (α_c − 1 + b²)/b²; invert the
    "gmm" location map for θ1 and divide by |b| √((γ1/γ0)(1 + σ_ε²) + b*²).
    """
    gamma0, gamma1 = _sizes(n, d, N)
    noise_sd = positive("noise_sd", noise_sd, allow_zero=True)
    act, _, _ = activation_status(activation)
    b_star = activation_status(teacher, "teacher")[0].b
    level = gaussian_chain(act.b, (gamma0, gamma1))[1]
    assert isinstance(level, DeformedLevel)
    if level.b2 == 0.0:
        return float("inf")
    lam_w = (level.alpha_c - 1.0 + level.b2) / level.b2
    th1 = float(spike_strength_at("gmm", lam_w, gamma0))
    return th1 / (abs(act.b) * _label_scale(gamma0, gamma1, noise_sd, b_star))
