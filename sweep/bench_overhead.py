"""Benchmark: Ray + zarr overhead of a sweep against the ideal (summed task time / workers).

Runs a study of 64+ small deep-CK tasks with the Ray executor and prints the sweep's wall time
beside the summed in-task compute time divided by the number of workers. Ray's start-up
(a few seconds, once per run) is reported separately: it does not grow with the grid.

    python -m sweep.bench_overhead [--n 400] [--workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from sweep.spec import parse_spec

STUDY = """
[study]
name = "bench-overhead"
experiment = "deep-ck"
seed = 1
replicates = 2
[fixed]
n = {n}
depth = 2
input_ratio = 2.0
[axes]
spike = {{ linspace = [0.5, 3.0, 8] }}
width_ratio = [1.0, 2.0]
activation = ["tanh", "sin"]
[measure]
top_k = 6
"""


def main() -> None:
    """Run the benchmark study and print the overhead figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    from sweep.execute import init_ray, run_ray
    from sweep.grid import blocks
    from sweep.store import prepare_store

    spec = parse_spec(STUDY.format(n=args.n))
    todo = blocks(spec)
    t0 = time.perf_counter()
    init_ray(None, num_cpus=args.workers)
    t_init = time.perf_counter() - t0
    import ray

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cube.zarr"
        prepare_store(spec, path)
        summary = run_ray(spec, path, todo, workers=args.workers, progress=False)
    ray.shutdown()
    ideal = summary.task_s / summary.workers
    print(f"tasks: {len(todo)} blocks of 1 point, n = {args.n}, depth 2, {summary.workers} workers")
    print(f"ray start-up: {t_init:.2f} s (once per run)")
    print(f"sweep wall (actors start + schedule + compute + write): {summary.wall_s:.2f} s")
    print(f"summed task time / workers: {ideal:.2f} s")
    print(f"overhead: {100 * (summary.wall_s / ideal - 1):.1f} % over the ideal")


if __name__ == "__main__":
    main()
