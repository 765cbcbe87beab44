"""``run_block(spec, block) -> BlockResult``: one task, a pure function of its inputs (no Ray).

For every point of the block it draws the random objects from the point's seed (see
:func:`sweep.grid.point_seed`), runs the experiment through ``kernels``, measures every layer,
and puts the theory's prediction beside it. Points of a block that share a seed share their
draws: the input noise is drawn once per seed and reused across spike strengths and
activations; network weights are regenerated from the same seed, so they are identical too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kernels.backend import Backend, get_backend
from kernels.seeding import derive
from sweep.grid import FEATURE_BATCH_BYTES, Block, _deep_sizes, _one_step_sizes, point_seed
from sweep.schema import empty_block
from sweep.spec import Spec

__all__ = ["BlockResult", "run_block", "theory_for_point"]


@dataclass
class BlockResult:
    """Values for one block: arrays shaped like the block (see :func:`sweep.schema.empty_block`).

    Attributes:
        block: the block computed.
        values: variable name -> array over the block's points (and trailing dims).
        wall_s: seconds spent computing the block.
        info: provenance of the worker (host, pid, BLAS threads, backend).
    """

    block: Block
    values: dict[str, np.ndarray]
    wall_s: float
    info: dict[str, Any] = field(default_factory=dict)


# independent streams of a point seed, named so a draw never depends on call order
_INPUT, _WEIGHTS, _EIGENSOLVER, _TRAINING = 0, 1, 2, 3


def _spikes(spec: Spec, values: dict) -> tuple[float, ...]:
    return spec.spikes if spec.spikes is not None else (float(values["spike"]),)


def theory_for_point(spec: Spec, values: dict) -> dict[str, Any]:
    """The theory's prediction at one grid point (replicate ignored; cached levels make it cheap)."""
    from kernels import theory

    if spec.experiment == "deep-ck":
        pred = theory.deep_ck_prediction(
            values["activation"], values["input_ratio"], [values["width_ratio"]] * spec.depth,
            _spikes(spec, values), input_model=values["input"],
        )
        # trained networks and inputs off the unit sphere are outside the theory's assumptions
        valid = bool(pred.valid) and float(values["lr"]) == 0.0 and float(values["input_scale"]) == 1.0
        return {
            "theory_edge": pred.edge, "theory_spike": pred.location.T,
            "theory_align": pred.alignment.T, "theory_survives": pred.survives.T.astype(np.int8),
            "theory_threshold": pred.threshold, "theory_valid": np.int8(valid),
        }
    n, d, width, _ = _one_step_sizes(values)
    lr_eff = float(values["lr"]) * width ** float(values["lr_scaling"])
    pred = theory.one_step_prediction(values["activation"], values["teacher"], n, d, width, lr_eff,
                                      noise_sd=values["noise"])
    return {
        "theory_edge": np.array([pred.edge]), "theory_spike": np.array([[pred.spike]]),
        "theory_align": np.array([[pred.alignment]]),
        "theory_survives": np.array([[int(pred.exists)]], dtype=np.int8),
        "theory_valid": np.int8(bool(pred.valid) and int(values["steps"]) >= 1),
        "lr_effective": np.float64(lr_eff), "theory_theta1": np.float64(pred.theta1),
    }


_MEASURED_NAMES = ("eigval", "edge_emp", "n_outliers", "overlap", "align", "spike_emp", "detected", "hist")


class _LayerRecords:
    """Per-layer measurements of one point, stacked over layers at the end."""

    def __init__(self, spec: Spec, signals: np.ndarray, seed: np.random.SeedSequence, backend: Backend):
        self.spec, self.signals, self.seed, self.backend = spec, signals, seed, backend
        self.out: dict[str, list] = {name: [] for name in _MEASURED_NAMES}

    def add(self, layer: int, feats: Any) -> None:
        """Measure layer ``layer`` from its features (d_l x n) and keep the numbers."""
        from kernels.observables import measure_layer

        spec = self.spec
        hist_range = spec_hist_range(spec, layer) if spec.measure.histogram_bins else None
        m = measure_layer(feats, self.signals, spec.measure.top_k, hist_bins=spec.measure.histogram_bins,
                          hist_range=hist_range, method=spec.measure.eigensolver,
                          seed=derive(self.seed, _EIGENSOLVER, layer), backend=self.backend)
        for name in _MEASURED_NAMES[:-1]:
            value = getattr(m, name)
            self.out[name].append(value.astype(np.int8) if name == "detected" else value)
        if m.hist is not None:
            self.out["hist"].append(m.hist)

    def arrays(self) -> dict[str, np.ndarray]:
        """The measurements with a leading layer dimension."""
        return {name: np.asarray(v) for name, v in self.out.items() if v}


def _deep_group(spec: Spec, group: list[dict], seed: np.random.SeedSequence,
                backend: Backend) -> list[dict[str, np.ndarray]]:
    """Measure points that share one seed (they differ in spike, activation or lr).

    The input noise is drawn once; untrained points go through the layers together
    (``forward_batch`` draws each W_l once for all of them, bitwise equal to one-by-one
    passes), in batches whose features fit in :data:`sweep.grid.FEATURE_BATCH_BYTES`.
    """
    from kernels.data import draw_input_noise, make_input
    from kernels.network import forward_batch, layer_widths

    first = group[0]
    n, d0, d = _deep_sizes(first)
    noise = draw_input_noise(n, d0, spec.n_signals, derive(seed, _INPUT), backend, model=first["input"])
    widths = layer_widths(n, [first["width_ratio"]] * spec.depth)
    results: list[dict[str, np.ndarray] | None] = [None] * len(group)
    untrained = [i for i, v in enumerate(group) if float(v["lr"]) == 0.0]
    batch = max(1, int(FEATURE_BATCH_BYTES // (2 * max(d0, d) * n * backend.dtype.itemsize)))
    for lo in range(0, len(untrained), batch):
        idx = untrained[lo:lo + batch]
        samples = [make_input(noise, _spikes(spec, group[i]), backend,
                              noise_scale=float(group[i]["input_scale"])) for i in idx]
        records = [_LayerRecords(spec, smp.signals, seed, backend) for smp in samples]
        inputs = [smp.X for smp in samples]
        del samples  # the batch holds two layers of features at a time, no more
        layers = forward_batch(inputs, widths, [group[i]["activation"] for i in idx], derive(seed, _WEIGHTS), backend)
        del inputs
        for layer, layer_feats in enumerate(layers):
            for rec, feats in zip(records, layer_feats, strict=True):
                rec.add(layer, feats)
            del layer_feats
        for rec, i in zip(records, idx, strict=True):
            results[i] = rec.arrays()
    for i, values in enumerate(group):
        if results[i] is None:
            results[i] = _trained_point(spec, values, noise, widths, seed, backend)
    return results  # type: ignore[return-value]


def _trained_point(spec: Spec, values: dict, noise: Any, widths: tuple[int, ...],
                   seed: np.random.SeedSequence, backend: Backend) -> dict[str, np.ndarray]:
    """Train (lr > 0) the deep network on the mixture's labels, then measure every layer."""
    from kernels.data import make_input
    from kernels.network import initial_weights
    from kernels.training import forward_with_weights, train_deep

    sample = make_input(noise, _spikes(spec, values), backend,
                        noise_scale=float(values["input_scale"]))
    # labels: the class signs of the first signal (balanced +-1/sqrt(n) contrasts)
    labels = np.sign(sample.signals[0])
    start = initial_weights(sample.X.shape[0], widths, derive(seed, _WEIGHTS), backend)
    weights = train_deep(sample.X, labels, start, values["activation"], float(values["lr"]),
                         int(values["steps"]), backend, seed=derive(seed, _TRAINING))
    rec = _LayerRecords(spec, sample.signals, seed, backend)
    for layer, feats in enumerate(forward_with_weights(sample.X, weights, values["activation"], backend)):
        rec.add(layer, feats)
    return rec.arrays()


_HIST_RANGES: dict[tuple[str, int], tuple[float, float]] = {}


def spec_hist_range(spec: Spec, layer: int) -> tuple[float, float]:
    """Histogram range of a layer: [0, 1.3 x the largest predicted edge or spike in the study].

    One range per layer for the whole cube, so histograms of different points share bins.
    """
    from sweep.store import histogram_edges

    key = (spec.hash, layer)
    if key not in _HIST_RANGES:
        edges = histogram_edges(spec)
        for ell in range(edges.shape[0]):
            _HIST_RANGES[(spec.hash, ell)] = (float(edges[ell, 0]), float(edges[ell, -1]))
    return _HIST_RANGES[key]


def _one_step_point(spec: Spec, values: dict, seed: np.random.SeedSequence, backend: Backend,
                    data_cache: dict, theory: dict) -> dict[str, np.ndarray]:
    from kernels import training
    from kernels.theory import one_step_prediction

    n, d, width, n_test = _one_step_sizes(values)
    key = (seed.spawn_key, values["teacher"], values["noise"])
    if key not in data_cache:
        data_cache.clear()
        data_cache[key] = training.draw_teacher_student(
            n, d, width, n_test, values["teacher"], float(values["noise"]), derive(seed, _INPUT), backend)
    lr_eff = float(theory["lr_effective"])
    m = training.measure_one_step(data_cache[key], values["activation"], lr_eff,
                                  int(values["steps"]), spec.measure.top_k, backend,
                                  seed=derive(seed, _EIGENSOLVER))
    realised = one_step_prediction(values["activation"], values["teacher"], n, d, width, lr_eff,
                                   noise_sd=values["noise"], theta1=m.theta1_realised)
    return {
        "eigval": m.eigval[None, :], "edge_emp": np.array([m.edge_emp]),
        "n_outliers": np.array([m.n_outliers]),
        "overlap": np.full((1, spec.measure.top_k, 1), np.nan),
        "align": np.array([[m.align_label]]), "align_unit": np.array([[m.align_label_unit]]),
        "spike_emp": np.array([[m.eigval[0]]]),
        "detected": np.array([[int(m.n_outliers >= 1)]], dtype=np.int8),
        "theta1_realised": np.float64(m.theta1_realised), "beta_align": np.float64(m.beta_align),
        "loss_before": np.float64(m.loss_before), "loss_after": np.float64(m.loss_after),
        "theory_spike_realised": np.array([[realised.spike]]),
        "theory_align_realised": np.array([[realised.alignment]]),
    }


def run_block(spec: Spec, block: Block, backend: Backend | None = None) -> BlockResult:
    """Compute every point of ``block``: measurements, then theory once per grid point.

    Deterministic: the numbers depend only on the spec and the point indices, not on the
    blocking (points sharing a seed are grouped only to share their draws).
    """
    t0 = time.perf_counter()
    backend = backend or get_backend(spec.run.backend, spec.run.dtype)
    values_out = empty_block(spec, block.shape)
    theory_cache: dict[tuple, dict] = {}
    groups: dict[tuple, list[tuple[tuple[int, ...], dict]]] = {}
    for point in block.points():
        local = tuple(p - s for p, s in zip(point, block.start, strict=True))
        values = spec.values_at(point)
        if point[:-1] not in theory_cache:
            theory_cache[point[:-1]] = theory_for_point(spec, values)
        for name, arr in theory_cache[point[:-1]].items():
            values_out[name][local[:-1]] = arr
        seed = point_seed(spec, values)
        groups.setdefault((seed.spawn_key, values.get("input"), values.get("teacher"),
                           values.get("noise")), []).append((local, values))
    data_cache: dict = {}
    for members in groups.values():
        seed = point_seed(spec, members[0][1])
        if spec.experiment == "deep-ck":
            measured = _deep_group(spec, [v for _, v in members], seed, backend)
        else:
            measured = [_one_step_point(spec, v, seed, backend, data_cache,
                                        theory_cache[_grid_key(block, local)])
                        for local, v in members]
        for (local, _), result in zip(members, measured, strict=True):
            for name, arr in result.items():
                values_out[name][local] = arr
    _check_finite_results(values_out)
    return BlockResult(block, values_out, time.perf_counter() - t0)


def _grid_key(block: Block, local: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(s + i for s, i in zip(block.start, local, strict=True))[:-1]


def _check_finite_results(values: dict[str, np.ndarray]) -> None:
    """Fail the block on an infinite eigenvalue (a broken solve) so the cube stays clean."""
    for name in ("eigval", "edge_emp"):
        arr = values.get(name)
        if arr is not None and np.isinf(arr).any():
            raise FloatingPointError(f"{name}: non-finite values in the block's results")
