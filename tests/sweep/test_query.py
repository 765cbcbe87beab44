"""Query selections: a value matches a grid point or raises; nothing is guessed."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from sweep.query import parse_selection, table
from tests.sweep.synthetic_cube import synthetic_cube

SPIKES = list(np.linspace(0.5, 2.5, 10))  # 0.7222..., not typeable exactly


def _cube():
    return synthetic_cube({"n": [150, 200], "spike": SPIKES}, replicates=2)


def test_a_value_typed_from_a_table_finds_its_grid_point() -> None:
    cube = _cube()
    rows = table(cube, ["eigval"], parse_selection(cube, ["spike=0.7222", "n=200", "layer=1"]))
    assert set(rows["spike"]) == {SPIKES[1]} and set(rows["n"]) == {200}
    assert len(rows) == 2 * 3  # replicate x k


@pytest.mark.parametrize(("item", "message"), [
    ("spike=99", "spike=99.0 is not on the grid; valid values: 0.5, 0.7222"),
    ("spike=0.75", "spike=0.75 is not on the grid"),  # between grid points: no nearest guess
    ("n=250", "n=250 is not on the grid; valid values: 150, 200"),
    ("n=200.1", "--sel n='200.1': not a valid int64 value"),  # integers match exactly
])
def test_a_value_off_the_grid_is_refused_listing_the_grid(item: str, message: str) -> None:
    cube = _cube()
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        table(cube, ["eigval"], parse_selection(cube, [item]))


def test_an_exact_value_wins_over_close_neighbours() -> None:
    from sweep.cubeview import match_index

    grid = xr.DataArray([1.0, 1.0004, 2.0], dims="spike")  # closer than MATCH_RTOL
    assert match_index(grid, 1.0004, "spike") == 1 and match_index(grid, 2.0005, "spike") == 2
    with pytest.raises(ValueError, match="not on the grid"):
        match_index(grid, 1.0002, "spike")  # two candidates: refuse rather than guess


def test_a_bad_name_lists_the_dimensions() -> None:
    with pytest.raises(ValueError, match="--sel 'nn': not a dimension of this cube; valid: n, spike"):
        parse_selection(_cube(), ["nn=200"])
