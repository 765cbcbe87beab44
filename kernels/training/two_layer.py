"""Two-layer teacher–student model and its full-batch gradient descent (the paper's Theorem 6).

Setting of Wang, Wu & Fan (2024), Section 5, after Ba et al. (2022), with rows as samples:
X ∈ R^{n×d} with N(0, 1) entries; f(x) = σ(xᵀW) a/√N with W ∈ R^{d×N}, W0 entries N(0, 1/d), and a
fixed second layer a with N(0, 1/N) entries; labels y = σ*(xᵀβ*) + ε with ‖β*‖ = 1 and
ε ~ N(0, σ_ε²); loss L(W) = (1/2n) Σ_i (f(x_i) − y_i)²; steps W ← W + η_t √N G with G = −∇_W L and
Σ_t η_t = η. The paper's ratios here are γ0 = N/d and γ1 = N/n.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kernels.activations import Activation, get_activation
from kernels.backend import Backend
from kernels.seeding import as_seed_sequence, derive
from kernels.training.derivative import activation_derivative

__all__ = [
    "TeacherStudentData",
    "draw_teacher_student",
    "gradient",
    "loss",
    "step_sizes",
    "train",
    "train_with_losses",
]

_SCHEDULES = ("constant", "linear")


@dataclass(frozen=True, eq=False)
class TeacherStudentData:
    """Everything random in one teacher–student task, drawn once and reused across learning rates.

    Attributes:
        X: training inputs, (n, d) on the backend, N(0, 1) entries (rows are samples).
        y: training labels σ*(Xβ*) + ε, (n,) on the backend.
        X_test: fresh test inputs, (n_test, d); y_test: their labels, noise included.
        W0: first-layer weights at initialisation, (d, N), N(0, 1/d) entries.
        a: fixed second layer, (N,), N(0, 1/N) entries.
        beta: teacher direction β*, (d,), unit norm.
        teacher: canonical name of σ*; noise_sd: σ_ε; backend: where the arrays live.
    """

    X: Any
    y: Any
    X_test: Any
    y_test: Any
    W0: Any
    a: Any
    beta: Any
    teacher: str
    noise_sd: float
    backend: Backend

    @property
    def n(self) -> int:
        """Number of training samples."""
        return int(self.X.shape[0])

    @property
    def d(self) -> int:
        """Input dimension."""
        return int(self.X.shape[1])

    @property
    def N(self) -> int:  # noqa: N802 - the paper's name for the width
        """Width of the hidden layer."""
        return int(self.W0.shape[1])

    @property
    def n_test(self) -> int:
        """Number of test samples."""
        return int(self.X_test.shape[0])


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: {value!r} must be a positive integer")
    return int(value)


def as_activation(activation: str | Activation) -> Activation:
    """Look up the registry's normalised activation by name (an Activation passes through)."""
    return activation if isinstance(activation, Activation) else get_activation(activation)


def draw_teacher_student(
    n: int,
    d: int,
    N: int,  # noqa: N803 - the paper's name for the width
    n_test: int,
    teacher: str,
    noise_sd: float,
    seed: np.random.SeedSequence | int,
    backend: Backend,
) -> TeacherStudentData:
    """Draw inputs, teacher, label noise and the initial network for one task.

    The label noise is drawn as standard normals and scaled by ``noise_sd``, so tasks that differ
    only in σ_ε (or in the student's activation or the learning rate) share every draw.

    Raises:
        ValueError: a size is not a positive integer, ``noise_sd`` is negative or not finite, or
            ``teacher`` is not a registered activation.
    """
    n, d, N, n_test = (_positive_int(k, v) for k, v in
                       (("n", n), ("d", d), ("N", N), ("n_test", n_test)))
    if not (math.isfinite(noise_sd) and noise_sd >= 0):
        raise ValueError(f"noise_sd: {noise_sd!r} must be a finite number >= 0")
    seed = as_seed_sequence(seed)
    sigma_star = as_activation(teacher)
    xp = backend.xp

    def normal(stream: str, shape: tuple[int, ...]) -> Any:
        # One child seed per random object (named, not numbered by call order), so that changing
        # one object's shape (n_test, say) leaves every other draw unchanged.
        return backend.standard_normal(backend.rng(derive(seed, "teacher-student", stream)), shape)

    X = normal("X", (n, d))
    X_test = normal("X_test", (n_test, d))
    beta = normal("beta", (d,))
    beta = beta / xp.linalg.norm(beta)
    y = sigma_star(X @ beta, xp=xp) + noise_sd * normal("noise", (n,))
    y_test = sigma_star(X_test @ beta, xp=xp) + noise_sd * normal("noise_test", (n_test,))
    W0 = normal("W0", (d, N)) * (1.0 / math.sqrt(d))
    a = normal("a", (N,)) * (1.0 / math.sqrt(N))
    return TeacherStudentData(X, y, X_test, y_test, W0, a, beta, sigma_star.name,
                              float(noise_sd), backend)


def predict(W: Any, X: Any, data: TeacherStudentData, activation: str | Activation) -> Any:
    """Network output f(X) = σ(XW) a/√N on the rows of ``X``."""
    act = as_activation(activation)
    return act(X @ W, xp=data.backend.xp) @ data.a * (1.0 / math.sqrt(data.N))


def loss(W: Any, data: TeacherStudentData, activation: str | Activation,
         split: str = "train") -> float:
    """Squared loss (1/2n) Σ (f(x_i) − y_i)² on the training (``"train"``) or test split."""
    if split not in ("train", "test"):
        raise ValueError(f"split: {split!r} must be 'train' or 'test'")
    X, y = (data.X, data.y) if split == "train" else (data.X_test, data.y_test)
    r = predict(W, X, data, activation) - y
    return float(data.backend.to_host(r @ r)) / (2.0 * X.shape[0])


def gradient(W: Any, data: TeacherStudentData, activation: str | Activation) -> Any:
    """Negative gradient G = −∇_W L of the training loss at W, exactly and vectorised.

    With Z = XW, f = σ(Z)a/√N and r = y − f: G = Xᵀ[(r aᵀ) ⊙ σ'(Z)] / (n√N)  (d×N).
    """
    return _gradient_and_loss(W, data, as_activation(activation))[0]


def _gradient_and_loss(W: Any, data: TeacherStudentData, act: Activation) -> tuple[Any, float]:
    """(G, L(W)) from one forward pass (the loss comes free with the residual)."""
    xp = data.backend.xp
    Z = data.X @ W
    inv_sqrt_width = 1.0 / math.sqrt(data.N)
    r = data.y - act(Z, xp=xp) @ data.a * inv_sqrt_width
    D = activation_derivative(act, Z, xp)
    D *= r[:, None]
    D *= data.a[None, :]
    value = float(data.backend.to_host(r @ r)) / (2.0 * data.n)
    return (data.X.T @ D) * (inv_sqrt_width / data.n), value


def step_sizes(lr: float, steps: int, schedule: str = "constant") -> np.ndarray:
    """Return the per-step rates η_t, t = 1..T, summing to η = ``lr``.

    ``"constant"``: η_t = η/T (the paper's). ``"linear"``: η_t ∝ T − t + 1 (linear decay).
    """
    steps = _positive_int("steps", steps)
    if not (math.isfinite(lr) and lr >= 0):
        raise ValueError(f"lr: {lr!r} must be a finite number >= 0")
    if schedule == "constant":
        weights = np.ones(steps)
    elif schedule == "linear":
        weights = np.arange(steps, 0, -1, dtype=float)
    else:
        raise ValueError(f"schedule: {schedule!r} is not known; choose one of {list(_SCHEDULES)}")
    return lr * weights / weights.sum()


def train(
    data: TeacherStudentData,
    activation: str | Activation,
    lr: float,
    steps: int,
    backend: Backend | None = None,
    schedule: str | Sequence[float] = "constant",
) -> Any:
    """W_T after T full-batch steps W ← W + η_t √N G(W) from W0, with Σ η_t = ``lr``.

    ``schedule`` names a schedule of :func:`step_sizes` or gives the η_t themselves (then ``lr``
    must equal their sum). ``lr = 0`` returns a copy of W0. ``backend`` defaults to the data's and
    must match it.
    """
    return train_with_losses(data, activation, lr, steps, backend, schedule)[0]


def train_with_losses(
    data: TeacherStudentData,
    activation: str | Activation,
    lr: float,
    steps: int,
    backend: Backend | None = None,
    schedule: str | Sequence[float] = "constant",
) -> tuple[Any, np.ndarray]:
    """As :func:`train`, also returning the training losses L(W_0), ..., L(W_{T−1}).

    The losses come from the forward passes the gradients need anyway (for ``lr = 0``: L(W0)
    alone, one extra pass). L(W_T) needs one more pass: :func:`loss`.
    """
    if backend is not None and (backend.name, backend.dtype) != (data.backend.name,
                                                                 data.backend.dtype):
        raise ValueError(f"backend: {backend.name}/{backend.dtype} differs from the data's "
                         f"{data.backend.name}/{data.backend.dtype}")
    if isinstance(schedule, str):
        etas = step_sizes(lr, steps, schedule)
    else:
        etas = np.asarray(schedule, dtype=float)
        if etas.ndim != 1 or len(etas) != steps or not np.isclose(etas.sum(), lr):
            raise ValueError(f"schedule: {len(etas)} rates summing to {etas.sum():g} do not match "
                             f"steps={steps} and lr={lr}")
    act = as_activation(activation)
    W = data.W0.copy()
    if lr == 0:
        return W, np.array([loss(W, data, act)])
    scale = math.sqrt(data.N)
    losses = np.empty(len(etas))
    for t, eta_t in enumerate(etas):
        G, losses[t] = _gradient_and_loss(W, data, act)
        W += (float(eta_t) * scale) * G
    return W, losses
