"""Array-module selection, host transfer, random generators and BLAS thread limits.

The numerics in ``kernels`` are written once against an array module ``xp`` (numpy or cupy).
This module is the only place that knows how the two differ: how to import them, how to draw
random numbers, how to bring results back to the host, and how to keep BLAS from
oversubscribing the cores. ``import kernels`` never imports cupy: it is imported lazily, only
when a cupy backend is asked for.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

__all__ = [
    "Backend",
    "BackendUnavailableError",
    "available_backends",
    "blas_info",
    "blas_threads",
    "get_backend",
    "is_cupy_array",
    "to_host",
]

_DTYPES = {"float64": np.float64, "float32": np.float32}


class BackendUnavailableError(RuntimeError):
    """Raised when a backend is asked for but cannot be used on this machine."""


def is_cupy_array(x: Any) -> bool:
    """Whether ``x`` is a cupy array, decided from its class's module without importing cupy."""
    return type(x).__module__.split(".")[0] == "cupy"


def to_host(x: Any) -> Any:
    """Return ``x`` as a numpy array (a copy from the device for cupy arrays; as-is otherwise)."""
    if is_cupy_array(x):
        return x.get()
    return x


@dataclass(frozen=True)
class Backend:
    """An array module bound to a dtype.

    Attributes:
        name: ``"numpy"`` or ``"cupy"``.
        xp: the array module.
        dtype: floating dtype used for random matrices and products (float64 by default).
    """

    name: str
    xp: ModuleType
    dtype: np.dtype

    @property
    def is_gpu(self) -> bool:
        """True for the cupy backend."""
        return self.name == "cupy"

    def asarray(self, x: Any) -> Any:
        """Move ``x`` onto this backend with this backend's dtype."""
        return self.xp.asarray(x, dtype=self.dtype)

    def to_host(self, x: Any) -> Any:
        """Return a numpy copy of ``x`` (no copy for numpy arrays)."""
        return to_host(x)

    def rng(self, seed: np.random.SeedSequence) -> Any:
        """A random generator for this backend seeded from ``seed``.

        numpy: ``numpy.random.Generator(PCG64(seed))``, bitwise reproducible on every machine.
        cupy: ``cupy.random.Generator(XORWOW(...))`` seeded with 64 bits drawn from ``seed``;
        reproducible on a given device and cupy version, but not equal to the numpy draws.
        """
        if self.name == "numpy":
            return np.random.Generator(np.random.PCG64(seed))
        state = int(seed.generate_state(1, dtype=np.uint64)[0])
        cp = self.xp
        return cp.random.Generator(cp.random.XORWOW(state))

    def standard_normal(self, rng: Any, shape: tuple[int, ...]) -> Any:
        """N(0, 1) draws of ``shape`` in this backend's dtype."""
        return rng.standard_normal(size=shape, dtype=self.dtype)

    def synchronize(self) -> None:
        """Block until queued device work is done (a no-op on numpy); needed for honest timings."""
        if self.name == "cupy":
            self.xp.cuda.Stream.null.synchronize()

    def describe(self) -> dict[str, str]:
        """Versions and device of this backend, for provenance attributes."""
        info = {"backend": self.name, "dtype": np.dtype(self.dtype).name,
                "array_module_version": str(self.xp.__version__)}
        if self.name == "cupy":
            dev = self.xp.cuda.Device()
            props = self.xp.cuda.runtime.getDeviceProperties(dev.id)
            name = props["name"]
            info["device"] = name.decode() if isinstance(name, bytes) else str(name)
        return info


def _import_cupy() -> ModuleType:
    try:
        cp = importlib.import_module("cupy")
        cp.cuda.runtime.getDeviceCount()
    except Exception as exc:  # ImportError, or a CUDA runtime error with no device
        raise BackendUnavailableError(
            f"backend 'cupy' was asked for but cannot be used here ({type(exc).__name__}: {exc}); "
            "install the 'gpu' extra (pip install 'spikesweep[gpu]') on a machine with a CUDA GPU, "
            "or use backend='numpy'"
        ) from exc
    return cp


def available_backends() -> list[str]:
    """Names of the backends usable on this machine (numpy always; cupy if it imports and sees a GPU)."""
    names = ["numpy"]
    try:
        _import_cupy()
    except BackendUnavailableError:
        pass
    else:
        names.append("cupy")
    return names


def get_backend(name: str = "numpy", dtype: str = "float64") -> Backend:
    """Return the backend called ``name`` ("numpy" or "cupy") with floating ``dtype``.

    Raises:
        ValueError: unknown backend name or dtype (the message lists the valid ones).
        BackendUnavailableError: "cupy" asked for but not importable or no device.
    """
    if dtype not in _DTYPES:
        raise ValueError(f"dtype: {dtype!r} is not supported; choose one of {sorted(_DTYPES)}")
    if name == "numpy":
        return Backend("numpy", np, np.dtype(_DTYPES[dtype]))
    if name == "cupy":
        return Backend("cupy", _import_cupy(), np.dtype(_DTYPES[dtype]))
    raise ValueError(f"backend: {name!r} is not a known backend; choose one of ['cupy', 'numpy']")


@contextlib.contextmanager
def blas_threads(n: int | None) -> Iterator[None]:
    """Limit the BLAS/OpenMP thread pools of this process to ``n`` threads inside the block.

    Oversubscription is the failure this prevents: on a 2-core machine, two processes each
    running a 2-thread OpenBLAS ``eigh`` of a 2000x2000 matrix were 20x slower than with one
    thread each. Workers call this with the number of CPUs Ray gave them. ``None`` leaves the
    pools as they are.
    """
    if n is None:
        yield
        return
    if n < 1:
        raise ValueError(f"blas threads: {n} must be >= 1")
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=int(n)):
        yield


def pin_process_threads(n: int) -> None:
    """Pin BLAS threads for the rest of this process (used once when a worker starts).

    Sets the usual environment variables (honoured by pools created later) and limits the pools
    already loaded through threadpoolctl.
    """
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=int(n))


def blas_info() -> list[dict[str, Any]]:
    """The BLAS/OpenMP libraries loaded in this process with their thread counts (threadpoolctl)."""
    from threadpoolctl import threadpool_info

    keep = ("internal_api", "version", "num_threads", "threading_layer", "architecture")
    return [{k: v for k, v in lib.items() if k in keep} for lib in threadpool_info()]
