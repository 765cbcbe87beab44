"""Full-batch gradient descent on a deep network in the deep-CK convention (columns are samples).

Network: X_ℓ = σ(W_ℓ X_{ℓ−1})/√d_ℓ with W_ℓ ∈ R^{d_ℓ×d_{ℓ−1}}, N(0, 1) entries at initialisation,
output f = aᵀX_L/√d_L with a fixed readout a ~ N(0, I_{d_L}); loss L = (1/2n) Σ_i (f_i − y_i)².

Learning-rate scaling: W_ℓ ← W_ℓ + η_t d_{ℓ−1} √d_L G_ℓ with G_ℓ = −∇_{W_ℓ} L and Σ_t η_t = η.
Why: to first order (σ' ≈ b) the gradient is rank one with ‖G_ℓ‖ = Θ(1/√(d_{ℓ−1} d_L)), while
‖W_ℓ‖ = Θ(√d_{ℓ−1}); the factor makes η = Θ(1) a rank-one change of relative size Θ(1), which moves
a CK spike by Θ(1) (an O(1) change of the features), as in Theorem 6. For L = 1 it *is* Theorem 6's
rule W ← W + η√N G after the change of convention W_ℓ = √d0 Wᵀ, X_0 = Xᵀ/√d0, a = √N a_thm
(checked in the tests). Like there, f itself moves by only O(1/√d) per unit of η.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

from kernels.activations import Activation
from kernels.backend import Backend
from kernels.seeding import SeedLike, derive
from kernels.training.derivative import activation_derivative
from kernels.training.two_layer import as_activation, step_sizes

__all__ = ["deep_gradient", "deep_loss", "draw_readout", "forward_with_weights", "train_deep"]


def _check_chain(X0: Any, weights: Sequence[Any]) -> None:
    if X0.ndim != 2:
        raise ValueError(f"X0: expected a (d0, n) matrix, got shape {tuple(X0.shape)}")
    if len(weights) == 0:
        raise ValueError("weights: need at least one layer")
    width = X0.shape[0]
    for i, W in enumerate(weights, start=1):
        if W.ndim != 2 or W.shape[1] != width:
            raise ValueError(f"weights[{i - 1}]: shape {tuple(W.shape)} does not take inputs of "
                             f"dimension {width} (expected (d_{i}, {width}))")
        width = W.shape[0]


def forward_with_weights(X0: Any, weights: Sequence[Any], activation: str | Activation,
                         backend: Backend) -> Iterator[Any]:
    """Yield the features X_0, ..., X_L, X_ℓ = σ(W_ℓ X_{ℓ−1})/√d_ℓ (columns are samples)."""
    _check_chain(X0, weights)
    act = as_activation(activation)
    X = X0
    yield X
    for W in weights:
        X = act(W @ X, xp=backend.xp) * (1.0 / math.sqrt(W.shape[0]))
        yield X


def draw_readout(width: int, seed: SeedLike, backend: Backend) -> Any:
    """Draw the fixed readout a ~ N(0, I_width) from the child ``(seed, "deep-readout")``."""
    return backend.standard_normal(backend.rng(derive(seed, "deep-readout")), (int(width),))


def _forward_cache(X0: Any, weights: Sequence[Any], act: Activation,
                   xp: Any) -> tuple[list[Any], list[Any]]:
    features, pre = [X0], []
    for W in weights:
        H = W @ features[-1]
        pre.append(H)
        features.append(act(H, xp=xp) * (1.0 / math.sqrt(W.shape[0])))
    return features, pre


def deep_loss(X0: Any, labels: Any, weights: Sequence[Any], readout: Any,
              activation: str | Activation, backend: Backend) -> float:
    """Squared loss (1/2n) Σ (f_i − y_i)² with f = aᵀX_L/√d_L."""
    *_, XL = forward_with_weights(X0, weights, activation, backend)
    r = readout @ XL * (1.0 / math.sqrt(XL.shape[0])) - labels
    return float(backend.to_host(r @ r)) / (2.0 * XL.shape[1])


def deep_gradient(X0: Any, labels: Any, weights: Sequence[Any], readout: Any,
                  activation: str | Activation, backend: Backend) -> list[Any]:
    """Negative gradients G_ℓ = −∇_{W_ℓ} L for every layer, by hand-written backpropagation.

    With r = y − f, B_L = a rᵀ/(n√d_L); for ℓ = L..1: Δ_ℓ = σ'(W_ℓX_{ℓ−1}) ⊙ B_ℓ/√d_ℓ,
    G_ℓ = Δ_ℓ X_{ℓ−1}ᵀ, B_{ℓ−1} = W_ℓᵀΔ_ℓ.
    """
    _check_chain(X0, weights)
    act = as_activation(activation)
    xp = backend.xp
    n = X0.shape[1]
    features, pre = _forward_cache(X0, weights, act, xp)
    inv_sqrt_dl = 1.0 / math.sqrt(features[-1].shape[0])
    r = labels - readout @ features[-1] * inv_sqrt_dl
    B = readout[:, None] * (r[None, :] * (inv_sqrt_dl / n))
    grads: list[Any] = [None] * len(weights)
    for i in range(len(weights) - 1, -1, -1):
        delta = activation_derivative(act, pre[i], xp)
        delta *= B
        delta *= 1.0 / math.sqrt(weights[i].shape[0])
        grads[i] = delta @ features[i].T
        if i > 0:
            B = weights[i].T @ delta
    return grads


def train_deep(
    X0: Any,
    labels: Any,
    weights: Sequence[Any],
    activation: str | Activation,
    lr: float,
    steps: int,
    backend: Backend,
    *,
    readout: Any | None = None,
    seed: SeedLike = 0,
    schedule: str = "constant",
) -> list[Any]:
    """Weights after T full-batch steps W_ℓ ← W_ℓ + η_t d_{ℓ−1} √d_L G_ℓ, Σ η_t = ``lr``.

    ``labels`` are the targets y (n,), on the host or the backend — for the Gaussian mixture the
    class signs ±1. The readout is ``readout`` if given, else :func:`draw_readout` from ``seed``
    (pass the task's seed: the default 0 gives every replicate the same readout). The input
    weights are not modified; ``lr = 0`` returns copies.

    Raises:
        ValueError: shapes that do not chain, labels not of length n, a readout of the wrong
            length, or an invalid ``lr``/``steps``/``schedule``.
    """
    _check_chain(X0, weights)
    n = X0.shape[1]
    if labels is None:
        raise ValueError("labels: training needs targets (got None)")
    labels = backend.asarray(labels)  # host labels are fine: moved to the backend once here
    if labels.shape != (n,):
        raise ValueError(f"labels: shape {tuple(labels.shape)} must be (n,) = ({n},)")
    width = weights[-1].shape[0]
    if readout is None:
        readout = draw_readout(width, seed, backend)
    else:
        readout = backend.asarray(readout)
    if readout.shape != (width,):
        raise ValueError(f"readout: shape {tuple(readout.shape)} must be (d_L,) = ({width},)")
    etas = step_sizes(lr, steps, schedule)
    act = as_activation(activation)
    trained = [W.copy() for W in weights]
    if lr == 0:
        return trained
    factors = [W.shape[1] * math.sqrt(width) for W in trained]
    for eta_t in etas:
        grads = deep_gradient(X0, labels, trained, readout, act, backend)
        for W, G, c in zip(trained, grads, factors, strict=True):
            W += (float(eta_t) * c) * G
    return trained
