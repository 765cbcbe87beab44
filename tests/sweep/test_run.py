"""End to end: the CLI runs a study on in-process Ray; worker count does not change the cube."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from kernels.theory import critical_window
from sweep.maps import make_map
from sweep.runner import run_study
from sweep.spec import parse_spec
from tests.sweep.conftest import assert_cubes_equal

STUDY = """
[study]
name = "e2e"
experiment = "deep-ck"
seed = 3
replicates = 2
[fixed]
n = 120
input_ratio = 2.0
depth = 2
[axes]
spike = [0.5, 2.5]
width_ratio = [1.0, 2.0]
activation = ["tanh", "sin"]
[measure]
top_k = 4
"""

def _cli(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    return subprocess.run([sys.executable, "-m", "sweep.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.fixture()
def shared_ray():
    """One in-process Ray for several runs (run_study leaves a Ray it did not start running)."""
    from sweep.execute import init_ray

    init_ray(None, num_cpus=2)
    import ray

    yield
    ray.shutdown()


def test_worker_count_and_executor_do_not_change_the_cube(tmp_path: Path, shared_ray) -> None:
    spec = parse_spec(STUDY)
    one = run_study(spec, tmp_path / "one.zarr", workers=1, progress=False)
    two = run_study(spec, tmp_path / "two.zarr", workers=2, progress=False)
    local = run_study(spec, tmp_path / "local.zarr", executor="local", progress=False)
    assert one.ok and two.ok and local.ok
    assert two.summary.workers == 2 and one.summary.done == two.summary.done == 16
    cubes = [xr.open_zarr(p) for p in (one.store, two.store, local.store)]
    assert_cubes_equal(cubes[0], cubes[1])
    assert_cubes_equal(cubes[0], cubes[2])
    assert (cubes[0]["status"].values == 1).all()
    # a rerun is a resume with nothing left to do
    again = run_study(spec, tmp_path / "two.zarr", progress=False)
    assert again.skipped == again.total_blocks == 16 and again.summary.done == 0
    # a phase map from the stored cube (object-dtype string coordinates, JSON fixed params):
    # the window is the theory's at this point, and the lag is measured in it
    phase = make_map(cubes[0], "phase", tmp_path / "maps", x="spike", y="width_ratio")
    window = phase.data["theory_window"].sel(activation="tanh")
    widths = cubes[0]["width_ratio"].values
    for w in widths:
        np.testing.assert_allclose(window.sel(width_ratio=w),
                                   critical_window("tanh", 2.0, [float(w)] * 2, 120), rtol=1e-12)


def test_cli_run_status_query_theory(tmp_path: Path) -> None:
    (tmp_path / "study.toml").write_text(STUDY.replace("[0.5, 2.5]", "[2.5]").replace(
        'activation = ["tanh", "sin"]', 'activation = ["tanh"]'))
    run = _cli("run", "study.toml", "--no-progress", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    cube_path = tmp_path / "results" / "e2e.zarr"
    assert f"cube: {cube_path}" in run.stdout
    status = _cli("status", str(cube_path), cwd=tmp_path)
    assert status.returncode == 0 and "4 done, 0 failed, 0 pending" in status.stdout
    query = _cli("query", "study.toml", "--var", "spike_emp", "--var", "theory_spike", "--sel",
                 "layer=0", "--format", "json", cwd=tmp_path)
    assert query.returncode == 0, query.stderr
    rows = json.loads(query.stdout)
    assert len(rows) == 2 * 2  # width_ratio x replicate (spike, activation, signal single)
    # K_0 spike (1 + t^2)(g0 + t^2) / t^2 with t = 2.5, g0 = 0.5 (THEORY §1)
    expect = (1 + 2.5**2) * (0.5 + 2.5**2) / 2.5**2
    assert all(r["theory_spike"] == pytest.approx(expect, rel=1e-9) for r in rows)
    bad = _cli("query", str(cube_path), "--var", "nope", cwd=tmp_path)
    assert bad.returncode == 2 and "variables are" in bad.stderr


def test_cli_theory_json_matches_acceptance_table(tmp_path: Path) -> None:
    out = _cli("theory", "--activation", "tanh", "--input-ratio", "2", "--width-ratio", "2",
               "--depth", "2", "--spike", "2.0", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["layer"] for r in rows] == [0, 1, 2]
    expect = [(2.914214, 5.625000, 0.861111), (4.262059, 6.010385, 0.713160),
              (5.435543, 6.461356, 0.557571)]
    for r, (edge, loc, align) in zip(rows, expect, strict=True):
        assert r["edge"] == pytest.approx(edge, rel=1e-6)
        assert r["location"] == pytest.approx(loc, rel=1e-6)
        assert r["alignment"] == pytest.approx(align, rel=1e-5)
        assert r["survives"] is True and r["valid"] is True and r["spike_strength"] == 2.0
    absorbed = json.loads(_cli("theory", "--spike", "1.0", "--input-ratio", "2", "--width-ratio",
                               "2", "--depth", "1", "--json", cwd=tmp_path).stdout)
    assert absorbed[0]["location"] == pytest.approx(3.0) and absorbed[1]["location"] is None
    bad = _cli("theory", "--activation", "swish", cwd=tmp_path)
    assert bad.returncode == 2 and "swish" in bad.stderr


def test_embedded_ray_is_loopback_even_if_ray_was_imported_first(tmp_path: Path) -> None:
    code = ("import ray\nfrom sweep.execute import init_ray\ninit_ray(None, num_cpus=1)\n"
            "print('ip', ray.util.get_node_ip_address())\nray.shutdown()\n")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         timeout=180, env=env)
    assert out.returncode == 0, out.stderr
    assert "ip 127.0.0.1" in out.stdout


def test_cli_bench_passes_options_to_the_script(tmp_path: Path) -> None:
    out = _cli("bench", "layers", "--detector", "--sizes", "100", "--seeds", "1", "--spikes", "0",
               cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "n = 100, 1 seeds per cell" in out.stdout and "false-positive rate" in out.stdout
