"""Numerics for spiked conjugate-kernel spectra: inputs, random networks, eigensolvers, theory.

Pure numpy/scipy (cupy only behind :mod:`kernels.backend`); never imports ray, xarray or zarr.
The theory lives in :mod:`kernels.theory`, the gradient-step experiments in :mod:`kernels.training`.
"""

from kernels.activations import Activation, get_activation, registered_activations
from kernels.backend import Backend, blas_threads, get_backend
from kernels.data import InputNoise, InputSample, draw_input_noise, make_input
from kernels.eigen import NonFiniteError, all_eigenvalues, top_eigenpairs
from kernels.network import forward, forward_batch, layer_widths
from kernels.observables import LayerMeasurement, measure_layer

__all__ = [
    "Activation",
    "Backend",
    "InputNoise",
    "InputSample",
    "LayerMeasurement",
    "NonFiniteError",
    "all_eigenvalues",
    "blas_threads",
    "draw_input_noise",
    "forward",
    "forward_batch",
    "get_activation",
    "get_backend",
    "layer_widths",
    "make_input",
    "measure_layer",
    "registered_activations",
    "top_eigenpairs",
]
