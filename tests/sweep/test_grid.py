"""Blocks tile the grid; seeds follow the common-random-numbers rule; the cost model's figures."""

from __future__ import annotations

import math

import numpy as np

from sweep.grid import block_memory_bytes, blocks, chunk_shape, point_flops, point_seed
from sweep.spec import parse_spec

STUDY = """
[study]
name = "g"
experiment = "deep-ck"
seed = 11
replicates = 3
[fixed]
n = 100
depth = 2
input_ratio = 2.0
[axes]
width_ratio = [0.5, 1.0]
spike = [0.5, 1.0, 1.5, 2.0, 2.5]
activation = ["tanh", "relu"]
[run]
block = { spike = 2, replicate = 2 }
"""


def test_blocks_tile_every_point_once() -> None:
    spec = parse_spec(STUDY)
    assert chunk_shape(spec) == (1, 2, 1, 2)
    seen = np.zeros(spec.shape, dtype=int)
    bl = blocks(spec)
    for b in bl:
        seen[b.slices] += 1
        assert all(0 < s <= c for s, c in zip(b.shape, chunk_shape(spec), strict=True))
    assert (seen == 1).all()
    assert len(bl) == 2 * math.ceil(5 / 2) * 2 * math.ceil(3 / 2)
    assert len({b.key for b in bl}) == len(bl)


def test_seeds_shared_across_spike_and_activation_only() -> None:
    spec = parse_spec(STUDY)
    base = spec.values_at((0, 0, 0, 0))
    s0 = point_seed(spec, base)
    same = [spec.values_at((0, 3, 1, 0))]  # other spike, other activation
    for v in same:
        assert point_seed(spec, v).spawn_key == s0.spawn_key
    other_width = spec.values_at((1, 0, 0, 0))
    other_rep = spec.values_at((0, 0, 0, 1))
    assert point_seed(spec, other_width).spawn_key != s0.spawn_key
    assert point_seed(spec, other_rep).spawn_key != s0.spawn_key
    # the seed does not depend on blocking: a different block layout gives the same seed
    spec2 = parse_spec(STUDY.replace("block = { spike = 2, replicate = 2 }", ""))
    assert point_seed(spec2, spec2.values_at((0, 0, 0, 0))).spawn_key == s0.spawn_key
    draws = np.random.default_rng(s0).standard_normal(3)
    again = np.random.default_rng(point_seed(spec2, spec2.values_at((0, 4, 1, 0)))).standard_normal(3)
    assert np.array_equal(draws, again)


def test_memory_and_flops_formulas() -> None:
    spec = parse_spec(STUDY)
    # worst case n=100, d0=200, d=100 (width 1.0): 8 * (d0 n + 2 d n + d max(d, d0) + 3 m^2)
    n, d0, d, m = 100, 200, 100, 100
    # plus one more point's two layers of features: blocks of 2 spikes share a forward pass
    batch = 8 * 2 * max(d0, d) * n
    assert block_memory_bytes(spec) == 8 * (d0 * n + 2 * d * n + d * max(d, d0) + 3 * m * m) + batch
    v = spec.values_at((1, 0, 0, 0))
    forward = 2 * d * d0 * n + 2 * d * d * n * 1
    gram = 2 * n * n * d0 + 2 * 2 * m * m * n
    assert point_flops(spec, v) == forward + gram
