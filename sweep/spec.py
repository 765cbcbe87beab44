"""Study files (TOML) -> a validated, typed, hashable :class:`Spec`.

Everything that can be wrong with a study is found here, before a store is created or a worker
starts, and reported as one :class:`SpecError` line naming the key: unknown sections or keys,
wrong types, empty or duplicate axis values, unknown activations, impossible sizes and blocks
whose matrices would not fit in a worker's memory.

Axis values may be a list, ``{linspace = [start, stop, num]}``, ``{geomspace = [start, stop, num]}``
(a constant ratio from start to stop, both > 0), ``{logspace = [start, stop, num]}`` (base-10
exponents, as numpy) or ``{range = [start, stop, step]}`` (integers, stop excluded).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sweep.params import ParamDef, SpecError, params_for

__all__ = ["MeasureSpec", "RunSpec", "Spec", "SpecError", "load_spec", "parse_spec"]

_SECTIONS = {"study", "fixed", "axes", "measure", "run"}
_STUDY_KEYS = {"name", "experiment", "seed", "replicates", "description"}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_MAX_POINTS = 2_000_000


@dataclass(frozen=True)
class MeasureSpec:
    """What is measured at each point.

    Attributes:
        top_k: eigenvalues kept per layer (the cube's ``k`` dimension).
        histogram_bins: bins of the full-spectrum histogram (0: none; needs a dense solve).
        eigensolver: "lanczos" (top-k, default) or "dense" (LAPACK eigh, reference).
    """

    top_k: int = 6
    histogram_bins: int = 0
    eigensolver: str = "lanczos"


@dataclass(frozen=True)
class RunSpec:
    """How the sweep runs; only ``block``, ``backend`` and ``dtype`` change the numbers or layout.

    Attributes:
        block: points batched into one task (= one zarr chunk), per dimension; default 1.
        backend, dtype: array backend ("numpy" or "cupy") and float dtype.
        workers: actors to start (None: as many as the CPUs allow).
        cpus_per_actor: CPUs (= pinned BLAS threads) per actor.
        gpus_per_actor: GPU fraction per actor (cupy backend).
        max_attempts: tries per block before it is recorded failed.
        timeout_s: wall-clock limit per block attempt.
        memory_gb: memory budget per actor for the pre-flight (None: machine memory / workers).
    """

    block: dict[str, int] = field(default_factory=dict)
    backend: str = "numpy"
    dtype: str = "float64"
    workers: int | None = None
    cpus_per_actor: int = 1
    gpus_per_actor: float = 0.0
    max_attempts: int = 3
    timeout_s: float = 3600.0
    memory_gb: float | None = None


@dataclass(frozen=True)
class Spec:
    """A validated study.

    Attributes:
        name, experiment, seed, replicates, description: from ``[study]``.
        fixed: scalar parameter values (defaults filled in), by name.
        axes: grid axes in file order, each a tuple of values.
        spikes: per-signal strengths when given as ``fixed.spikes = [...]`` (deep-ck), else None.
        measure, run: see :class:`MeasureSpec` and :class:`RunSpec`.
        text: the study file's text (stored in the cube).
    """

    name: str
    experiment: str
    seed: int
    replicates: int
    description: str
    fixed: dict[str, Any]
    axes: dict[str, tuple[Any, ...]]
    spikes: tuple[float, ...] | None
    measure: MeasureSpec
    run: RunSpec
    text: str = ""

    @property
    def params(self) -> dict[str, ParamDef]:
        """The parameter table of this experiment."""
        return params_for(self.experiment)

    @property
    def depth(self) -> int:
        """Deepest layer measured (deep-ck), or 1 (one-step: the trained layer)."""
        return int(self.fixed["depth"]) if self.experiment == "deep-ck" else 1

    @property
    def layers(self) -> tuple[int, ...]:
        """Coordinate of the ``layer`` dimension."""
        return tuple(range(self.depth + 1)) if self.experiment == "deep-ck" else (1,)

    @property
    def n_signals(self) -> int:
        """Size of the ``signal`` dimension."""
        return len(self.spikes) if self.spikes is not None else 1

    @property
    def dims(self) -> tuple[str, ...]:
        """Point dimensions: the axes in file order, then ``replicate``."""
        return (*self.axes, "replicate")

    @property
    def shape(self) -> tuple[int, ...]:
        """Sizes of :attr:`dims`."""
        return (*(len(v) for v in self.axes.values()), self.replicates)

    def values_at(self, index: tuple[int, ...]) -> dict[str, Any]:
        """All parameter values at a point index over :attr:`dims` (replicate included)."""
        vals = dict(self.fixed)
        for (name, values), i in zip(self.axes.items(), index, strict=False):
            vals[name] = values[i]
        vals["replicate"] = index[-1]
        return vals

    def all_values(self, name: str) -> tuple[Any, ...]:
        """Every value a parameter takes in the study (axis values or the one fixed value)."""
        return self.axes[name] if name in self.axes else (self.fixed[name],)

    def canonical(self) -> dict[str, Any]:
        """The parts of the spec that determine the numbers and the layout (hashed).

        Fixed parameters at their defaults are left out, so a parameter added later with a
        default that reproduces the old behaviour keeps existing stores resumable.
        """
        params = self.params
        fixed = {k: v for k, v in self.fixed.items() if k not in params or v != params[k].default}
        return {
            "name": self.name, "experiment": self.experiment, "seed": self.seed,
            "replicates": self.replicates, "fixed": fixed,
            "axes": {k: list(v) for k, v in self.axes.items()},
            "spikes": None if self.spikes is None else list(self.spikes),
            "measure": vars(self.measure),
            "run": {"block": self.run.block, "backend": self.run.backend, "dtype": self.run.dtype},
        }

    @property
    def hash(self) -> str:
        """Stable content hash (sha256 of the canonical JSON, first 16 hex digits)."""
        blob = json.dumps(self.canonical(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def load_spec(path: str | Path) -> Spec:
    """Read and validate the study file at ``path``."""
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"study file {str(p)!r} does not exist")
    return parse_spec(p.read_text(), source=str(p))


def parse_spec(text: str, source: str = "<study>") -> Spec:
    """Parse and validate a study file's TOML text."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{source}: not valid TOML ({exc})") from None
    unknown = set(raw) - _SECTIONS
    if unknown:
        raise SpecError(f"{sorted(unknown)[0]}: unknown section; sections are {sorted(_SECTIONS)}")
    for sec in _SECTIONS & set(raw):
        if not isinstance(raw[sec], dict):
            raise SpecError(f"{sec}: must be a table ([{sec}])")
    study = _parse_study(raw.get("study", {}))
    params = params_for(study["experiment"])
    fixed_raw = dict(raw.get("fixed", {}))
    axes_raw = dict(raw.get("axes", {}))
    spikes = _pop_spikes(study["experiment"], fixed_raw, axes_raw)
    # depth is one integer even under [axes] (it is the `layer` dimension, not a grid axis)
    if "depth" in axes_raw:
        if "depth" in fixed_raw:
            raise SpecError("axes.depth: given in both [fixed] and [axes]; keep one")
        if isinstance(axes_raw["depth"], list | dict):
            raise SpecError("axes.depth: give one integer L; layers 0..L are all measured in one "
                            "pass (the `layer` dimension)")
        fixed_raw["depth"] = axes_raw.pop("depth")
    for key in set(fixed_raw) & set(axes_raw):
        raise SpecError(f"axes.{key}: given in both [fixed] and [axes]; keep one")
    fixed = {k: _scalar(f"fixed.{k}", v, _param(params, "fixed", k)) for k, v in fixed_raw.items()}
    axes = {k: _axis(f"axes.{k}", v, _param(params, "axes", k)) for k, v in axes_raw.items()}
    for name, pdef in params.items():
        if name in fixed or name in axes:
            continue
        if name == "spike" and spikes is not None:
            continue
        if pdef.default is None:
            raise SpecError(f"fixed.{name}: required ({pdef.doc}); give it in [fixed] or [axes]")
        fixed[name] = pdef.default
    if study["experiment"] == "deep-ck" and "depth" in fixed and fixed["depth"] > 64:
        raise SpecError("fixed.depth: must be <= 64")
    measure = _parse_measure(raw.get("measure", {}))
    run = _parse_run(raw.get("run", {}), [*axes, "replicate"])
    spec = Spec(study["name"], study["experiment"], study["seed"], study["replicates"],
                study.get("description", ""), fixed, axes, spikes, measure, run, text)
    _check_sizes(spec)
    return spec


def _parse_study(sec: dict[str, Any]) -> dict[str, Any]:
    unknown = set(sec) - _STUDY_KEYS
    if unknown:
        raise SpecError(f"study.{sorted(unknown)[0]}: unknown key; keys are {sorted(_STUDY_KEYS)}")
    for key in ("name", "experiment"):
        if key not in sec:
            raise SpecError(f"study.{key}: required")
        if not isinstance(sec[key], str):
            raise SpecError(f"study.{key}: must be a string")
    if not _NAME_RE.match(sec["name"]):
        raise SpecError("study.name: use 1-64 letters, digits, '.', '_' or '-' (it names the store)")
    params_for(sec["experiment"])
    out = dict(sec)
    out["seed"] = _int("study.seed", sec.get("seed", 0), lo=0)
    out["replicates"] = _int("study.replicates", sec.get("replicates", 1), lo=1)
    if not isinstance(out.get("description", ""), str):
        raise SpecError("study.description: must be a string")
    return out


def _pop_spikes(experiment: str, fixed: dict[str, Any], axes: dict[str, Any]) -> tuple[float, ...] | None:
    if "spikes" in axes:
        raise SpecError("axes.spikes: several signals are one fixed list (fixed.spikes); "
                        "sweep one signal's strength with axes.spike")
    if "spikes" not in fixed:
        return None
    if experiment != "deep-ck":
        raise SpecError("fixed.spikes: only the deep-ck experiment has input signals")
    vals = fixed.pop("spikes")
    if not isinstance(vals, list) or not vals:
        raise SpecError("fixed.spikes: must be a non-empty list of spike strengths")
    out = tuple(_float(f"fixed.spikes[{i}]", v) for i, v in enumerate(vals))
    if any(v < 0 for v in out):
        raise SpecError("fixed.spikes: strengths must be >= 0")
    if "spike" in fixed or "spike" in axes:
        raise SpecError("fixed.spikes: give either spikes (several signals) or spike, not both")
    return out


def _param(params: dict[str, ParamDef], section: str, key: str) -> ParamDef:
    if key not in params:
        raise SpecError(f"{section}.{key}: unknown parameter; this experiment takes {sorted(params)}")
    pdef = params[key]
    if section == "axes" and not pdef.axis:
        raise SpecError(f"axes.{key}: cannot be a grid axis; put one value in [fixed]")
    return pdef


def _int(key: str, v: Any, lo: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int | float) or (isinstance(v, float) and not v.is_integer()):
        raise SpecError(f"{key}: must be an integer, got {v!r}")
    if lo is not None and v < lo:
        raise SpecError(f"{key}: must be >= {lo}, got {v!r}")
    return int(v)


def _float(key: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise SpecError(f"{key}: must be a number, got {v!r}")
    if not math.isfinite(v):
        raise SpecError(f"{key}: must be finite, got {v!r}")
    return float(v)


def _scalar(key: str, v: Any, pdef: ParamDef) -> Any:
    if pdef.kind is int:
        out: Any = _int(key, v)
    elif pdef.kind is float:
        out = _float(key, v)
    else:
        if not isinstance(v, str):
            raise SpecError(f"{key}: must be a string, got {v!r}")
        out = v
    if pdef.check is not None:
        reason = pdef.check(out)
        if reason:
            raise SpecError(f"{key}: {out!r} {reason}" if not reason.startswith("activation")
                            else f"{key}: {reason}")
    if isinstance(out, str) and key.endswith(("activation", "teacher")):
        from kernels.activations import get_activation

        out = get_activation(out).name
    return out


def _axis(key: str, v: Any, pdef: ParamDef) -> tuple[Any, ...]:
    if isinstance(v, dict):
        values = _generated(key, v)
    elif isinstance(v, list):
        values = v
    else:
        raise SpecError(f"{key}: an axis is a list of values or a {{linspace|geomspace|logspace|range = [...]}} "
                        f"table, got {v!r}; put a single value in [fixed]")
    if not values:
        raise SpecError(f"{key}: empty axis")
    out = tuple(_scalar(f"{key}[{i}]", x, pdef) for i, x in enumerate(values))
    if pdef.kind is float:
        out = tuple(round(x, 12) for x in out)
    if len(set(out)) != len(out):
        dup = next(x for x in out if out.count(x) > 1)
        raise SpecError(f"{key}: duplicate value {dup!r}")
    return out


def _generated(key: str, v: dict[str, Any]) -> list[Any]:
    if len(v) != 1 or next(iter(v)) not in ("linspace", "geomspace", "logspace", "range"):
        raise SpecError(f"{key}: a generated axis is one of "
                        f"{{linspace|geomspace|logspace|range = [a, b, n]}}")
    kind, args = next(iter(v.items()))
    if not isinstance(args, list) or len(args) != 3:
        raise SpecError(f"{key}.{kind}: needs three numbers [start, stop, num|step]")
    if kind == "range":
        a, b, s = (_int(f"{key}.range[{i}]", x) for i, x in enumerate(args))
        if s == 0:
            raise SpecError(f"{key}.range: step must not be 0")
        return list(range(a, b, s))
    a, b = _float(f"{key}.{kind}[0]", args[0]), _float(f"{key}.{kind}[1]", args[1])
    num = _int(f"{key}.{kind}[2]", args[2], lo=1)
    if kind == "geomspace" and not (a > 0 and b > 0):
        raise SpecError(f"{key}.geomspace: start and stop must be > 0, got {a} and {b}")
    make = {"linspace": np.linspace, "geomspace": np.geomspace, "logspace": np.logspace}[kind]
    arr = make(a, b, num)
    return [float(x) for x in arr]


def _parse_measure(sec: dict[str, Any]) -> MeasureSpec:
    allowed = {"top_k", "histogram_bins", "eigensolver"}
    unknown = set(sec) - allowed
    if unknown:
        raise SpecError(f"measure.{sorted(unknown)[0]}: unknown key; keys are {sorted(allowed)}")
    top_k = _int("measure.top_k", sec.get("top_k", 6), lo=1)
    bins = _int("measure.histogram_bins", sec.get("histogram_bins", 0), lo=0)
    solver = sec.get("eigensolver", "lanczos")
    if solver not in ("lanczos", "dense"):
        raise SpecError(f"measure.eigensolver: {solver!r} must be 'lanczos' or 'dense'")
    return MeasureSpec(top_k, bins, solver)


def _parse_run(sec: dict[str, Any], dims: list[str]) -> RunSpec:
    allowed = set(RunSpec.__dataclass_fields__)
    unknown = set(sec) - allowed
    if unknown:
        raise SpecError(f"run.{sorted(unknown)[0]}: unknown key; keys are {sorted(allowed)}")
    block = sec.get("block", {})
    if not isinstance(block, dict):
        raise SpecError("run.block: must be a table like { spike = 13 }")
    for dim, size in block.items():
        if dim not in dims:
            raise SpecError(f"run.block.{dim}: not a dimension of this study; dimensions are {dims}")
        _int(f"run.block.{dim}", size, lo=1)
    backend = sec.get("backend", "numpy")
    if backend not in ("numpy", "cupy"):
        raise SpecError(f"run.backend: {backend!r} must be 'numpy' or 'cupy'")
    dtype = sec.get("dtype", "float64")
    if dtype not in ("float64", "float32"):
        raise SpecError(f"run.dtype: {dtype!r} must be 'float64' or 'float32'")
    workers = sec.get("workers")
    if workers is not None:
        workers = _int("run.workers", workers, lo=1)
    gpus = _float("run.gpus_per_actor", sec.get("gpus_per_actor", 0.0))
    if gpus < 0:
        raise SpecError("run.gpus_per_actor: must be >= 0")
    if backend == "cupy" and gpus == 0:
        raise SpecError("run.gpus_per_actor: the cupy backend needs a GPU fraction > 0")
    timeout = _float("run.timeout_s", sec.get("timeout_s", 3600.0))
    if timeout <= 0:
        raise SpecError("run.timeout_s: must be > 0")
    mem = sec.get("memory_gb")
    if mem is not None:
        mem = _float("run.memory_gb", mem)
        if mem <= 0:
            raise SpecError("run.memory_gb: must be > 0")
    return RunSpec(
        block={k: int(v) for k, v in block.items()}, backend=backend, dtype=dtype, workers=workers,
        cpus_per_actor=_int("run.cpus_per_actor", sec.get("cpus_per_actor", 1), lo=1),
        gpus_per_actor=gpus, max_attempts=_int("run.max_attempts", sec.get("max_attempts", 3), lo=1),
        timeout_s=timeout, memory_gb=mem,
    )


def _check_sizes(spec: Spec) -> None:
    """Refuse grids that are too large and blocks whose matrices exceed the memory budget."""
    from sweep.grid import block_memory_bytes, memory_budget_bytes

    npoints = math.prod(spec.shape)
    if npoints > _MAX_POINTS:
        raise SpecError(f"axes: {npoints} points exceed the limit of {_MAX_POINTS}; split the study")
    ns = spec.all_values("n")
    if spec.measure.top_k >= min(ns):
        raise SpecError(f"measure.top_k: {spec.measure.top_k} must be smaller than n = {min(ns)}")
    need = block_memory_bytes(spec)
    budget = memory_budget_bytes(spec)
    if need > budget:
        raise SpecError(
            f"run: the largest task needs about {need / 2**30:.1f} GiB but an actor has "
            f"{budget / 2**30:.1f} GiB (run.memory_gb or machine memory / workers); "
            "reduce n or the ratios, or give fewer workers more memory"
        )
