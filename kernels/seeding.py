"""Deterministic child seeds: every random object is keyed by *what* it is, never by call order.

``SeedSequence.spawn`` numbers children in the order they are asked for, so the same object could
get a different seed in a different code path. Here a child is ``SeedSequence(entropy,
spawn_key=parent.spawn_key + keys)``: the same parent and keys give the same child in any order,
in any process. String keys are mapped to integers by BLAKE2b, stable across Python runs
(unlike ``hash``). This is what lets points that differ only in spike strength or activation
share their noise and weights (common random numbers).
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["SeedLike", "as_seed_sequence", "derive", "host_rng"]

SeedLike = int | np.random.SeedSequence


def as_seed_sequence(seed: SeedLike) -> np.random.SeedSequence:
    """``seed`` as a SeedSequence (a non-negative int becomes ``SeedSequence(seed)``)."""
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0:
        return np.random.SeedSequence(int(seed))
    raise ValueError(
        f"seed: expected a numpy.random.SeedSequence or a non-negative int, got {seed!r}"
    )


def _key_to_int(key: int | str) -> int:
    if isinstance(key, str):
        return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool) and key >= 0:
        return int(key)
    raise ValueError(f"seed key: expected a non-negative int or a str, got {key!r}")


def derive(seed: SeedLike, *keys: int | str) -> np.random.SeedSequence:
    """Return the child of ``seed`` named by ``keys`` (e.g. ``derive(s, "layer", 3)``).

    Pure: it neither reads nor advances ``seed``'s spawn counter, so calling it twice, or in
    another order, gives the same child.
    """
    parent = as_seed_sequence(seed)
    return np.random.SeedSequence(
        entropy=parent.entropy,
        spawn_key=(*parent.spawn_key, *(_key_to_int(k) for k in keys)),
        pool_size=parent.pool_size,
    )


def host_rng(seed: SeedLike, *keys: int | str) -> np.random.Generator:
    """Return a numpy ``Generator(PCG64)`` on ``derive(seed, *keys)`` (bitwise reproducible)."""
    return np.random.Generator(np.random.PCG64(derive(seed, *keys)))
