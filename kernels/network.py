"""One forward pass through L random layers (THEORY.md section 2; the paper's equation (1.1)).

X_ℓ = σ(W_ℓ X_{ℓ−1}) / √d_ℓ with W_ℓ ∈ R^{d_ℓ × d_{ℓ−1}} entries N(0, 1) and σ normalised
(E σ(ξ) = 0, E σ(ξ)² = 1); the conjugate kernel of layer ℓ is K_ℓ = X_ℓᵀ X_ℓ (n × n).

The pass is a generator: it yields X_0, X_1, ..., X_L in turn, so measuring every layer costs one
pass and memory holds one layer at a time. W_ℓ is regenerated from ``derive(seed, "layer", ℓ)``,
so it depends only on the seed, the layer and the shape: the same seed gives the same weights
whatever the activation or spike strength (common random numbers), and nothing is stored.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from kernels.activations import Activation, get_activation
from kernels.backend import Backend
from kernels.seeding import SeedLike, derive

__all__ = ["forward", "forward_batch", "initial_weights", "layer_weights", "layer_widths"]


def layer_widths(n: int, width_ratios: Sequence[float]) -> tuple[int, ...]:
    """Hidden widths d_ℓ = round(width_ratio_ℓ · n), ℓ = 1..L (width_ratio = d_ℓ/n = 1/γ_ℓ).

    Raises:
        ValueError: n < 1, a non-finite or non-positive ratio, or a width that rounds below 1.
    """
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n: must be a positive int, got {n!r}")
    widths = []
    for layer, ratio in enumerate(width_ratios, start=1):
        ratio = float(ratio)
        if not np.isfinite(ratio) or ratio <= 0:
            raise ValueError(f"width_ratios[{layer - 1}]: must be finite and > 0, got {ratio!r}")
        d = int(round(ratio * n))
        if d < 1:
            raise ValueError(
                f"width_ratios[{layer - 1}]: {ratio} * n = {ratio * n:g} rounds to a width < 1"
            )
        widths.append(d)
    return tuple(widths)


def layer_weights(seed: SeedLike, layer: int, d_out: int, d_in: int, backend: Backend) -> Any:
    """Draw W_ℓ (d_out × d_in, entries N(0, 1)) for ``layer`` ℓ >= 1 from (seed, "layer", ℓ)."""
    if layer < 1:
        raise ValueError(f"layer: weights exist for layers >= 1, got {layer}")
    return backend.standard_normal(backend.rng(derive(seed, "layer", layer)), (d_out, d_in))


def initial_weights(d0: int, widths: Sequence[int], seed: SeedLike, backend: Backend) -> list[Any]:
    """Return [W_1, ..., W_L] for input dimension d0 and hidden ``widths``.

    Exactly the matrices :func:`forward` draws with the same seed (for code that needs to hold
    or train them).
    """
    dims = (int(d0), *_check_widths(widths))
    if dims[0] < 1:
        raise ValueError(f"d0: must be a positive int, got {d0!r}")
    return [layer_weights(seed, ell, dims[ell], dims[ell - 1], backend)
            for ell in range(1, len(dims))]


def _check_widths(widths: Sequence[int]) -> tuple[int, ...]:
    out = []
    for i, d in enumerate(widths):
        if not isinstance(d, (int, np.integer)) or isinstance(d, bool) or d < 1:
            raise ValueError(f"widths[{i}]: hidden widths must be positive ints, got {d!r}")
        out.append(int(d))
    return tuple(out)


def forward_batch(
    inputs: Sequence[Any],
    widths: Sequence[int],
    activation: Activation | str | Sequence[Activation | str],
    seed: SeedLike,
    backend: Backend,
) -> Iterator[list[Any]]:
    """Push several inputs through the same random layers; yields one list per layer 0..L.

    ``inputs`` share d0 and n; ``activation`` is one activation for all or one per input. Each
    W_ℓ is drawn once and applied to every input, so a block of spike strengths (or activations)
    pays for the weights once. Each result is bitwise the one :func:`forward` gives alone.
    """
    if len(inputs) == 0:
        raise ValueError("inputs: need at least one input matrix")
    if isinstance(activation, (str, Activation)):
        acts = [activation] * len(inputs)
    else:
        acts = list(activation)
        if len(acts) != len(inputs):
            raise ValueError(
                f"activation: got {len(acts)} activations for {len(inputs)} inputs; "
                "give one for all or one per input"
            )
    sigmas = [a if isinstance(a, Activation) else get_activation(a) for a in acts]
    hidden = _check_widths(widths)
    xp = backend.xp
    current = [backend.asarray(X) for X in inputs]
    shape = current[0].shape
    if len(shape) != 2 or any(X.shape != shape for X in current):
        raise ValueError(
            f"inputs: need 2-D arrays of one shape (d0, n); got {[tuple(X.shape) for X in current]}"
        )
    yield current
    for layer, d_out in enumerate(hidden, start=1):
        W = layer_weights(seed, layer, d_out, current[0].shape[0], backend)
        scale = 1.0 / np.sqrt(d_out)
        nxt = []
        for X, sigma in zip(current, sigmas, strict=True):
            F = sigma(W @ X, xp=xp)
            F *= scale
            nxt.append(F)
        del W
        current = nxt
        yield current


def forward(
    X0: Any,
    widths: Sequence[int],
    activation: Activation | str,
    seed: SeedLike,
    backend: Backend,
) -> Iterator[Any]:
    """Yield X_0 (the input, on the backend), X_1, ..., X_L for hidden ``widths`` (d_1..d_L).

    X_ℓ = σ(W_ℓ X_{ℓ−1})/√d_ℓ; the CK is K_ℓ = X_ℓᵀX_ℓ (see :mod:`kernels.eigen`, which works
    from X_ℓ directly). d0 and n are read from ``X0`` (d0 × n, columns are samples).
    """
    for layer in forward_batch([X0], widths, activation, seed, backend):
        yield layer[0]
