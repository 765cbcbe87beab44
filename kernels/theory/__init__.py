"""Limits of spiked conjugate-kernel spectra (THEORY.md): bulk, spikes through depth, one step.

Pure numpy/scipy on the host. The sweep calls :func:`deep_ck_prediction`,
:func:`critical_spikes`, :func:`critical_window`, :func:`one_step_prediction`, :func:`critical_learning_rate` and
:func:`bulk_density`; the level objects and propagation functions are exposed for notebooks and
for plug-in input spectra (:class:`EmpiricalLevel` + :func:`build_chain` +
:func:`propagate_spikes`).
"""

from kernels.theory.api import (
    DeepCKPrediction,
    bulk_atom_mass,
    bulk_density,
    critical_spikes,
    critical_window,
    deep_ck_prediction,
    deep_levels,
)
from kernels.theory.chain import build_chain, cache_clear, gaussian_chain
from kernels.theory.inputs import INPUT_MODELS, input_spikes, input_threshold, spike_strength_at
from kernels.theory.levels import (
    DeformedLevel,
    EmpiricalLevel,
    IsotropicLevel,
    Level,
    MarchenkoPasturLevel,
)
from kernels.theory.one_step import (
    OneStepPrediction,
    critical_learning_rate,
    one_step_prediction,
)
from kernels.theory.spikes import SpikePaths, propagate_spikes
from kernels.theory.thresholds import (
    critical_locations,
    critical_spikes_bisect,
    critical_spikes_for_chain,
)
from kernels.theory.window import edge_density_coefficient, edge_fluctuation_scale

__all__ = [
    "INPUT_MODELS",
    "DeepCKPrediction",
    "DeformedLevel",
    "EmpiricalLevel",
    "IsotropicLevel",
    "Level",
    "MarchenkoPasturLevel",
    "OneStepPrediction",
    "SpikePaths",
    "build_chain",
    "bulk_atom_mass",
    "bulk_density",
    "cache_clear",
    "critical_learning_rate",
    "critical_locations",
    "critical_spikes",
    "critical_spikes_bisect",
    "critical_window",
    "critical_spikes_for_chain",
    "deep_ck_prediction",
    "deep_levels",
    "edge_density_coefficient",
    "edge_fluctuation_scale",
    "gaussian_chain",
    "input_spikes",
    "input_threshold",
    "one_step_prediction",
    "propagate_spikes",
    "spike_strength_at",
]
