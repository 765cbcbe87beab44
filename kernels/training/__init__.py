"""Training experiments: the paper's two-layer one-gradient-step setting and deep-network GD.

Notation map (kept inside this package, DESIGN.md): the two-layer experiment uses the paper's
Section-5 convention — X ∈ R^{n×d} with *rows* as samples and N(0, 1) entries, W ∈ R^{d×N},
γ0 = N/d, γ1 = N/n — while the deep experiment uses the deep-CK convention (columns are samples,
X_ℓ = σ(W_ℓX_{ℓ−1})/√d_ℓ). One maps to the other by X_0 = Xᵀ/√d, W_1 = √d Wᵀ, a = √N a_thm.
"""

from kernels.training.deep import (
    deep_gradient,
    deep_loss,
    draw_readout,
    forward_with_weights,
    train_deep,
)
from kernels.training.measure import OneStepMeasurement, ck_features, measure_one_step
from kernels.training.two_layer import (
    TeacherStudentData,
    draw_teacher_student,
    gradient,
    loss,
    step_sizes,
    train,
    train_with_losses,
)

__all__ = [
    "OneStepMeasurement",
    "TeacherStudentData",
    "ck_features",
    "deep_gradient",
    "deep_loss",
    "draw_readout",
    "draw_teacher_student",
    "forward_with_weights",
    "gradient",
    "loss",
    "measure_one_step",
    "step_sizes",
    "train",
    "train_deep",
    "train_with_losses",
]
