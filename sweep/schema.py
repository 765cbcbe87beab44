"""The result cube's variables: dimensions, dtype, fill value, long_name and units.

This table is the cube contract that notebooks, ``sweep query`` and ``sweep map`` rely on. Each
variable's leading dimensions are the study's point dimensions (axes, then ``replicate``);
theory variables drop ``replicate`` (computed once per grid point). Trailing dimensions are among
``layer``, ``k``, ``signal`` and ``bin``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sweep.spec import Spec

__all__ = ["STATUS_DONE", "STATUS_FAILED", "STATUS_PENDING", "VarDef", "variables"]

STATUS_PENDING, STATUS_DONE, STATUS_FAILED = 0, 1, 2


@dataclass(frozen=True)
class VarDef:
    """One cube variable.

    Attributes:
        trailing: dimensions after the point dimensions.
        dtype: numpy dtype string ("str" for variable-length UTF-8).
        fill: value before the variable is computed.
        per_replicate: whether the variable has the ``replicate`` dimension.
        long_name, units: CF-style attributes.
    """

    trailing: tuple[str, ...]
    dtype: str
    fill: object
    per_replicate: bool
    long_name: str
    units: str = ""

    def dims(self, spec: Spec) -> tuple[str, ...]:
        """Full dimension names for ``spec``."""
        lead = spec.dims if self.per_replicate else tuple(spec.axes)
        return (*lead, *self.trailing)


_NAN = float("nan")

_LEDGER = {
    "status": VarDef((), "int8", STATUS_PENDING, True, "task status (0 pending, 1 done, 2 failed)"),
    "attempts": VarDef((), "int16", 0, True, "attempts made on this point's block"),
    "wall_s": VarDef((), "float64", _NAN, True, "wall time of the block that computed this point", "s"),
    "error": VarDef((), "str", "", True, "error of the last failed attempt (empty if none)"),
}

_MEASURED = {
    "eigval": VarDef(("layer", "k"), "float64", _NAN, True, "top-k eigenvalues of the conjugate kernel K_l"),
    "edge_emp": VarDef(("layer",), "float64", _NAN, True, "empirical bulk right edge (no theory used)"),
    "n_outliers": VarDef(("layer",), "int16", -1, True, "number of separated outliers (empirical detector)"),
    "overlap": VarDef(("layer", "k", "signal"), "float64", _NAN, True,
                      "squared overlap of eigenvector k with signal vector"),
    "align": VarDef(("layer", "signal"), "float64", _NAN, True,
                    "squared overlap of the eigenvector matched to the signal"),
    "spike_emp": VarDef(("layer", "signal"), "float64", _NAN, True,
                        "eigenvalue of the eigenvector matched to the signal"),
    "detected": VarDef(("layer", "signal"), "int8", -1, True,
                       "matched eigenvalue is a separated outlier (1 yes, 0 no, -1 not run)"),
}

_THEORY = {
    "theory_edge": VarDef(("layer",), "float64", _NAN, False, "predicted bulk right edge E_l"),
    "theory_spike": VarDef(("layer", "signal"), "float64", _NAN, False,
                           "predicted spike location (NaN where absorbed)"),
    "theory_align": VarDef(("layer", "signal"), "float64", _NAN, False,
                           "predicted squared alignment with the signal (0 where absorbed)"),
    "theory_survives": VarDef(("layer", "signal"), "int8", -1, False,
                              "predicted spike survives to this layer (1 yes, 0 absorbed)"),
    "theory_valid": VarDef((), "int8", -1, False, "theory applies at this point (1 yes, 0 no)"),
}

_DEEP_ONLY = {
    "theory_threshold": VarDef(("layer",), "float64", _NAN, False,
                               "critical spike strength for survival to this layer"),
}

_ONE_STEP_ONLY = {
    "align_unit": VarDef(("layer", "signal"), "float64", _NAN, True,
                         "squared overlap of the top eigenvector with the unit test-label vector"),
    "theta1_realised": VarDef((), "float64", _NAN, True, "realised rank-one size s_max(W_T - W_0)"),
    "beta_align": VarDef((), "float64", _NAN, True,
                         "squared overlap of W_T - W_0's top left singular vector with beta*"),
    "loss_before": VarDef((), "float64", _NAN, True, "training loss before the steps"),
    "loss_after": VarDef((), "float64", _NAN, True, "training loss after the steps"),
    "lr_effective": VarDef((), "float64", _NAN, False, "learning rate used, eta0 * N^a"),
    "theory_theta1": VarDef((), "float64", _NAN, False, "predicted rank-one size theta1 (Theorem 6)"),
    "theory_spike_realised": VarDef(("layer", "signal"), "float64", _NAN, True,
                                    "predicted spike location at the realised rank-one size"),
    "theory_align_realised": VarDef(("layer", "signal"), "float64", _NAN, True,
                                    "predicted squared label alignment at the realised rank-one size"),
}


def variables(spec: Spec) -> dict[str, VarDef]:
    """All variables of a cube for ``spec`` (measured, theory, ledger), in a fixed order."""
    out = dict(_MEASURED)
    if spec.measure.histogram_bins and spec.experiment == "deep-ck":
        out["hist"] = VarDef(("layer", "bin"), "float64", _NAN, True,
                             "spectrum density histogram of K_l (eigenvalues per unit, over n)")
    out.update(_THEORY)
    out.update(_DEEP_ONLY if spec.experiment == "deep-ck" else _ONE_STEP_ONLY)
    out.update(_LEDGER)
    return out


def empty_block(spec: Spec, block_shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Arrays filled with each variable's fill value, shaped for one block (ledger excluded)."""
    sizes = {"layer": len(spec.layers), "k": spec.measure.top_k, "signal": spec.n_signals,
             "bin": spec.measure.histogram_bins}
    out = {}
    for name, v in variables(spec).items():
        if name in _LEDGER:
            continue
        lead = block_shape if v.per_replicate else block_shape[:-1]
        shape = (*lead, *(sizes[d] for d in v.trailing))
        out[name] = np.full(shape, v.fill, dtype=v.dtype)
    return out
