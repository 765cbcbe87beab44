"""Training experiments: the paper's two-layer one-gradient-step setting and deep-network GD."""

from kernels.training.two_layer import (
    TeacherStudentData,
    draw_teacher_student,
    gradient,
    loss,
    step_sizes,
    train,
)

__all__ = [
    "TeacherStudentData",
    "draw_teacher_student",
    "gradient",
    "loss",
    "step_sizes",
    "train",
]
