"""Executors: the driver schedules blocks, retries them, and streams results to the store.

Three roles are kept apart (as in Ray Tune and Hydra's launchers): :func:`sweep.task.run_block`
computes one block (pure); a :class:`BlockWorker` actor holds the expensive set-up (backend,
pinned BLAS threads, cached theory levels); the driver here schedules, retries, applies
timeouts and writes each finished block at once. The driver schedules blocks itself instead of
using ``ActorPool``, which loses the in-flight item when an actor dies.

Failure model (each case has a test in tests/sweep/test_faults.py that injects it for real):

- a worker process or its whole node dies: the block's attempt fails with a Ray error, the actor
  is replaced, the block goes back in the queue (up to ``run.max_attempts``);
- a block raises: retried up to ``run.max_attempts``, then recorded failed with its error;
- a block runs past ``run.timeout_s``: its actor is killed and replaced, the attempt has failed;
- a block that cannot fit in the worker's memory is refused before allocating (not retried);
- a block is only sent to an actor that has answered a ping, so actors that cannot be placed
  (a removed node, resources the cluster lacks) never hold work; if no actor becomes ready
  within ``SPIKESWEEP_START_TIMEOUT_S`` (default 600 s) the blocks left are recorded failed with
  the reason;
- the store cannot be written (disk full, read-only): :class:`sweep.store.StoreError`, the run
  stops, finished blocks stay intact.

Without an address Ray starts in-process, bound to loopback (node IP 127.0.0.1): a laptop run
never exposes an unauthenticated head on the network. With ``address`` ("auto", "ray://..." or
"host:port", or ``RAY_ADDRESS``) the driver joins that cluster; actors are spread over its nodes.
"""

from __future__ import annotations

import collections
import math
import os
import queue as _queue
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweep.faults import fault_env, maybe_inject
from sweep.grid import Block, default_workers, point_memory_bytes
from sweep.spec import Spec, parse_spec
from sweep.store import _open_arrays, write_block, write_failure
from sweep.task import BlockResult, run_block

__all__ = [
    "START_TIMEOUT_ENV",
    "BlockRefused",
    "BlockWorker",
    "ClusterError",
    "RunSummary",
    "block_need_bytes",
    "init_ray",
    "memory_limit_bytes",
    "preflight_block",
    "run_local",
    "run_ray",
]

START_TIMEOUT_ENV = "SPIKESWEEP_START_TIMEOUT_S"
_DEFAULT_START_TIMEOUT_S = 600.0


class BlockRefused(RuntimeError):
    """A block that cannot run on this worker on any attempt (its matrices would not fit)."""


class ClusterError(ValueError):
    """The Ray cluster cannot be joined (wrong address, authentication token, version)."""


@dataclass
class RunSummary:
    """What one run did.

    Attributes:
        done: blocks finished in this run; failed: blocks recorded failed (key -> error).
        retried: attempts that failed and were retried; actors_replaced: dead actors replaced.
        wall_s: driver wall time of the scheduling loop; task_s: summed block compute time.
        workers: actors (or 1 for the local executor).
        nodes: blocks computed per Ray node id ("" for the local executor).
        aborted: why the blocks left were recorded failed without running ("" if none were).
    """

    done: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    retried: int = 0
    actors_replaced: int = 0
    wall_s: float = 0.0
    task_s: float = 0.0
    workers: int = 1
    nodes: dict[str, int] = field(default_factory=dict)
    aborted: str = ""


# ---------------------------------------------------------------- memory pre-flight

def block_need_bytes(spec: Spec, block: Block) -> int:
    """Peak bytes of the block's largest point (points of a block run one after another)."""
    return max(point_memory_bytes(spec, spec.values_at(p)) for p in block.points())


def _meminfo_available() -> int | None:
    """MemAvailable of this machine, capped by a cgroup limit (containers, Kubernetes pods)."""
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            return None
    for limit_f, usage_f in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                             ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                              "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_f).read_text().strip()
            usage = int(Path(usage_f).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:
            avail = min(avail, max(0, int(limit) - usage))
        break
    return avail


def _gpu_share_bytes(fraction: float) -> int | None:
    """Return this actor's GPU memory share, min(free, fraction x total) (None: no cupy)."""
    try:
        import cupy

        free, total = cupy.cuda.Device().mem_info
    except Exception:  # no cupy or no device: nothing to check against
        return None
    return int(min(free, min(fraction, 1.0) * total))


def memory_limit_bytes(spec: Spec) -> tuple[int | None, str]:
    """Memory one block may use in this process, and where the limit comes from.

    numpy backend: min(``run.memory_gb``, memory available on this node now); cupy backend:
    min(``run.memory_gb``, ``gpus_per_actor`` x the device's memory, its free memory).
    """
    limits: list[tuple[int, str]] = []
    if spec.run.memory_gb is not None:
        limits.append((int(spec.run.memory_gb * 2**30), "run.memory_gb"))
    if spec.run.backend == "cupy":
        gpu = _gpu_share_bytes(spec.run.gpus_per_actor)
        if gpu is not None:
            limits.append((gpu, f"{spec.run.gpus_per_actor:g} of this GPU's memory"))
    else:
        avail = _meminfo_available()
        if avail is not None:
            limits.append((avail, "memory available on this node"))
    if not limits:
        return None, ""
    return min(limits)


def preflight_block(spec: Spec, block: Block) -> None:
    """Refuse, before allocating, a block whose matrices would not fit (:class:`BlockRefused`)."""
    need = block_need_bytes(spec, block)
    limit, why = memory_limit_bytes(spec)
    if limit is not None and need > limit:
        raise BlockRefused(
            f"block {block.key}: its matrices need about {need / 2**30:.2f} GiB but this worker "
            f"can use {limit / 2**30:.2f} GiB ({why}); refused before allocating. Reduce n or "
            "the width/input ratios, or run on nodes with more memory"
        )


# ---------------------------------------------------------------- workers

class BlockWorker:
    """Holds a backend and pinned BLAS threads; computes blocks one at a time."""

    def __init__(self, spec_text: str, threads: int):
        from kernels.backend import get_backend, pin_process_threads

        pin_process_threads(threads)
        self.spec = parse_spec(spec_text)
        self.backend = get_backend(self.spec.run.backend, self.spec.run.dtype)
        self.threads = threads
        # import the numerics now, while the actor starts, so run.timeout_s times compute only
        import kernels.theory  # noqa: F401

    def run(self, block: Block) -> BlockResult:
        """Compute ``block`` (fault-injection hook and memory pre-flight first)."""
        maybe_inject(block.key)
        preflight_block(self.spec, block)
        result = run_block(self.spec, block, self.backend)
        import ray

        node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
        result.info = {"pid": os.getpid(), "threads": self.threads, "node_id": node}
        return result

    def ping(self) -> int:
        """Liveness check; returns the worker's pid."""
        return os.getpid()


def _progress(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="block", disable=not enabled, file=sys.stderr,
                dynamic_ncols=True, smoothing=0.1)


def _short(exc: BaseException) -> str:
    lines = traceback.format_exception_only(type(exc), exc)
    return "".join(lines).strip().splitlines()[-1][:500]


def run_local(spec: Spec, path: Path, todo: list[Block], *, progress: bool = True) -> RunSummary:
    """Run blocks in this process, one after another (debugging; no timeouts, same numbers)."""
    from kernels.backend import blas_threads, get_backend

    summary = RunSummary(workers=1)
    backend = get_backend(spec.run.backend, spec.run.dtype)
    group = _open_arrays(path)
    t0 = time.perf_counter()
    bar = _progress(len(todo), progress)
    with blas_threads(spec.run.cpus_per_actor):
        for block in todo:
            for attempt in range(1, spec.run.max_attempts + 1):
                try:
                    maybe_inject(block.key)
                    preflight_block(spec, block)
                    result = run_block(spec, block, backend)
                except Exception as exc:  # a block's failure must not stop the sweep
                    if attempt < spec.run.max_attempts and not isinstance(exc, BlockRefused):
                        summary.retried += 1
                        continue
                    write_failure(spec, path, block, error=_short(exc), attempts=attempt,
                                  group=group)
                    summary.failed[block.key] = _short(exc)
                else:
                    # a StoreError here (disk full, read-only) stops the run: nothing else can land
                    write_block(spec, path, block, result.values, wall_s=result.wall_s,
                                attempts=attempt, group=group)
                    summary.done += 1
                    summary.task_s += result.wall_s
                    summary.nodes[""] = summary.nodes.get("", 0) + 1
                break
            bar.update(1)
    bar.close()
    summary.wall_s = time.perf_counter() - t0
    return summary


# ---------------------------------------------------------------- Ray

def _join_error(address: str, exc: BaseException) -> ClusterError:
    chain, e = [], exc
    while e is not None and len(chain) < 5:
        chain.append(str(e))
        e = e.__cause__ or e.__context__
    text = " ".join(chain)
    msg = f"cannot join the Ray cluster at {address!r}: {_short(exc)}"
    if "Authentication" in text or "InvalidAuthToken" in text or "Unauthenticated" in text:
        msg += (" -- the cluster uses token authentication: run the driver with "
                "RAY_AUTH_MODE=token and the cluster's token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH "
                "or ~/.ray/auth_token), the same on every node")
    return ClusterError(msg)


def init_ray(address: str | None, num_cpus: int | None = None, num_gpus: int | None = None) -> None:
    """Join the cluster at ``address`` or start Ray in-process on loopback."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is None:
        # read when ray is imported (and by the processes it starts): node IP resolves to
        # loopback instead of the LAN address
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    imported_before = "ray" in sys.modules
    import ray

    if ray.is_initialized():
        return
    if address is None and imported_before:
        # ray was imported before the variable was set (a notebook, a test): its constant was
        # computed already; ray's services module reads it at call time, so set it there too
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False
    env = fault_env()
    runtime_env = {"env_vars": env} if env else None
    if address is None:
        ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                 _node_ip_address="127.0.0.1", log_to_driver=False, configure_logging=False,
                 runtime_env=runtime_env)
        ip = ray.util.get_node_ip_address()
        if ip != "127.0.0.1":
            ray.shutdown()
            raise RuntimeError(f"embedded Ray bound to {ip}, not loopback; refusing to run (set "
                               "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 before importing ray)")
    else:
        try:
            ray.init(address=address, log_to_driver=False, configure_logging=False,
                     runtime_env=runtime_env)
        except (ConnectionError, RuntimeError, ray.exceptions.RayError) as exc:
            raise _join_error(address, exc) from None


def _start_timeout() -> float:
    raw = os.environ.get(START_TIMEOUT_ENV)
    if not raw:
        return _DEFAULT_START_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{START_TIMEOUT_ENV}: {raw!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{START_TIMEOUT_ENV}: must be > 0 seconds, got {raw!r}")
    return value


class _BlockWriter:
    """The single writer: one driver thread writes finished and failed blocks in arrival order.

    The scheduling loop hands results over and goes straight back to feeding actors, so an
    actor never waits for the store (a block's zarr writes took 60 ms beside 180 ms tasks in
    ``python -m sweep.bench_overhead``). A write error (disk full) is re-raised in the loop.
    """

    def __init__(self, spec: Spec, path: Path, group: Any):
        self.spec, self.path, self.group = spec, path, group
        self.items: _queue.Queue = _queue.Queue()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, name="spikesweep-writer", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            item = self.items.get()
            if item is None:
                return
            if self.error is not None:
                continue  # after a failed write nothing more is written
            kind, block, kwargs = item
            try:
                if kind == "done":
                    write_block(self.spec, self.path, block, group=self.group, **kwargs)
                else:
                    write_failure(self.spec, self.path, block, group=self.group, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the driver loop
                self.error = exc

    def done(self, block: Block, values: dict, wall_s: float, attempts: int) -> None:
        """Queue a finished block for writing."""
        self.items.put(("done", block, {"values": values, "wall_s": wall_s, "attempts": attempts}))

    def failed(self, block: Block, error: str, attempts: int) -> None:
        """Queue a failed block's ledger entry."""
        self.items.put(("failed", block, {"error": error, "attempts": attempts}))

    def check(self) -> None:
        """Raise the first write error, if any."""
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """Write everything queued, stop the thread, and raise a write error if there was one."""
        self.items.put(None)
        self.thread.join()
        self.check()


class _Scheduler:
    """The driver loop: one block in flight per ready actor, retries, timeouts, replacement."""

    def __init__(self, spec: Spec, path: Path, workers: int, progress: bool,
                 embedded: bool = False):
        import ray

        self.ray = ray
        self.spec, self.path = spec, path
        self.threads = spec.run.cpus_per_actor
        # SPREAD: actors go to different nodes first (memory bandwidth, and losing one node
        # loses few actors); Ray still only places an actor where its resources are free
        opts: dict[str, Any] = {"num_cpus": spec.run.cpus_per_actor, "max_restarts": 0,
                                "max_concurrency": 1, "scheduling_strategy": "SPREAD"}
        if spec.run.gpus_per_actor:
            opts["num_gpus"] = spec.run.gpus_per_actor
        custom = getattr(spec.run, "resources", None)  # run.resources, once the spec has it
        if custom:
            opts["resources"] = dict(custom)
        self.request = {"CPU": float(spec.run.cpus_per_actor)}
        if spec.run.gpus_per_actor:
            self.request["GPU"] = float(spec.run.gpus_per_actor)
        self.request.update({k: float(v) for k, v in (custom or {}).items()})
        self.actor_cls = ray.remote(**opts)(BlockWorker)
        self.workers = workers
        self.actors: dict[int, Any] = {}
        self.starting: dict[Any, int] = {}  # ping ref -> actor id, until the actor answers
        self.next_id = 0
        self.start_failures = 0
        self.start_error = ""
        self.can_replace = True
        self.summary = RunSummary(workers=workers)
        self.group = _open_arrays(path)
        self.progress = progress
        self._check_placeable(embedded)
        for _ in range(workers):
            self._new_actor()

    def _fits(self, resources: dict[str, float]) -> bool:
        return all(resources.get(k, 0.0) >= v for k, v in self.request.items())

    def _check_placeable(self, embedded: bool) -> None:
        """Refuse (in-process Ray: nothing can be added) or warn when no node can host an actor."""
        nodes = [n.get("Resources", {}) for n in self.ray.nodes() if n.get("Alive")]
        if any(self._fits(r) for r in nodes):
            return
        if embedded:
            have = {k: v for r in nodes for k, v in r.items() if k in self.request}
            raise ClusterError(f"this machine cannot host an actor needing {self.request} "
                               f"(it has {have}); lower cpus_per_actor / gpus_per_actor or "
                               "join a cluster with --address")
        print(f"warning: no node of this cluster can host an actor needing {self.request} now; "
              f"waiting up to {_start_timeout():g} s ({START_TIMEOUT_ENV}) for one to appear "
              "(an autoscaler may add it)", file=sys.stderr)

    def _new_actor(self) -> int:
        aid = self.next_id
        self.next_id += 1
        actor = self.actor_cls.remote(self.spec.text, self.threads)
        self.actors[aid] = actor
        self.starting[actor.ping.remote()] = aid
        return aid

    def _drop(self, aid: int) -> None:
        actor = self.actors.pop(aid, None)
        if actor is not None:
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception:  # already dead with its node: nothing to kill
                pass

    def _replace(self, aid: int) -> None:
        self._drop(aid)
        if self.can_replace:
            self.summary.actors_replaced += 1
            self._new_actor()

    def _stall_reason(self, waited: float) -> str:
        try:
            free = {k: v for k, v in self.ray.available_resources().items()
                    if not k.startswith(("node:", "object_store", "memory"))}
        except Exception:
            free = {}
        return (f"not run: no worker became ready within {waited:.0f} s ({START_TIMEOUT_ENV}); "
                f"an actor needs {self.request}, the cluster has {free} free. Add nodes (or "
                "lower cpus_per_actor / gpus_per_actor), then rerun with --retry-failed")

    def run(self, todo: list[Block]) -> RunSummary:
        ray = self.ray
        from ray.exceptions import RayError, RayTaskError

        queue = collections.deque(todo)
        attempts: collections.Counter[tuple[int, ...]] = collections.Counter()
        in_flight: dict[Any, tuple[int, Block, float]] = {}
        idle: collections.deque[int] = collections.deque()
        bar = _progress(len(todo), self.progress)
        t_start = time.perf_counter()
        timeout = self.spec.run.timeout_s
        start_timeout = _start_timeout()
        last_ready = time.monotonic()

        writer = _BlockWriter(self.spec, self.path, self.group)

        def record_failed(block: Block, why: str) -> None:
            writer.failed(block, why, attempts[block.index])
            self.summary.failed[block.key] = why
            bar.update(1)

        def failed_attempt(block: Block, why: str) -> None:
            attempts[block.index] += 1
            if attempts[block.index] < self.spec.run.max_attempts:
                self.summary.retried += 1
                queue.append(block)
                return
            record_failed(block, why)

        def abort(why: str) -> None:
            self.summary.aborted = why
            while queue:
                record_failed(queue.popleft(), why)

        while queue or in_flight:
            writer.check()
            while idle and queue:
                aid = idle.popleft()
                if aid not in self.actors:
                    continue
                block = queue.popleft()
                ref = self.actors[aid].run.remote(block)
                in_flight[ref] = (aid, block, time.monotonic())
            now = time.monotonic()
            if queue and not in_flight and not idle:
                if not self.starting:
                    abort(f"not run: workers cannot start ({self.start_error or 'none left'})")
                    break
                if now - last_ready > start_timeout:
                    abort(self._stall_reason(now - last_ready))
                    break
            wait_s = min([1.0] + [max(0.01, t0 + timeout - now) for _, _, t0 in in_flight.values()])
            refs = [*in_flight, *self.starting]
            ready, _ = ray.wait(refs, num_returns=1, timeout=wait_s)
            for ref in ready:
                if ref in self.starting:
                    aid = self.starting.pop(ref)
                    try:
                        ray.get(ref, timeout=60)
                    except RayError as exc:  # creation failed, or its node went away
                        self.start_failures += 1
                        self.start_error = _short(exc)
                        if self.start_failures >= max(3, 2 * self.workers):
                            self.can_replace = False  # a constructor that always fails
                        self._replace(aid)
                    else:
                        self.start_failures = 0
                        last_ready = time.monotonic()
                        idle.append(aid)
                    continue
                aid, block, _ = in_flight.pop(ref)
                try:
                    result: BlockResult = ray.get(ref, timeout=60)
                except RayTaskError as exc:  # the block raised; the actor is fine
                    idle.append(aid)
                    cause = exc.cause if getattr(exc, "cause", None) is not None else exc
                    if isinstance(cause, BlockRefused):
                        attempts[block.index] += 1
                        record_failed(block, _short(cause))
                    else:
                        failed_attempt(block, _short(cause))
                except RayError as exc:  # worker process or node died, or its result was lost
                    self._replace(aid)
                    failed_attempt(block, f"worker died: {_short(exc)}")
                else:
                    attempts[block.index] += 1
                    writer.done(block, result.values, result.wall_s, attempts[block.index])
                    self.summary.done += 1
                    self.summary.task_s += result.wall_s
                    node = str(result.info.get("node_id", ""))
                    self.summary.nodes[node] = self.summary.nodes.get(node, 0) + 1
                    last_ready = time.monotonic()
                    idle.append(aid)
                    bar.update(1)
            now = time.monotonic()
            for ref, (aid, block, t0) in list(in_flight.items()):
                if now - t0 > timeout:
                    in_flight.pop(ref)
                    self._replace(aid)
                    failed_attempt(block, f"timed out after {timeout:g} s (run.timeout_s)")
        writer.close()
        bar.close()
        self.summary.wall_s = time.perf_counter() - t_start
        return self.summary

    def shutdown(self) -> None:
        for aid in list(self.actors):
            self._drop(aid)
        self.starting.clear()


def _cluster_capacity(spec: Spec, total: dict[str, float]) -> int:
    """Actors the cluster's resources hold now (at least 1; an autoscaler may add more nodes)."""
    fit = total.get("CPU", 0.0) // spec.run.cpus_per_actor
    if spec.run.gpus_per_actor:
        fit = min(fit, total.get("GPU", 0.0) // spec.run.gpus_per_actor)
    return max(1, int(fit))


def run_ray(spec: Spec, path: Path, todo: list[Block], *, address: str | None = None,
            workers: int | None = None, progress: bool = True) -> RunSummary:
    """Run blocks on Ray actors (in-process Ray unless ``address``), streaming to the store.

    Actors: ``workers``, else ``run.workers``, else as many as fit: this machine's CPUs in-process,
    the cluster's CPUs (and GPUs, when actors take a GPU share) when joining a cluster.
    """
    workers = workers or spec.run.workers
    _start_timeout()  # a bad value is refused before Ray starts
    embedded = not (address or os.environ.get("RAY_ADDRESS"))
    started_here = "ray" not in sys.modules or not sys.modules["ray"].is_initialized()
    if embedded:
        workers = workers or default_workers(spec)
        init_ray(None, num_cpus=max(workers * spec.run.cpus_per_actor, os.cpu_count() or 1))
    else:
        init_ray(address)
    import ray

    if not workers:
        workers = _cluster_capacity(spec, ray.cluster_resources())
    sched = _Scheduler(spec, path, min(workers, max(1, len(todo))), progress, embedded=embedded)
    try:
        return sched.run(todo)
    finally:
        sched.shutdown()
        if started_here and embedded:
            ray.shutdown()
