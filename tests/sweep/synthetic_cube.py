"""Synthetic result cubes that follow the cube contract (notes: cube_schema) with known truths.

The maps are tested against what was put in:

- a known critical strength θ_c(point, layer) (``threshold``): replicate r has its own finite-n
  threshold θ_c + smear · z_r (z_r ~ N(0, 1), common along the strength axis, like common random
  numbers in the engine), so the replicate-mean detection probability crosses 1/2 near θ_c,
  smeared over ``smear`` (THEORY §6: the transition is smeared over O(n^-1/3));
- a known relative bias of the measured spike location (``spike_bias``) and an absolute bias of
  the alignment (``align_bias``), with antithetic replicate noise (±) so that the replicate mean
  carries exactly the bias: the validity boundary err = tol is then known in closed form.

The theory values are simple closed forms of the coordinates (they need only be positive and
consistent: survives ⇔ strength > θ_c, spike NaN and alignment 0 where absorbed).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from kernels.activations import get_activation

Truth = Callable[[Mapping[str, Any]], Any]


def _default_threshold(p: Mapping[str, Any]) -> Any:
    return 0.8 + 0.3 * p["layer"] / np.sqrt(p.get("width_ratio", 1.0))


def synthetic_cube(axes: Mapping[str, Sequence[Any]], *, fixed: Mapping[str, Any] | None = None,
                   layers: Sequence[int] = (0, 1, 2), replicates: int = 8, top_k: int = 3,
                   signals: int = 1, strength: str = "spike", threshold: Truth | None = None,
                   smear: float = 0.1, spike_bias: Truth | None = None,
                   align_bias: Truth | None = None, hist_bins: int = 0,
                   experiment: str = "deep-ck", seed: int = 0,
                   not_run: Sequence[Mapping[str, int]] = ()) -> xr.Dataset:
    """A cube over ``axes`` (+ replicate, layer, k, signal[, bin]) with known truths.

    Truth callables get ``p``: the coordinates as broadcastable DataArrays (axes, ``layer``) and
    the fixed scalars. ``not_run``: isel dicts over study axes/replicate marked pending (NaN, -1).
    """
    fixed = dict(fixed or {})
    coords: dict[str, Any] = {k: list(v) for k, v in axes.items()}
    axis_names = list(axes)
    layer = xr.DataArray(list(layers), dims="layer", name="layer")
    p: dict[str, Any] = {**fixed, **{k: xr.DataArray(v, dims=k, coords={k: v})
                                     for k, v in coords.items()}, "layer": layer}
    rep = np.arange(replicates)
    sig = np.arange(signals)
    base = xr.zeros_like(xr.broadcast(*[p[a] for a in axis_names], layer)[0], dtype=float)
    base = base.transpose(*axis_names, "layer")
    s = p[strength] + base

    act = p.get("activation", "tanh")
    act_valid = xr.apply_ufunc(lambda a: int(get_activation(str(a)).theory_valid),
                               act, vectorize=True) if isinstance(act, xr.DataArray) else int(
        get_activation(str(act)).theory_valid)
    theory_valid = (xr.zeros_like(base.isel(layer=0, drop=True), dtype=np.int8) + act_valid)
    theta_c = (threshold or _default_threshold)(p) + base
    survives = (s > theta_c).astype(np.int8)

    gamma0 = 1.0 / p.get("input_ratio", 1.0)
    theory_edge = (1 + np.sqrt(gamma0)) ** 2 * (1 + 0.3 * layer) + base
    theory_spike = ((1 + s**2) * (gamma0 + s**2) / s**2 * (1 + 0.2 * layer)).where(survives == 1)
    decay = 1 / (1 + 0.3 / p.get("width_ratio", 1.0))  # wider layers lose less alignment
    theory_align = ((1 - 1 / s**2).clip(0.05, 1) * decay**layer).where(survives == 1, 0.0)

    rng = np.random.default_rng(seed)
    non_strength = [a for a in axis_names if a != strength]
    z_shape = [len(coords[a]) for a in non_strength] + [replicates, len(layers)]
    z = xr.DataArray(rng.standard_normal(z_shape), dims=(*non_strength, "replicate", "layer"),
                     coords={**{a: coords[a] for a in non_strength}, "replicate": rep,
                             "layer": list(layers)})
    detected = (s > theta_c + smear * z).astype(np.int8)
    sign = xr.DataArray(np.where(rep % 2 == 0, 1.0, -1.0), dims="replicate",
                        coords={"replicate": rep})
    if replicates % 2:
        sign[-1] = 0.0  # keeps the replicate mean of the antithetic noise exactly zero
    sb = (spike_bias(p) if spike_bias else 0.0) + base
    ab = (align_bias(p) if align_bias else 0.0) + base
    edge_emp = theory_edge * (1 + 0.002 * sign)
    spike_emp = xr.where(survives == 1, theory_spike * (1 + sb) * (1 + 0.01 * sign),
                         edge_emp * 0.999)
    align = xr.where(survives == 1, theory_align + ab + 0.005 * sign, 0.02 + 0.0 * sign)

    def per_signal(da: xr.DataArray) -> xr.DataArray:
        return da.expand_dims(signal=sig).transpose(*[d for d in da.dims if d != "layer"],
                                                     "layer", "signal")

    kk = xr.DataArray(np.arange(top_k), dims="k", coords={"k": np.arange(top_k)})
    eigval = xr.where(kk == 0, xr.where(detected == 1, spike_emp, edge_emp * 0.999),
                      edge_emp * (1 - 0.01 * kk))
    overlap = xr.where(kk == 0, align, 0.001).expand_dims(signal=sig)

    ds = xr.Dataset(coords={**coords, "replicate": rep, "layer": list(layers),
                            "k": np.arange(top_k), "signal": sig})
    order_r = (*axis_names, "replicate", "layer")
    ds["eigval"] = eigval.transpose(*order_r, "k")
    ds["edge_emp"] = edge_emp.transpose(*order_r)
    ds["n_outliers"] = detected.transpose(*order_r).astype(np.int16)
    ds["overlap"] = overlap.transpose(*order_r, "k", "signal")
    ds["align"] = per_signal(align.transpose(*order_r))
    ds["spike_emp"] = per_signal(spike_emp.transpose(*order_r))
    ds["detected"] = per_signal(detected.transpose(*order_r)).astype(np.int8)
    ds["theory_edge"] = theory_edge
    ds["theory_spike"] = per_signal(theory_spike)
    ds["theory_align"] = per_signal(theory_align)
    ds["theory_survives"] = per_signal(survives).astype(np.int8)
    ds["theory_threshold"] = theta_c.where(theory_valid == 1)
    ds["theory_valid"] = theory_valid.astype(np.int8)
    if experiment == "one-step":
        ds["theta1_realised"] = s.isel(layer=0, drop=True) * (1 + 0 * sign)
        ds["loss_before"] = xr.ones_like(ds["theta1_realised"])
        ds["loss_after"] = 0.5 * ds["loss_before"]
        ds["theory_spike_realised"] = ds["theory_spike"] * 0.95
        ds["theory_align_realised"] = ds["theory_align"] * 0.98
    if hist_bins:
        _add_hist(ds, hist_bins, gamma0)
    status = xr.ones_like(ds["edge_emp"].isel(layer=0, drop=True), dtype=np.int8)
    ds["status"] = status
    ds["attempts"] = status.astype(np.int16)
    ds["wall_s"] = status * 0.01
    ds["error"] = xr.full_like(status, "", dtype=object)
    for where in not_run:
        _mark_pending(ds, where)
    canonical = (*axis_names, "replicate", "layer", "k", "signal", "bin")
    for name in ds.data_vars:
        ds[name] = ds[name].transpose(*[d for d in canonical if d in ds[name].dims])
        ds[name].attrs.setdefault("long_name", name.replace("_", " "))
    ds.attrs.update(study="synthetic", experiment=experiment, spec_hash="0" * 16,
                    study_toml="", fixed=json.dumps(fixed), version="test", git_commit="",
                    created="1970-01-01T00:00:00Z")
    return ds


def _add_hist(ds: xr.Dataset, bins: int, gamma0: Any) -> None:
    """Marchenko–Pastur-shaped bulk densities, stretched to each layer's edge (bin coords)."""
    edge = ds["theory_edge"]
    top = float(max(ds["theory_spike"].max(skipna=True).fillna(0), edge.max())) * 1.15
    lo = np.linspace(0.0, top, bins + 1)
    centers = xr.DataArray((lo[1:] + lo[:-1]) / 2, dims="bin")
    left = edge * (1 - np.sqrt(gamma0)) ** 2 / (1 + np.sqrt(gamma0)) ** 2
    shape = np.sqrt(((edge - centers) * (centers - left)).clip(0))
    dens = shape / (shape.sum("bin") * (lo[1] - lo[0]))
    ds["hist"] = (dens + 0.0 * ds["edge_emp"]).transpose(*ds["edge_emp"].dims, "bin")
    n_layer = ds.sizes["layer"]
    ds.coords["bin_lo"] = (("layer", "bin"), np.tile(lo[:-1], (n_layer, 1)))
    ds.coords["bin_hi"] = (("layer", "bin"), np.tile(lo[1:], (n_layer, 1)))


def _mark_pending(ds: xr.Dataset, where: Mapping[str, int]) -> None:
    for name in ds.data_vars:
        da = ds[name]
        if "replicate" not in da.dims or not set(where) <= set(da.dims):
            continue
        region = da[dict(where)]
        if name == "status":
            fill: Any = 0
        elif da.dtype.kind in "iu":
            fill = -1
        elif da.dtype.kind == "f":
            fill = np.nan
        else:
            continue
        da[dict(where)] = xr.full_like(region, fill)
