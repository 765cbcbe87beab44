"""Shared fixtures for the Ray-based sweep tests.

- ``tiny_study``: a 6-block study that runs in about a second per block on one core;
- ``assert_cubes_equal``: two cubes equal exactly (NaN equal to NaN), the ledger's ``wall_s`` and
  the provenance attributes (time, host, versions) aside;
- ``reference_cube``: the tiny study run by the local executor (no Ray), the undisturbed result
  every fault test compares against;
- ``loopback_cluster``: a multi-node Ray cluster on 127.0.0.1, built with Ray's own test-cluster
  utility (``ray.cluster_utils.Cluster``) in a helper process, with token authentication on.

Why a helper process: ``Cluster`` records its address in ``$RAY_TMPDIR/ray/ray_current_cluster``,
which a plain ``ray.init()`` (the embedded default of other tests) would join; the helper runs
with a private ``RAY_TMPDIR`` and the pytest process never imports Ray for it. Every Ray process
of the cluster is a child of the helper with kernel fate-sharing (PR_SET_PDEATHSIG), so they die
with it even if pytest is killed. Why not ``ray start --address``: in Ray 2.60 a worker node
started by the CLI either refuses to join (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``) or rewrites
127.0.0.1 to the machine's outward address, so a CLI-built multi-node cluster cannot stay on
loopback; ``Cluster.add_node`` starts the same raylet with the node IP we give it.

Run as a script (``python conftest.py serve '<json>'``) this file is that helper: it reads JSON
commands on stdin (add, remove, stop) and answers on stdout, one line each.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPLY = "@@spikesweep-cluster "
PROVENANCE_ATTRS = frozenset({"created", "host", "git_commit", "spikesweep_version", "libraries",
                              "blas", "python"})

TINY_STUDY = """
[study]
name = "tiny"
experiment = "deep-ck"
seed = 11
replicates = 2

[fixed]
n = 80
input_ratio = 2.0
width_ratio = 1.5
depth = 1

[axes]
spike = [0.5, 2.0]
activation = ["tanh", "sin", "erf"]

[measure]
top_k = 3

[run]
block = { spike = 2 }
max_attempts = 2
timeout_s = 30
"""
# 6 blocks, keys "0.<activation>.<replicate>"; every block holds both spikes of one point


def tiny_study_text(**run: Any) -> str:
    """The tiny study with ``[run]`` keys replaced (they do not change the spec hash)."""
    text = TINY_STUDY
    for key, value in run.items():
        lines = [ln for ln in text.splitlines() if not ln.startswith(f"{key} =")]
        text = "\n".join(lines) + f"\n{key} = {json.dumps(value)}\n"
    return text


def assert_cubes_equal(a: Any, b: Any, *, ignore_vars: tuple[str, ...] = ("wall_s",),
                       ignore_attrs: frozenset[str] = PROVENANCE_ATTRS) -> None:
    """Assert two cubes hold the same coordinates, variables and attributes, exactly."""
    import numpy as np

    assert dict(a.sizes) == dict(b.sizes)
    assert set(a.coords) == set(b.coords)
    for name in a.coords:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=f"coord {name}")
    assert set(a.data_vars) == set(b.data_vars)
    for name in a.data_vars:
        if name in ignore_vars:
            continue
        assert a[name].dims == b[name].dims, name
        assert a[name].attrs == b[name].attrs, name
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    keep_a = {k: v for k, v in a.attrs.items() if k not in ignore_attrs}
    keep_b = {k: v for k, v in b.attrs.items() if k not in ignore_attrs}
    assert keep_a == keep_b


def block_status_map(path: Path) -> dict[str, int]:
    """Status per block key of the tiny study's cube, read straight from zarr ({} if none yet)."""
    import numpy as np
    import zarr

    from sweep.grid import blocks
    from sweep.spec import parse_spec

    spec = parse_spec(TINY_STUDY)
    try:
        status = np.asarray(zarr.open_group(path, mode="r")["status"][...])
    except (OSError, KeyError, ValueError):  # not created yet, or the template is being written
        return {}
    return {b.key: int(status[b.slices].max()) for b in blocks(spec)}


def sweep_exe() -> list[str]:
    """The ``sweep`` console script of this environment (the command the README documents)."""
    exe = Path(sys.executable).with_name("sweep")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "sweep.cli"]


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LoopbackCluster:
    """A Ray cluster whose nodes all live on 127.0.0.1, driven through a helper process.

    Attributes:
        address: GCS address for ``sweep run --address``.
        dashboard: HTTP address for ``ray job submit --address`` and ``ray list``.
        env: environment for drivers and Ray CLIs: the cluster's auth mode and token, loopback.
        nodes: worker node id -> the arguments it was started with.
    """

    def __init__(self, root: Path, head: dict[str, Any]):
        self.root = root
        token = secrets.token_hex(32)
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
                    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_TMPDIR": str(root),
                    "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1",
                    # `sweep` and `ray` of this environment first (job entrypoints run `sweep`)
                    "PATH": os.pathsep.join((str(Path(sys.executable).parent),
                                             os.environ.get("PATH", "")))}
        for key in ("RAY_ADDRESS", "SPIKESWEEP_FAULTS", "SPIKESWEEP_FAULTS_DIR"):
            self.env.pop(key, None)
        port = _free_port()
        head = {"num_cpus": 0, "node_ip_address": "127.0.0.1", "include_dashboard": True,
                "dashboard_host": "127.0.0.1", "dashboard_port": port,
                "dashboard_agent_listen_port": None, **head}
        self.log = open(root / "cluster.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "serve", json.dumps(head)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self.log, env=self.env, bufsize=0)
        self._buf = b""
        hello = self._reply(timeout=120)
        self.address: str = hello["address"]
        self.dashboard = f"http://127.0.0.1:{port}"
        self.nodes: dict[str, dict[str, Any]] = {}

    def _reply(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                text = line.decode(errors="replace")
                if text.startswith(REPLY):
                    out = json.loads(text[len(REPLY):])
                    if "error" in out:
                        raise RuntimeError(f"cluster helper: {out['error']}")
                    return out
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"cluster helper silent for {timeout:g} s; see {self.log.name}")
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    raise RuntimeError(f"cluster helper exited; see {self.log.name}")
                self._buf += chunk

    def _call(self, timeout: float = 120, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        return self._reply(timeout)

    def add_node(self, **args: Any) -> str:
        """Start a worker node (``Cluster.add_node`` arguments); return its node id."""
        args = {"node_ip_address": "127.0.0.1", **args}
        node_id = self._call(op="add", args=args)["node_id"]
        self.nodes[node_id] = args
        return node_id

    def remove_node(self, node_id: str) -> None:
        """Kill every process of a worker node at once (no drain), like a machine that dies."""
        self._call(op="remove", node_id=node_id)
        self.nodes.pop(node_id)

    def stop(self) -> None:
        """Shut the cluster down; kill the helper (its Ray children die with it) if it hangs."""
        try:
            if self.proc.poll() is None:
                self._call(op="stop", timeout=60)
        except (OSError, RuntimeError, TimeoutError):
            pass
        finally:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
            self.log.close()

    def ray_cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run the ``ray`` CLI of this environment against the cluster (same token)."""
        exe = Path(sys.executable).with_name("ray")
        return subprocess.run([str(exe), *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def actors_of_driver(self, driver_pid: int) -> list[dict[str, Any]]:
        """BlockWorker actors of the job whose driver process was ``driver_pid`` (state API)."""
        jobs = self.ray_cli("list", "jobs", "--address", self.dashboard, "--format", "json",
                            "--detail")
        assert jobs.returncode == 0, jobs.stderr
        job_ids = [j["job_id"] for j in json.loads(jobs.stdout)
                   if (j.get("driver_info") or {}).get("pid") == str(driver_pid)]
        assert len(job_ids) == 1, (driver_pid, jobs.stdout[-2000:])
        out = self.ray_cli("list", "actors", "--address", self.dashboard, "--format", "json",
                           "--detail", "--limit", "10000", "--filter", f"job_id={job_ids[0]}",
                           "--filter", "class_name=BlockWorker")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)


def _serve(head_args: dict[str, Any]) -> None:
    """The helper process: own a ``Cluster`` and obey commands from stdin until told to stop."""
    from ray.cluster_utils import Cluster

    def reply(**kw: Any) -> None:
        sys.stdout.write(REPLY + json.dumps(kw) + "\n")
        sys.stdout.flush()

    # fast failure detection, so a removed node is noticed in about a second, not 30 s
    head_args["_system_config"] = {"health_check_period_ms": 300,
                                   "health_check_timeout_ms": 1000,
                                   "health_check_failure_threshold": 3}
    cluster = Cluster(initialize_head=True, head_node_args=head_args)
    workers: dict[str, Any] = {}
    reply(address=cluster.address)
    for line in sys.stdin:
        try:
            cmd = json.loads(line)
            if cmd["op"] == "add":
                node = cluster.add_node(**cmd["args"])
                cluster.wait_for_nodes()
                workers[node.node_id] = node
                reply(node_id=node.node_id)
            elif cmd["op"] == "remove":
                cluster.remove_node(workers.pop(cmd["node_id"]), allow_graceful=False)
                reply(ok=True)
            elif cmd["op"] == "stop":
                break
            else:
                reply(error=f"unknown op {cmd['op']!r}")
        except Exception as exc:  # report to the test, keep serving
            reply(error=repr(exc))
    for node in list(workers.values()):
        cluster.remove_node(node, allow_graceful=False)
    if cluster.head_node is not None:
        cluster.remove_node(cluster.head_node, allow_graceful=False)
    reply(ok=True)


# ---------------------------------------------------------------- fixtures

# node A: 2 CPUs and one (declared) GPU; node B: 1 CPU. The head has no CPU, so sweep
# actors only run on worker nodes, which tests may remove.
NODE_A = {"num_cpus": 2, "num_gpus": 1, "resources": {"node_a": 1}}
NODE_B = {"num_cpus": 1, "resources": {"node_b": 1}}


@pytest.fixture(scope="session")
def loopback_cluster() -> Iterator[LoopbackCluster]:
    """Head (no CPU, dashboard for job submission) plus worker nodes A and B, all 127.0.0.1."""
    root = Path(tempfile.mkdtemp(prefix="ssw-", dir="/tmp"))  # short: unix socket paths
    cluster = LoopbackCluster(root, head={})
    try:
        cluster.add_node(**NODE_A)
        cluster.add_node(**NODE_B)
        yield cluster
    finally:
        cluster.stop()
        for _ in range(20):  # Ray children may still flush logs for a moment after stop
            shutil.rmtree(root, ignore_errors=True)
            if not root.exists():
                break
            time.sleep(0.5)


@pytest.fixture(scope="session")
def reference_cube(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The tiny study computed by the local executor: the undisturbed, single-node result."""
    from sweep.runner import run_study
    from sweep.spec import parse_spec
    from sweep.store import open_cube

    path = tmp_path_factory.mktemp("reference") / "tiny.zarr"
    out = run_study(parse_spec(TINY_STUDY), path, executor="local", progress=False)
    assert out.ok and out.summary.done == 6
    return open_cube(path).load()


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "serve":
    _serve(json.loads(sys.argv[2]))
