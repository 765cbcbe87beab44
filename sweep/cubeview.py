"""Read a result cube by name: its study axes, fixed parameters, selections and signals.

Shared by :mod:`sweep.boundaries` (the computations) and :mod:`sweep.maps` (the figures), so both
answer a bad axis, value, signal or missing variable with the same message listing what is valid.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

__all__ = [
    "ALIASES",
    "NON_AXIS_DIMS",
    "apply_select",
    "fixed_params",
    "is_numeric",
    "map_axes",
    "match_index",
    "param",
    "require_vars",
    "resolve_axis",
    "select_signal",
    "study_axes",
    "varying_axes",
]

NON_AXIS_DIMS = ("replicate", "layer", "k", "signal", "bin")
ALIASES = {"depth": "layer", "theta": "spike", "width": "width_ratio", "eta": "lr"}


def study_axes(cube: xr.Dataset) -> list[str]:
    """Return the study's grid axes in study order (dims of ``status`` minus ``replicate``)."""
    ref = cube["status"].dims if "status" in cube else tuple(cube.dims)
    return [str(d) for d in ref if d not in NON_AXIS_DIMS]


def map_axes(cube: xr.Dataset) -> list[str]:
    """Names usable as map axes: the study axes plus ``layer`` (alias ``depth``)."""
    return study_axes(cube) + (["layer"] if "layer" in cube.dims else [])


def fixed_params(cube: xr.Dataset) -> dict[str, Any]:
    """Return the study's fixed parameters (the cube's ``fixed`` attribute, a JSON object)."""
    raw = cube.attrs.get("fixed", "{}")
    return json.loads(raw) if isinstance(raw, str) and raw else dict(raw or {})


def param(cube: xr.Dataset, name: str) -> Any:
    """Return a parameter: its coordinate when it is an axis, else the fixed scalar."""
    if name in cube.coords:
        return cube[name]
    fixed = fixed_params(cube)
    if name in fixed:
        return fixed[name]
    raise KeyError(name)


def resolve_axis(cube: xr.Dataset, name: str, role: str) -> str:
    """Map ``name`` (or an alias: depth, theta, width, eta) to a map axis, or raise listing them."""
    dim = ALIASES.get(name, name)
    valid = map_axes(cube)
    if dim in valid:
        return dim
    fixed = fixed_params(cube)
    hint = f" ({name} is fixed at {fixed[dim]!r} in this study)" if dim in fixed else ""
    raise ValueError(f"{role}={name!r} is not an axis of this cube{hint}; "
                     f"valid axes: {', '.join(valid)}")


def varying_axes(cube: xr.Dataset) -> list[str]:
    """Return the map axes with more than one value."""
    return [a for a in map_axes(cube) if cube.sizes[a] > 1]


def is_numeric(cube: xr.Dataset, dim: str) -> bool:
    """Whether coordinate ``dim`` is numeric (a threshold or boundary can be placed on it)."""
    return cube[dim].dtype.kind in "iuf"


MATCH_RTOL = 1e-3  # a typed grid value matches to 3-4 significant digits (as tables print them)


def match_index(coord: xr.DataArray, value: Any, key: str) -> int:
    """Index of ``value`` on ``coord``, or raise listing the grid.

    Integers match exactly. Floats: the value itself (to 1e-9), else the one grid value within
    :data:`MATCH_RTOL` of it, so 2.056 finds 2.0555…; never the nearest of values farther away,
    and never one of two close ones.
    """
    vals = coord.values
    if vals.dtype.kind in "iuf":
        try:
            v = float(value)
        except (TypeError, ValueError):
            v = np.nan
        for rtol in ((0.0,) if vals.dtype.kind in "iu" else (1e-9, MATCH_RTOL)):
            close = np.flatnonzero(np.isclose(vals, v, rtol=rtol, atol=1e-12)) if np.isfinite(
                v) else []
            if len(close) == 1:
                return int(close[0])
    else:
        hits = [i for i, c in enumerate(vals) if str(c) == str(value)]
        if hits:
            return hits[0]
    raise ValueError(f"select: {key}={value!r} is not on the grid; "
                     f"valid values: {', '.join(str(v) for v in vals)}")


def apply_select(cube: xr.Dataset, select: Mapping[str, Any]) -> tuple[xr.Dataset, Any]:
    """Apply ``select`` (axis -> value or list of values); return the cube and the signal."""
    signal = cube["signal"].values[0] if "signal" in cube.dims else 0
    valid = map_axes(cube) + (["signal"] if "signal" in cube.dims else [])
    for key, value in select.items():
        dim = ALIASES.get(key, key)
        if dim not in valid:
            raise ValueError(f"select: {key!r} is not an axis of this cube; "
                             f"valid names: {', '.join(valid)}")
        # a pinned layer stays a (length-1) dimension: every kind indexes layers by coordinate
        many = isinstance(value, (list, tuple)) or dim == "layer"
        values = value if isinstance(value, (list, tuple)) else [value]
        idx = [match_index(cube[dim], v, dim) for v in values]
        if dim == "signal":
            signal = cube["signal"].values[idx[0]]
        else:
            cube = cube.isel({dim: idx if many else idx[0]})
    return cube, signal


def select_signal(da: xr.DataArray, signal: Any) -> xr.DataArray:
    """Select one signal (when ``da`` has a signal dim), or raise listing the valid ones."""
    if "signal" not in da.dims:
        return da
    if signal not in list(da["signal"].values):
        raise ValueError(f"signal={signal!r} is not in the cube; valid signals: "
                         f"{', '.join(str(s) for s in da['signal'].values)}")
    return da.sel(signal=signal)


def require_vars(cube: xr.Dataset, names: list[str], what: str, hint: str = "") -> None:
    """Raise naming the variables ``what`` needs that the cube lacks, and listing those it has."""
    missing = [n for n in names if n not in cube]
    if missing:
        raise ValueError(f"{what} needs variable(s) {', '.join(missing)}{hint}; this cube has: "
                         f"{', '.join(sorted(str(v) for v in cube.data_vars))}")
