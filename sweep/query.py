"""Selection over a cube and tidy tables (one row per coordinate combination).

A study parameter is either a coordinate (it was an axis) or a fixed scalar recorded in
``cube.attrs["fixed"]``; :func:`param` hides the difference.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import xarray as xr

from sweep.cubeview import match_index

__all__ = ["param", "parse_selection", "select", "table"]


def param(cube: xr.Dataset, name: str) -> Any:
    """The coordinate ``name`` if it is a dimension, else its fixed value from the study."""
    if name in cube.coords:
        return cube[name]
    fixed = json.loads(cube.attrs.get("fixed", "{}"))
    if name in fixed:
        return fixed[name]
    raise KeyError(f"{name!r} is neither a coordinate ({sorted(map(str, cube.coords))}) nor a fixed "
                   f"parameter ({sorted(fixed)})")


def _coerce(cube: xr.Dataset, dim: str, text: str) -> Any:
    coord = cube[dim].values
    if coord.dtype.kind in "iu":
        return int(text)
    if coord.dtype.kind == "f":
        return float(text)
    return text


def parse_selection(cube: xr.Dataset, items: list[str]) -> dict[str, Any]:
    """``["spike=2.0", "activation=tanh"]`` -> ``{"spike": 2.0, "activation": "tanh"}`` (checked)."""
    sel: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--sel {item!r}: use name=value")
        if key not in cube.dims:
            raise ValueError(f"--sel {key!r}: not a dimension of this cube; valid: "
                             f"{', '.join(map(str, cube.dims))}")
        try:
            sel[key] = _coerce(cube, key, value)
        except ValueError:
            raise ValueError(f"--sel {key}={value!r}: not a valid {cube[key].dtype} value") from None
    return sel


def select(cube: xr.Dataset, sel: dict[str, Any]) -> xr.Dataset:
    """``cube.sel`` by grid value; a value not on the grid raises, listing the grid.

    Numbers match to :data:`~sweep.cubeview.MATCH_RTOL`, so a value copied from a printed table
    works.
    """
    return cube.isel({k: match_index(cube[k], v, k) for k, v in sel.items()})


def table(cube: xr.Dataset, variables: list[str], sel: dict[str, Any] | None = None) -> pd.DataFrame:
    """Tidy table of ``variables`` (one row per remaining coordinate combination)."""
    bad = [v for v in variables if v not in cube.data_vars]
    if bad:
        raise ValueError(f"--var {bad[0]!r}: not in the cube; variables are {sorted(map(str, cube.data_vars))}")
    sub = select(cube, sel or {})[variables]
    return sub.to_dataframe().reset_index()
