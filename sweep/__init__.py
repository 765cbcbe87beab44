"""Orchestration of spikesweep: study specs, grid, Ray execution, the zarr cube, query and maps.

The notebook-facing surface: ``load_spec`` / ``parse_spec`` to validate a study file,
``run_study`` to run or resume it, ``open_cube`` to read a cube. Ray, zarr and matplotlib are
imported by the modules that need them.
"""

from sweep.spec import Spec, SpecError, load_spec, parse_spec

__all__ = ["Spec", "SpecError", "load_spec", "open_cube", "parse_spec", "run_study"]


def run_study(*args, **kwargs):  # noqa: ANN002, ANN003 - thin lazy re-export
    """Run or resume a study; see :func:`sweep.runner.run_study`."""
    from sweep.runner import run_study as _run_study

    return _run_study(*args, **kwargs)


def open_cube(path):  # noqa: ANN001
    """Open a cube with xarray; see :func:`sweep.store.open_cube`."""
    from sweep.store import open_cube as _open_cube

    return _open_cube(path)
