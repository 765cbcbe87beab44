"""Numerics for spiked conjugate-kernel spectra: inputs, random networks, eigensolvers, theory.

Pure numpy/scipy (cupy only behind :mod:`kernels.backend`); never imports ray, xarray or zarr.
"""

from kernels.activations import Activation, get_activation, registered_activations
from kernels.backend import Backend, blas_threads, get_backend

__all__ = [
    "Activation",
    "Backend",
    "blas_threads",
    "get_activation",
    "get_backend",
    "registered_activations",
]
