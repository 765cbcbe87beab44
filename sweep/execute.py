"""Executors: the driver schedules blocks, retries them, and streams results to the store.

Three roles are kept apart (as in Ray Tune and Hydra's launchers): :func:`sweep.task.run_block`
computes one block (pure); a :class:`BlockWorker` actor holds the expensive set-up (backend,
pinned BLAS threads, cached theory levels); the driver here schedules, retries, applies
timeouts and writes each finished block at once. The driver schedules blocks itself instead of
using ``ActorPool``, which loses the in-flight item when an actor dies.

Without an address Ray starts in-process, bound to loopback (node IP 127.0.0.1): a laptop run
never exposes an unauthenticated head on the network. With ``address`` ("auto", "ray://..." or
"host:port", or ``RAY_ADDRESS``) the driver joins that cluster.
"""

from __future__ import annotations

import collections
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweep.faults import fault_env, maybe_inject
from sweep.grid import Block, default_workers
from sweep.spec import Spec, parse_spec
from sweep.store import _open_arrays, write_block, write_failure
from sweep.task import BlockResult, run_block

__all__ = ["BlockWorker", "RunSummary", "run_local", "run_ray"]


@dataclass
class RunSummary:
    """What one run did.

    Attributes:
        done: blocks finished in this run; failed: blocks recorded failed (key -> error).
        retried: attempts that failed and were retried; actors_replaced: dead actors replaced.
        wall_s: driver wall time of the scheduling loop; task_s: summed block compute time.
        workers: actors (or 1 for the local executor).
    """

    done: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    retried: int = 0
    actors_replaced: int = 0
    wall_s: float = 0.0
    task_s: float = 0.0
    workers: int = 1


class BlockWorker:
    """Holds a backend and pinned BLAS threads; computes blocks one at a time."""

    def __init__(self, spec_text: str, threads: int):
        from kernels.backend import get_backend, pin_process_threads

        pin_process_threads(threads)
        self.spec = parse_spec(spec_text)
        self.backend = get_backend(self.spec.run.backend, self.spec.run.dtype)
        self.threads = threads

    def run(self, block: Block) -> BlockResult:
        """Compute ``block`` (fault-injection hook first; see :mod:`sweep.faults`)."""
        maybe_inject(block.key)
        result = run_block(self.spec, block, self.backend)
        result.info = {"pid": os.getpid(), "threads": self.threads}
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
                    result = run_block(spec, block, backend)
                except Exception as exc:  # a block's failure must not stop the sweep
                    if attempt < spec.run.max_attempts:
                        summary.retried += 1
                        continue
                    write_failure(spec, path, block, error=_short(exc), attempts=attempt, group=group)
                    summary.failed[block.key] = _short(exc)
                else:
                    write_block(spec, path, block, result.values, wall_s=result.wall_s,
                                attempts=attempt, group=group)
                    summary.done += 1
                    summary.task_s += result.wall_s
                break
            bar.update(1)
    bar.close()
    summary.wall_s = time.perf_counter() - t0
    return summary


def init_ray(address: str | None, num_cpus: int | None = None, num_gpus: int | None = None) -> None:
    """Join the cluster at ``address`` or start Ray in-process on loopback."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is None:
        # must precede `import ray`: node IP resolves to loopback instead of the LAN address
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray

    if ray.is_initialized():
        return
    env = fault_env()
    runtime_env = {"env_vars": env} if env else None
    if address is None:
        ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                 _node_ip_address="127.0.0.1", log_to_driver=False, configure_logging=False,
                 runtime_env=runtime_env)
        ip = ray.util.get_node_ip_address()
        if ip != "127.0.0.1":
            ray.shutdown()
            raise RuntimeError(f"embedded Ray bound to {ip}, not loopback; refusing to run")
    else:
        ray.init(address=address, log_to_driver=False, configure_logging=False,
                 runtime_env=runtime_env)


class _Scheduler:
    """The driver loop: one block in flight per actor, retries, timeouts, actor replacement."""

    def __init__(self, spec: Spec, path: Path, workers: int, progress: bool):
        import ray

        self.ray = ray
        self.spec, self.path = spec, path
        self.threads = spec.run.cpus_per_actor
        opts: dict[str, Any] = {"num_cpus": spec.run.cpus_per_actor, "max_restarts": 0,
                                "max_concurrency": 1}
        if spec.run.gpus_per_actor:
            opts["num_gpus"] = spec.run.gpus_per_actor
        self.actor_cls = ray.remote(**opts)(BlockWorker)
        self.actors: dict[int, Any] = {}
        self.next_id = 0
        self.summary = RunSummary(workers=workers)
        self.group = _open_arrays(path)
        self.progress = progress
        for _ in range(workers):
            self._new_actor()

    def _new_actor(self) -> int:
        aid = self.next_id
        self.next_id += 1
        self.actors[aid] = self.actor_cls.remote(self.spec.text, self.threads)
        return aid

    def _replace(self, aid: int) -> int:
        actor = self.actors.pop(aid, None)
        if actor is not None:
            self.ray.kill(actor, no_restart=True)
        self.summary.actors_replaced += 1
        return self._new_actor()

    def run(self, todo: list[Block]) -> RunSummary:
        ray = self.ray
        from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

        queue = collections.deque(todo)
        attempts: collections.Counter[tuple[int, ...]] = collections.Counter()
        in_flight: dict[Any, tuple[int, Block, float]] = {}
        idle = collections.deque(self.actors)
        bar = _progress(len(todo), self.progress)
        t_start = time.perf_counter()
        timeout = self.spec.run.timeout_s

        def failed_attempt(block: Block, why: str) -> None:
            attempts[block.index] += 1
            if attempts[block.index] < self.spec.run.max_attempts:
                self.summary.retried += 1
                queue.append(block)
                return
            write_failure(self.spec, self.path, block, error=why, attempts=attempts[block.index],
                          group=self.group)
            self.summary.failed[block.key] = why
            bar.update(1)

        while queue or in_flight:
            while idle and queue:
                aid = idle.popleft()
                if aid not in self.actors:
                    continue
                block = queue.popleft()
                ref = self.actors[aid].run.remote(block)
                in_flight[ref] = (aid, block, time.monotonic())
            now = time.monotonic()
            wait_s = min([1.0] + [max(0.01, t0 + timeout - now) for _, _, t0 in in_flight.values()])
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=wait_s)
            for ref in ready:
                aid, block, _ = in_flight.pop(ref)
                try:
                    result: BlockResult = ray.get(ref, timeout=60)
                except RayActorError as exc:  # the worker process or its node died
                    idle.append(self._replace(aid))
                    failed_attempt(block, f"worker died: {_short(exc)}")
                except RayTaskError as exc:
                    idle.append(aid)
                    cause = exc.cause if getattr(exc, "cause", None) is not None else exc
                    failed_attempt(block, _short(cause))
                except GetTimeoutError as exc:
                    idle.append(self._replace(aid))
                    failed_attempt(block, _short(exc))
                else:
                    attempts[block.index] += 1
                    write_block(self.spec, self.path, block, result.values, wall_s=result.wall_s,
                                attempts=attempts[block.index], group=self.group)
                    self.summary.done += 1
                    self.summary.task_s += result.wall_s
                    idle.append(aid)
                    bar.update(1)
            now = time.monotonic()
            for ref, (aid, block, t0) in list(in_flight.items()):
                if now - t0 > timeout:
                    in_flight.pop(ref)
                    idle.append(self._replace(aid))
                    failed_attempt(block, f"timed out after {timeout:g} s (run.timeout_s)")
        bar.close()
        self.summary.wall_s = time.perf_counter() - t_start
        return self.summary

    def shutdown(self) -> None:
        for actor in self.actors.values():
            self.ray.kill(actor, no_restart=True)
        self.actors.clear()


def run_ray(spec: Spec, path: Path, todo: list[Block], *, address: str | None = None,
            workers: int | None = None, progress: bool = True) -> RunSummary:
    """Run blocks on Ray actors (in-process Ray unless ``address``), streaming to the store."""
    workers = workers or spec.run.workers or default_workers(spec)
    embedded = not (address or os.environ.get("RAY_ADDRESS"))
    started_here = "ray" not in sys.modules or not sys.modules["ray"].is_initialized()
    if embedded:
        init_ray(None, num_cpus=max(workers * spec.run.cpus_per_actor, os.cpu_count() or 1))
    else:
        init_ray(address)
    import ray
    sched = _Scheduler(spec, path, min(workers, max(1, len(todo))), progress)
    try:
        return sched.run(todo)
    finally:
        sched.shutdown()
        if started_here and embedded:
            ray.shutdown()
