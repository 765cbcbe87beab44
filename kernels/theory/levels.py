"""Limiting spectra ("levels") of the CK layers, evaluated on the real axis right of the bulk.

A level is a probability law μ on [0, ∞) with what spike propagation needs (THEORY.md §3): its
right edge E, its Stieltjes transform m(x) = ∫ dμ(λ)/(λ − x) and m'(x) = ∫ dμ(λ)/(λ − x)² at
real x > E (vectorised; NaN at x ≤ E), its mean, its atom at 0, a density for histogram overlays
and weighted atoms (a discrete stand-in used by the density route).

- :class:`MarchenkoPasturLevel` — MP(γ0), level 0 for Gaussian-noise inputs (closed forms);
- :class:`IsotropicLevel` — δ_1 (classical BBP limits, THEORY.md §4);
- :class:`EmpiricalLevel` — plug-in law of measured eigenvalues (inputs that are not noise);
- :class:`DeformedLevel` — the Fan–Wang (2020) recursion: deformed MP law with ratio γ and
  population ν = law of b² x + 1 − b², x ~ (level below), computed through the map
  ψ(α) = α + γ α ∫ t/(α − t) dν(t) and tabulated so that depth costs linearly, not
  (iterations)^depth.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.optimize import brentq

from kernels.theory.density import bin_atoms, deformed_mp_density, edge_clustered_cells

__all__ = [
    "DeformedLevel",
    "EmpiricalLevel",
    "IsotropicLevel",
    "Level",
    "MarchenkoPasturLevel",
]

# Density route defaults: atoms standing for the level below, Im-part offset ε/edge, and the
# grid on which a level's own density is integrated into atoms.
_DENSITY_ATOMS = 400
_DENSITY_EPS = 1e-7
_ATOM_CELLS = 1200


def _as_float_array(x: np.ndarray | float) -> np.ndarray:
    return np.asarray(x, dtype=float)


def _density_atoms(level: Level, lo: float, k: int, cells: int) -> tuple[np.ndarray, ...]:
    """Atoms (≤ k) of ``level``'s continuous part on [lo, edge], plus its atom at 0."""
    x, width = edge_clustered_cells(lo, level.edge, cells)
    mass = level.density(x) * width
    q, w = bin_atoms(mass, mass * x, k)
    atom = level.atom_zero
    if atom > 0:
        return np.concatenate([[0.0], q]), np.concatenate([[atom], (1.0 - atom) * w])
    return q, w


class Level(ABC):
    """A limiting spectral law μ on [0, ∞), known through its real-axis Stieltjes transform.

    Attributes:
        edge: right edge E of the support.
        mean: ∫ λ dμ(λ).
        atom_zero: μ({0}).
    """

    edge: float
    mean: float
    atom_zero: float

    @abstractmethod
    def transform(self, x: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """(m(x), m'(x)) at real x > edge; NaN at x ≤ edge."""

    def m(self, x: np.ndarray | float) -> np.ndarray:
        """Evaluate the Stieltjes transform ∫ dμ(λ)/(λ − x) at x > edge."""
        return self.transform(x)[0]

    def dm(self, x: np.ndarray | float) -> np.ndarray:
        """Evaluate the derivative ∫ dμ(λ)/(λ − x)² of the Stieltjes transform at x > edge."""
        return self.transform(x)[1]

    @abstractmethod
    def density(self, x: np.ndarray | float) -> np.ndarray:
        """Density of the continuous part of μ at x (the atom at 0 is :attr:`atom_zero`)."""

    @abstractmethod
    def atoms(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(points, weights): a discrete law close to μ (≤ k atoms plus the atom at 0)."""


class MarchenkoPasturLevel(Level):
    """MP(γ): limit spectrum of XᵀX, X ∈ R^{d×n} with N(0, 1/d) entries, γ = n/d (THEORY.md §3).

    m(x) = (1 − γ − x + √((x−1−γ)² − 4γ))/(2γx) = −2/(x − 1 + γ + R), R = √((x−1−γ)² − 4γ)
    (the second form has no cancellation for large x); edges (1 ± √γ)²; atom 1 − 1/γ at 0 if
    γ > 1.
    """

    def __init__(self, gamma: float) -> None:
        if not np.isfinite(gamma) or gamma <= 0:
            raise ValueError(f"gamma: must be a positive finite ratio, got {gamma!r}")
        self.gamma = float(gamma)
        self.edge = (1.0 + np.sqrt(self.gamma)) ** 2
        self.left_edge = (1.0 - np.sqrt(self.gamma)) ** 2
        self.mean = 1.0
        self.atom_zero = max(0.0, 1.0 - 1.0 / self.gamma)

    def __repr__(self) -> str:
        return f"MarchenkoPasturLevel(gamma={self.gamma!r})"

    def transform(self, x: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Closed-form (m, m') right of the edge."""
        x = _as_float_array(x)
        g = self.gamma
        with np.errstate(invalid="ignore", divide="ignore"):
            xr = np.where(x > self.edge, x, np.nan)
            r = np.sqrt((xr - 1.0 - g) ** 2 - 4.0 * g)
            den = xr - 1.0 + g + r
            m = -2.0 / den
            dm = 2.0 * (1.0 + (xr - 1.0 - g) / r) / den**2
        return m, dm

    def density(self, x: np.ndarray | float) -> np.ndarray:
        """√((E₊ − x)(x − E₋))/(2πγx) on [E₋, E₊], 0 elsewhere."""
        x = _as_float_array(x)
        inside = (x > self.left_edge) & (x < self.edge) & (x > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            rho = np.sqrt((self.edge - x) * (x - self.left_edge)) / (2 * np.pi * self.gamma * x)
        return np.where(inside, rho, 0.0)

    def atoms(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Edge-refined bin atoms of the continuous part (:func:`bin_atoms`) plus the atom at 0."""
        return _density_atoms(self, self.left_edge, k, 4 * _ATOM_CELLS)


class IsotropicLevel(Level):
    """μ = δ_1 (isotropic input Gram): m(x) = 1/(1 − x), m'(x) = 1/(1 − x)², edge 1.

    On top of it the Fan–Wang map is classical BBP (THEORY.md §4); it has no continuous density.
    """

    edge = 1.0
    mean = 1.0
    atom_zero = 0.0

    def __repr__(self) -> str:
        return "IsotropicLevel()"

    def transform(self, x: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """(1/(1 − x), 1/(1 − x)²) for x > 1."""
        x = _as_float_array(x)
        with np.errstate(invalid="ignore", divide="ignore"):
            xr = np.where(x > 1.0, x, np.nan)
            return 1.0 / (1.0 - xr), 1.0 / (1.0 - xr) ** 2

    def density(self, x: np.ndarray | float) -> np.ndarray:
        """Zero: the law is a point mass at 1."""
        return np.zeros_like(_as_float_array(x))

    def atoms(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return the single atom at 1."""
        return np.array([1.0]), np.array([1.0])


class EmpiricalLevel(Level):
    """Plug-in law Σ w_i δ_{λ_i} of measured (bulk) eigenvalues: m(x) = Σ w_i/(λ_i − x).

    Pass the bulk only (spikes removed): the edge is the largest eigenvalue given. Used for inputs
    that are not Gaussian noise, and to run the Fan–Wang recursion on atoms.
    """

    def __init__(
        self,
        eigenvalues: np.ndarray,
        weights: np.ndarray | None = None,
        *,
        smoothing: float | None = None,
    ) -> None:
        lam = np.asarray(eigenvalues, dtype=float).ravel()
        if lam.size == 0 or not np.all(np.isfinite(lam)):
            raise ValueError("eigenvalues: need a non-empty array of finite values")
        if np.min(lam) < -1e-8 * max(1.0, float(np.max(np.abs(lam)))):
            raise ValueError("eigenvalues: a Gram spectrum is non-negative")
        lam = np.maximum(lam, 0.0)
        if weights is None:
            w = np.full(lam.size, 1.0 / lam.size)
        else:
            w = np.asarray(weights, dtype=float).ravel()
            if w.shape != lam.shape or np.any(w < 0) or not np.isclose(w.sum(), 1.0):
                raise ValueError("weights: must be non-negative, one per eigenvalue, summing to 1")
        self.points, self.weights = lam, w
        self.edge = float(np.max(lam))
        self.mean = float(lam @ w)
        self.atom_zero = float(w[lam <= 1e-12 * max(self.edge, 1.0)].sum())
        # Cauchy smoothing width for the overlay density: a few mean spacings of the bulk
        self.smoothing = smoothing if smoothing is not None else 4.0 * self.edge / lam.size

    def __repr__(self) -> str:
        return f"EmpiricalLevel(<{self.points.size} atoms>, edge={self.edge:.6g})"

    def transform(self, x: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Exact sums over the atoms, for x > edge."""
        x = _as_float_array(x)
        xr = np.where(x > self.edge, x, np.nan).ravel()
        inv = 1.0 / (self.points[None, :] - xr[:, None])
        return (inv @ self.weights).reshape(x.shape), ((inv * inv) @ self.weights).reshape(x.shape)

    def density(self, x: np.ndarray | float) -> np.ndarray:
        """Cauchy-smoothed density Im m(x + iη)/π of the non-zero atoms, η = :attr:`smoothing`."""
        x = _as_float_array(x)
        nz = self.points > 1e-12 * max(self.edge, 1.0)
        d = self.points[None, nz] - x.ravel()[:, None]
        rho = (self.smoothing / (d * d + self.smoothing**2)) @ self.weights[nz] / np.pi
        return rho.reshape(x.shape)

    def atoms(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return the atoms themselves."""
        return self.points, self.weights


class DeformedLevel(Level):
    """Fan–Wang level: deformed MP law with ratio γ and population ν = law of b² x + 1 − b².

    x ~ ``lower`` (the previous layer's law). THEORY.md §3: with s(α) = ∫ dν(t)/(t − α),

        ψ(α)  = α + γ α ∫ t/(α − t) dν = α(1 − γ) − γ α² s(α),
        ψ'(α) = 1 − γ ∫ t²/(α − t)² dν = 1 − γ (1 + 2α s(α) + α² s'(α)),

    for α > T = b² E_lower + 1 − b², where s(α) = m_lower(w)/b², s'(α) = m'_lower(w)/b⁴ at
    w = (α − 1 + b²)/b² (ν = δ_1 when b = 0). ψ' has one zero α_c on (T, ∞); the edge is
    E = ψ(α_c). For x > E the companion transform is m̃(x) = −1/α with ψ(α) = x, α > α_c; then
    m = (m̃ + (1 − γ)/x)/γ and m' = (1/(α² ψ'(α)) − (1 − γ)/x²)/γ.

    The inverse α(x) is tabulated once as a cubic spline of √(x − E) (smooth at the edge) and
    polished by one Newton step per query, so one evaluation calls the level below once.
    """

    def __init__(self, lower: Level, b: float, gamma: float, *, nodes: int = 1500) -> None:
        if not np.isfinite(gamma) or gamma <= 0:
            raise ValueError(f"gamma: must be a positive finite ratio, got {gamma!r}")
        if not np.isfinite(b):
            raise ValueError(f"b: must be finite, got {b!r}")
        self.lower = lower
        self.b = float(b)
        self.b2 = self.b**2
        if self.b2 > 1.0 + 1e-12:
            raise ValueError(f"b: |b| <= 1 for a normalised activation, got {b!r}")
        self.b2 = min(self.b2, 1.0)
        self.gamma = float(gamma)
        self.support_right = self.b2 * lower.edge + 1.0 - self.b2
        self.population_mean = self.b2 * lower.mean + 1.0 - self.b2
        self.mean = self.population_mean  # trace is preserved: E_μ λ = E_ν t
        # t = b² x + 1 − b² puts an atom at (numerically) 0 only for a linear activation
        pop_zero = lower.atom_zero if 1.0 - self.b2 < 1e-12 else 0.0
        self.atom_zero = max(0.0, 1.0 - 1.0 / self.gamma, pop_zero)
        self.alpha_c = self._critical_alpha()
        self.edge = float(self.psi(self.alpha_c)[0])
        self._build_table(nodes)
        self._atoms: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __repr__(self) -> str:
        return f"DeformedLevel({self.lower!r}, b={self.b!r}, gamma={self.gamma!r})"

    # -- the map ψ -------------------------------------------------------------------------
    def population_transform(self, alpha: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """(s(α), s'(α)) with s(α) = ∫ dν(t)/(t − α), from the level below at w = (α−1+b²)/b²."""
        alpha = _as_float_array(alpha)
        if self.b2 == 0.0:
            with np.errstate(invalid="ignore", divide="ignore"):
                a = np.where(alpha > 1.0, alpha, np.nan)
                return 1.0 / (1.0 - a), 1.0 / (1.0 - a) ** 2
        m, dm = self.lower.transform((alpha - 1.0 + self.b2) / self.b2)
        return m / self.b2, dm / self.b2**2

    def psi(self, alpha: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """(ψ(α), ψ'(α)) for α > T (NaN otherwise)."""
        alpha = _as_float_array(alpha)
        s, ds = self.population_transform(alpha)
        g = self.gamma
        psi = alpha * (1.0 - g) - g * alpha**2 * s
        return psi, 1.0 - g * (1.0 + 2.0 * alpha * s + alpha**2 * ds)

    def _critical_alpha(self) -> float:
        """Find the zero α_c of ψ' on (T, ∞); ψ' increases from −∞ at T to 1 (bracket + brentq)."""
        t_right = self.support_right

        def dpsi(a: float) -> float:
            return float(self.psi(a)[1])

        gap = max(t_right, 1.0)
        for _ in range(200):
            if dpsi(t_right + gap) > 0:
                break
            gap *= 2.0
        hi = gap
        for _ in range(200):
            gap /= 2.0
            if gap < 1e-15 * t_right:
                # ψ' stays ≥ 0 down to T: no square-root edge (degenerate population); E = ψ(T+)
                return t_right * (1.0 + 1e-15)
            if dpsi(t_right + gap) < 0:
                break
            hi = gap
        return brentq(dpsi, t_right + gap, t_right + hi, xtol=1e-15 * t_right, rtol=1e-15)

    # -- tabulated inverse of ψ -------------------------------------------------------------
    def _build_table(self, nodes: int) -> None:
        """Tabulate α against s = √(x − E) on α ∈ [α_c, α_c + 10⁶ max(α_c, 1)].

        Nodes α_c + c·(e^u − 1), u uniform, c = α_c − T: uniform near the edge on the scale that
        sets the curvature, geometric far out. The spline holds g(s) = α − s² (bounded), and a
        second spline holds ψ'(α(s)), whose s-derivative gives ψ'' for the m' correction.
        """
        scale = self.alpha_c - self.support_right
        span = 1e6 * max(self.alpha_c, 1.0)
        u = np.linspace(0.0, np.log1p(span / scale), nodes)
        alpha = self.alpha_c + scale * np.expm1(u)
        psi, dpsi = self.psi(alpha[1:])
        s = np.concatenate([[0.0], np.sqrt(np.maximum(psi - self.edge, 0.0))])
        keep = np.concatenate([[True], np.diff(s) > 0])  # guard against round-off ties
        s, alpha, dpsi = s[keep], alpha[keep], np.concatenate([[0.0], dpsi])[keep]
        self._s_max = float(s[-1])
        self._g = CubicSpline(s, alpha - s**2)
        self._dg = self._g.derivative()
        self._dpsi = CubicSpline(s, dpsi)
        self._ddpsi = self._dpsi.derivative()

    def _solve(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """α(x) with ψ(α) = x, α > α_c, and ψ'(α), for x > E (NaN elsewhere)."""
        x = _as_float_array(x)
        alpha = np.full(x.shape, np.nan)
        dpsi = np.full(x.shape, np.nan)
        ok = x > self.edge
        if not np.any(ok):
            return alpha, dpsi
        xo = x[ok]
        s = np.sqrt(xo - self.edge)
        inside = s <= self._s_max
        sc = np.minimum(s, self._s_max)
        # beyond the table ψ(α) = α + γ E_ν t + O(1/α): one Newton step then leaves O(α⁻⁵)
        a0 = np.where(inside, self._g(sc) + sc**2, xo - self.gamma * self.population_mean)
        a0 = np.maximum(a0, self.alpha_c)
        p0, d0 = self.psi(a0)
        with np.errstate(invalid="ignore", divide="ignore"):
            step = (p0 - xo) / d0
        # Skip the step where the residual is already at round-off (near the edge ψ' → 0 and a
        # step would only amplify it) or where it is not small against the distance to α_c.
        resolved = np.abs(p0 - xo) > 4.0 * np.finfo(float).eps * xo
        good = resolved & (d0 > 0) & (np.abs(step) < 0.5 * (a0 - self.alpha_c))
        a1 = np.where(good, a0 - step, a0)
        ddpsi = np.where(inside, self._ddpsi(sc) / (self._dg(sc) + 2.0 * sc), 0.0)
        d1 = np.where(good | ~resolved, d0 + ddpsi * (a1 - a0), self._dpsi(sc))
        alpha[ok], dpsi[ok] = a1, d1
        return alpha, dpsi

    def inverse(self, x: np.ndarray | float) -> np.ndarray:
        """α = ψ⁻¹(x) on the branch α > α_c (the population spike giving a bulk outlier at x)."""
        return self._solve(_as_float_array(x))[0]

    def transform(self, x: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """(m(x), m'(x)) for x > E from m̃ = −1/α and ψ'(α) (THEORY.md §3)."""
        x = _as_float_array(x)
        alpha, dpsi = self._solve(x)
        g = self.gamma
        m = (-1.0 / alpha + (1.0 - g) / x) / g
        with np.errstate(divide="ignore"):
            dm = (1.0 / (alpha**2 * dpsi) - (1.0 - g) / x**2) / g
        return m, dm

    # -- density route ----------------------------------------------------------------------
    def population_atoms(self, k: int = _DENSITY_ATOMS) -> tuple[np.ndarray, np.ndarray]:
        """ν as weighted atoms: atoms of the level below mapped by t = b² x + 1 − b²."""
        q, w = self.lower.atoms(k)
        return self.b2 * q + 1.0 - self.b2, w

    def density(
        self, x: np.ndarray | float, *, atoms: int = _DENSITY_ATOMS, eps: float | None = None
    ) -> np.ndarray:
        """Continuous part of the density, by the Silverstein equation on ν's atoms (density.py)."""
        t, w = self.population_atoms(atoms)
        eps = _DENSITY_EPS * self.edge if eps is None else eps
        return deformed_mp_density(_as_float_array(x), t, w, self.gamma, self.atom_zero, eps)

    def atoms(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Edge-refined bin atoms of this level's density on [0, E], plus the atom at 0 (cached)."""
        if k not in self._atoms:
            self._atoms[k] = _density_atoms(self, 0.0, k, _ATOM_CELLS)
        return self._atoms[k]
