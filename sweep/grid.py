"""Grid points, task blocks, random seeds and the cost/memory model.

A *point* is one index over ``spec.dims`` (the axes, then ``replicate``). A *block* is a
rectangular set of points (the run's ``block`` sizes; default 1 along every dimension); it is one
task and one zarr chunk. Seeds depend only on the point's replicate and on the parameters that
shape the random objects (never on the block, the worker or the order), so any blocking,
worker count or resume gives the same numbers.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from sweep.spec import Spec

__all__ = [
    "Block",
    "block_memory_bytes",
    "blocks",
    "chunk_shape",
    "memory_budget_bytes",
    "point_seed",
    "task_flops",
]

_BYTES = {"float64": 8, "float32": 4}


@dataclass(frozen=True)
class Block:
    """A task: the point indices ``start[i] : stop[i]`` along each of ``spec.dims``.

    Attributes:
        index: the block's chunk index along each dimension (its id).
        start, stop: point-index bounds along each dimension.
    """

    index: tuple[int, ...]
    start: tuple[int, ...]
    stop: tuple[int, ...]

    @property
    def slices(self) -> tuple[slice, ...]:
        """Slices over ``spec.dims``."""
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop, strict=True))

    @property
    def shape(self) -> tuple[int, ...]:
        """Points along each dimension."""
        return tuple(b - a for a, b in zip(self.start, self.stop, strict=True))

    def points(self) -> Iterator[tuple[int, ...]]:
        """Global point indices in this block, in C order."""
        return itertools.product(*(range(a, b) for a, b in zip(self.start, self.stop, strict=True)))

    @property
    def key(self) -> str:
        """A short printable id, e.g. ``"0.3.1"``."""
        return ".".join(str(i) for i in self.index)


def chunk_shape(spec: Spec) -> tuple[int, ...]:
    """Block (= chunk) size along each of ``spec.dims``, clipped to the dimension's length."""
    return tuple(min(spec.run.block.get(d, 1), n) for d, n in zip(spec.dims, spec.shape, strict=True))


def blocks(spec: Spec) -> list[Block]:
    """All blocks of the study in C order of their chunk index."""
    cs = chunk_shape(spec)
    counts = [math.ceil(n / c) for n, c in zip(spec.shape, cs, strict=True)]
    out = []
    for idx in itertools.product(*(range(c) for c in counts)):
        start = tuple(i * c for i, c in zip(idx, cs, strict=True))
        stop = tuple(min(s + c, n) for s, c, n in zip(start, cs, spec.shape, strict=True))
        out.append(Block(idx, start, stop))
    return out


def shape_key(spec: Spec, values: dict) -> dict:
    """The parameter values that change the shape of the random draws at a point."""
    key = {p: values[p] for p, d in spec.params.items() if d.shapes_draws}
    key["experiment"] = spec.experiment
    key["signals"] = spec.n_signals
    return key


def point_seed(spec: Spec, values: dict) -> np.random.SeedSequence:
    """``SeedSequence(study seed, spawn_key=(replicate, h0, h1))`` with h = hash of the shape key.

    Points that differ only in spike strength, learning rate or activation get the same seed
    (common random numbers); sizes and ratios change it; submission order and worker never do.
    """
    blob = json.dumps(shape_key(spec, values), sort_keys=True).encode()
    digest = hashlib.blake2b(blob, digest_size=8).digest()
    h0, h1 = int.from_bytes(digest[:4], "little"), int.from_bytes(digest[4:], "little")
    return np.random.SeedSequence(spec.seed, spawn_key=(int(values["replicate"]), h0, h1))


def _deep_sizes(values: dict) -> tuple[int, int, int]:
    n = int(values["n"])
    return n, max(1, round(values["input_ratio"] * n)), max(1, round(values["width_ratio"] * n))


def _one_step_sizes(values: dict) -> tuple[int, int, int, int]:
    n = int(values["n"])
    d = int(values.get("d", 0)) or max(1, round(values["input_ratio"] * n))
    width = int(values.get("N", 0)) or max(1, round(values["width_ratio"] * n))
    # fresh test set of n samples: the test-CK ratio N/n is Theorem 6's gamma1
    return n, d, width, n



def _extremes(spec: Spec) -> dict:
    """The largest value of every numeric parameter (the memory worst case)."""
    out = dict(spec.fixed)
    for name, vals in spec.axes.items():
        if all(isinstance(v, int | float) for v in vals):
            out[name] = max(vals)
    out.setdefault("replicate", 0)
    return out


def point_memory_bytes(spec: Spec, values: dict) -> int:
    """Peak bytes of one point's matrices.

    deep-ck: X0 (d0 n), two layers of features (2 d n), one weight matrix d max(d, d0), the Gram
    and its eigensolver workspace (3 m^2, m = min(d, n)). one-step: train and test data
    (n d + n_t d), three d x N weight-sized matrices (W0, W, gradient), test features and
    Gram (2 N n_t + 3 m^2).
    """
    b = _BYTES[spec.run.dtype]
    if spec.experiment == "deep-ck":
        n, d0, d = _deep_sizes(values)
        m = min(d, n)
        return b * (d0 * n + 2 * d * n + d * max(d, d0) + 3 * m * m)
    n, d, width, n_test = _one_step_sizes(values)
    m = min(width, n_test)
    return b * (n * d + n_test * d + 3 * d * width + 2 * width * max(n, n_test) + 3 * m * m)


FEATURE_BATCH_BYTES = 512 * 2**20
"""deep-ck: features of untrained points sharing a seed that go through the layers together."""


def block_memory_bytes(spec: Spec) -> int:
    """Peak bytes of the largest task.

    One point's matrices, plus (deep-ck) the features of the points pushed through the layers
    together, at most :data:`FEATURE_BATCH_BYTES`.
    """
    values = _extremes(spec)
    need = point_memory_bytes(spec, values)
    if spec.experiment == "deep-ck":
        n, d0, d = _deep_sizes(values)
        per_point = 2 * max(d0, d) * n * _BYTES[spec.run.dtype]
        points = math.prod(chunk_shape(spec)[:-1])
        need += min(FEATURE_BATCH_BYTES, per_point * max(points - 1, 0))
    return need


def physical_memory_bytes() -> int:
    """Total physical memory of this machine."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def default_workers(spec: Spec) -> int:
    """Actors to start by default: this machine's CPUs divided by CPUs per actor (at least 1)."""
    return max(1, (os.cpu_count() or 1) // spec.run.cpus_per_actor)


def memory_budget_bytes(spec: Spec) -> int:
    """Memory one actor may use: ``run.memory_gb``, else 70 % of this machine / workers."""
    if spec.run.memory_gb is not None:
        return int(spec.run.memory_gb * 2**30)
    workers = spec.run.workers or default_workers(spec)
    return int(0.7 * physical_memory_bytes() / workers)


def point_flops(spec: Spec, values: dict) -> float:
    """Unavoidable flops at one point: forward matmuls plus Gram products.

    deep-ck: sum over layers of 2 d_l d_{l-1} n (forward) + 2 m^2 max(d, n) (Gram, m = min(d, n)).
    one-step: train and test forward 2 (n + n_t) d N, gradient 2 n d N per step, test Gram.
    """
    if spec.experiment == "deep-ck":
        n, d0, d = _deep_sizes(values)
        depth = spec.depth
        forward = 2.0 * d * d0 * n + 2.0 * d * d * n * max(depth - 1, 0) if depth else 0.0
        m0, m = min(d0, n), min(d, n)
        gram = 2.0 * m0 * m0 * max(d0, n) + depth * 2.0 * m * m * max(d, n)
        return forward + gram
    n, d, width, n_test = _one_step_sizes(values)
    steps = int(values.get("steps", 1))
    m = min(width, n_test)
    return 2.0 * (n + n_test) * d * width + steps * 4.0 * n * d * width + 2.0 * m * m * max(width, n_test)


def task_flops(spec: Spec, block: Block) -> float:
    """Flops of a whole block (sum over its points)."""
    return sum(point_flops(spec, spec.values_at(p)) for p in block.points())
