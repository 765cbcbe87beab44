"""Finite-size scaling of empirical thresholds: where the transition sits at n → ∞.

At finite n the BBP-type transition is smeared over a window of order n^{-1/3} (THEORY §6;
Baik, Ben Arous & Péché 2005), and any detector held to a small false-positive rate reaches
P(detect) = 1/2 a fixed number of windows above the limit θ*, so the P = 1/2 threshold of
:func:`sweep.boundaries.empirical_threshold` behaves like

    θ_emp(n) = θ_∞ + A · n^{-1/3}  (+ O(n^{-2/3})).

:func:`extrapolate_threshold` fits that line in x = n^{-1/3} by weighted least squares (weights
1/threshold_err²) and reports the intercept θ_∞, the empirical estimate of the limit threshold
that uses no theory value (only the exponent 1/3, which is universal for this transition).
Its standard error comes from the fit's covariance, inflated by √(χ²/dof) when the points
scatter more than their errors say (the Birge ratio; never deflated). ``theory_z`` =
(θ_∞ − θ*)/SE says whether the limit agrees with the theory's critical θ*.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

__all__ = ["MIN_POINTS", "extrapolate_threshold"]

MIN_POINTS = 3  # sizes needed for a fit with one degree of freedom left to check the model


def _fit(x: np.ndarray, y: np.ndarray, err: np.ndarray) -> tuple[float, float, float, float]:
    """Weighted least squares y = c + A x: (c, SE(c), A, χ²/dof)."""
    w = 1.0 / err**2
    design = np.stack([np.ones_like(x), x], axis=1)
    cov = np.linalg.inv(design.T @ (w[:, None] * design))
    c, a = cov @ (design.T @ (w * y))
    resid = y - (c + a * x)
    dof = x.size - 2
    chi2_dof = float(np.sum(w * resid**2) / dof) if dof > 0 else np.nan
    inflate = max(1.0, chi2_dof) if np.isfinite(chi2_dof) else 1.0
    return float(c), float(np.sqrt(cov[0, 0] * inflate)), float(a), chi2_dof


def extrapolate_threshold(th: xr.Dataset, along: str = "n", exponent: float = 1.0 / 3.0
                          ) -> xr.Dataset:
    """Fit θ_emp = θ_∞ + A·along^{-exponent} per setting of the other dims (module docstring).

    ``th``: an :func:`~sweep.boundaries.empirical_threshold` result with ``along`` (a sample
    size axis) among its dims. Only thresholds found on the grid (status 0) with a positive
    error enter; a setting with fewer than :data:`MIN_POINTS` of them gets NaN and
    ``fit_points`` says how many there were.
    """
    if along not in th.dims:
        raise ValueError(f"along={along!r} is not a dimension of the thresholds; "
                         f"valid: {', '.join(str(d) for d in th.dims)}")
    if not exponent > 0:
        raise ValueError(f"exponent must be positive, got {exponent}")
    sizes = th[along].values.astype(float)
    if np.any(sizes <= 0):
        raise ValueError(f"{along} must be positive to scale thresholds with it")
    others = [str(d) for d in th["threshold"].dims if d != along]
    shape = [th.sizes[d] for d in others]

    def flat(name: str) -> np.ndarray:
        return th[name].transpose(*others, along).values.reshape(-1, sizes.size)

    value, err, status = flat("threshold"), flat("threshold_err"), flat("threshold_status")
    x = sizes ** (-exponent)
    out = np.full((value.shape[0], 4), np.nan)
    points = np.zeros(value.shape[0], dtype=np.int16)
    for s in range(value.shape[0]):
        ok = (status[s] == 0) & np.isfinite(value[s]) & np.isfinite(err[s]) & (err[s] > 0)
        points[s] = ok.sum()
        if points[s] >= MIN_POINTS:
            out[s] = _fit(x[ok], value[s][ok], err[s][ok])
    coords: dict[str, Any] = {d: th[d] for d in others}
    units = str(th["threshold"].attrs.get("units", ""))

    def mk(v: np.ndarray, **attrs: Any) -> xr.DataArray:
        return xr.DataArray(v.reshape(shape), coords=coords, dims=others, attrs=attrs)

    label = f"{along}^(-{exponent:.4g})"
    ds = xr.Dataset({
        "threshold_inf": mk(out[:, 0], units=units,
                            long_name=f"threshold extrapolated to {along} -> inf (fit in {label})"),
        "threshold_inf_se": mk(out[:, 1], units=units,
                               long_name="standard error of the extrapolated threshold"),
        "scaling_amplitude": mk(out[:, 2], units=units, exponent=exponent,
                                long_name=f"A in threshold = threshold_inf + A {label}"),
        "fit_chi2_dof": mk(out[:, 3], units="1", long_name="chi^2 per degree of freedom of the fit"),
        "fit_points": mk(points, units="1", long_name=f"{along} values in the fit"),
    })
    if "theory_threshold" in th:
        theory = th["theory_threshold"]
        theory = theory.max(along, skipna=True) if along in theory.dims else theory
        ds["theory_z"] = (ds["threshold_inf"] - theory) / ds["threshold_inf_se"]
        ds["theory_z"].attrs = {"long_name": "(threshold_inf - theory threshold) / SE", "units": "1"}
    ds.attrs.update(along=along, exponent=exponent)
    return ds
