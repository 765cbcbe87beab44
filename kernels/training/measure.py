"""Measurements of the one-gradient-step experiment (the paper's Theorem 6, Fig. 3).

After T steps from W0 (see :mod:`kernels.training.two_layer`), on fresh test data X̃ (n_test rows):

- the test CK K = σ(X̃W_T)σ(X̃W_T)ᵀ/N = FᵀF with features F = σ(X̃W_T)ᵀ/√N (N × n_test): its top-k
  eigenvalues, empirical bulk edge and outlier count (:func:`kernels.observables.measure_layer`,
  which uses no theory);
- the squared alignment of K's top eigenvector û with the test labels ỹ, as (ỹᵀû)²/n_test (the
  quantity of Theorem 6, whose square root is (1/√n)|ỹᵀû|) and as (ỹᵀû)²/‖ỹ‖² (unit label vector);
- the realised rank-one size θ̂1 = s_max(W_T − W0), the largest singular value of the raw update
  in the paper's scale (W0 entries N(0, 1/d)), which is what Theorem 6's θ1 predicts: the update
  is ≈ (bη/n)Xᵀy aᵀ with ‖Xᵀy/n‖² → (γ1/γ0)(1 + σ_ε²) + b*² and ‖a‖ → 1, so s_max → θ1, and
  W_T = W0 + θ1 u vᵀ is the spiked weight model whose test CK Theorem 6 describes. No factor
  √N or √d enters. Theory at the realised size: ``one_step_prediction(..., theta1=θ̂1)``;
- the squared overlap of W_T − W0's top left singular vector with β*
  (→ b*²/(b*² + (γ1/γ0)(1 + σ_ε²)) for one step), and the training loss before and after.

The theory's test-CK ratio is N/n_test; it equals Theorem 6's γ1 = N/n only when n_test = n.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from kernels.activations import Activation
from kernels.backend import Backend
from kernels.eigen import top_eigenpairs
from kernels.observables import measure_layer
from kernels.seeding import SeedLike
from kernels.training.two_layer import TeacherStudentData, as_activation, loss, train_with_losses

__all__ = ["OneStepMeasurement", "measure_one_step", "ck_features"]


@dataclass(frozen=True)
class OneStepMeasurement:
    """What one trained two-layer network shows (module docstring for the definitions).

    Attributes:
        eigval: (k,) top eigenvalues of the test CK, descending.
        edge_emp: empirical bulk edge of the test CK; n_outliers: detected outliers.
        align_label: (ỹᵀû)²/n_test for the top eigenvector û.
        align_label_unit: (ỹᵀû)²/‖ỹ‖².
        theta1_realised: s_max(W_T − W0) (0 when lr = 0).
        beta_align: ⟨u1, β*⟩² for the top left singular vector u1 of W_T − W0 (NaN when lr = 0).
        loss_before, loss_after: training loss (1/2n)Σ(f − y)² at W0 and at W_T.
    """

    eigval: np.ndarray
    edge_emp: float
    n_outliers: int
    align_label: float
    align_label_unit: float
    theta1_realised: float
    beta_align: float
    loss_before: float
    loss_after: float


def ck_features(W: Any, data: TeacherStudentData, activation: str | Activation) -> Any:
    """F = σ(X̃W)ᵀ/√N (N × n_test), so that the test CK is FᵀF."""
    act = as_activation(activation)
    return act(data.X_test @ W, xp=data.backend.xp).T * (1.0 / math.sqrt(data.N))


def measure_one_step(
    data: TeacherStudentData,
    activation: str | Activation,
    lr: float,
    steps: int,
    k: int,
    backend: Backend | None = None,
    seed: SeedLike | None = None,
    schedule: str = "constant",
) -> OneStepMeasurement:
    """Train T = ``steps`` steps with Σ η_t = ``lr`` and measure (module docstring).

    ``seed`` seeds the Lanczos start vectors (default deterministic); ``backend`` defaults to the
    data's and must match it.
    """
    be = data.backend if backend is None else backend
    act = as_activation(activation)
    W, losses = train_with_losses(data, act, lr, steps, be, schedule=schedule)
    y_test = np.asarray(be.to_host(data.y_test), dtype=np.float64)
    y_norm2 = float(y_test @ y_test)
    if y_norm2 == 0.0:
        raise ValueError("data: the test labels are all zero; no label alignment is defined")
    layer = measure_layer(ck_features(W, data, act), (y_test / math.sqrt(y_norm2))[None, :],
                          k, seed=seed, backend=be)
    unit = float(layer.overlap[0, 0])  # top eigenvector, not the greedily matched one

    if lr == 0:
        theta1, beta_align = 0.0, float("nan")
    else:
        # K = ΔW ΔWᵀ (d × d): top eigenvalue s_max², top eigenvector the left singular vector.
        # ΔW is nearly rank one (gap ~30x), so a few Lanczos matvecs v -> ΔW(ΔWᵀv) beat forming
        # the d × d Gram (2dN·d flops) on CPU; the GPU path forms it (operator only on numpy).
        s2, u = top_eigenpairs((W - data.W0).T, 1, seed=seed, backend=be,
                               operator="linear" if be.name == "numpy" else "gram")
        theta1 = math.sqrt(max(float(s2[0]), 0.0))
        beta = np.asarray(be.to_host(data.beta), dtype=np.float64)
        beta_align = float((u[:, 0] @ beta) ** 2)

    return OneStepMeasurement(
        eigval=np.asarray(layer.eigval, dtype=np.float64),
        edge_emp=float(layer.edge_emp),
        n_outliers=int(layer.n_outliers),
        align_label=unit * y_norm2 / data.n_test,
        align_label_unit=unit,
        theta1_realised=theta1,
        beta_align=beta_align,
        loss_before=float(losses[0]),
        loss_after=loss(W, data, act),
    )
