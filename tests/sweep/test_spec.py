"""Study-file validation: good files parse to the expected spec; bad ones name the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sweep.spec import SpecError, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[2]

GOOD = """
[study]
name = "t"
experiment = "deep-ck"
seed = 3
replicates = 2

[fixed]
n = 64
depth = 2
input_ratio = 2.0

[axes]
spike = { linspace = [0.5, 2.0, 4] }
activation = ["tanh", "sin:2"]

[measure]
top_k = 4

[run]
block = { spike = 2 }
"""


def test_good_study_parses() -> None:
    spec = parse_spec(GOOD)
    assert spec.dims == ("spike", "activation", "replicate")
    assert spec.shape == (4, 2, 2)
    assert spec.axes["spike"] == (0.5, 1.0, 1.5, 2.0)
    assert spec.fixed["width_ratio"] == 1.0 and spec.fixed["input"] == "gmm"
    assert spec.layers == (0, 1, 2)
    assert spec.values_at((1, 1, 0))["activation"] == "sin:2"


def test_geomspace_runs_from_start_to_stop_at_a_constant_ratio() -> None:
    spec = parse_spec(GOOD.replace("linspace = [0.5, 2.0, 4]", "geomspace = [0.5, 4.0, 4]"))
    assert spec.axes["spike"] == pytest.approx((0.5, 1.0, 2.0, 4.0), rel=1e-12)


def test_hash_ignores_parameters_left_at_their_default() -> None:
    """Writing a default out (or a later release adding a parameter with a default) keeps the hash."""
    implicit = parse_spec(GOOD)
    explicit = parse_spec(GOOD.replace("[fixed]", "[fixed]\ninput_scale = 1.0"))
    assert implicit.fixed["input_scale"] == explicit.fixed["input_scale"] == 1.0
    assert implicit.hash == explicit.hash
    assert parse_spec(GOOD.replace("[fixed]", "[fixed]\ninput_scale = 1.5")).hash != implicit.hash


def test_hash_is_stable_and_ignores_scheduling_options() -> None:
    a = parse_spec(GOOD)
    b = parse_spec(GOOD + "workers = 2\nmax_attempts = 5\n")
    assert a.hash == b.hash
    c = parse_spec(GOOD.replace("seed = 3", "seed = 4"))
    assert c.hash != a.hash


def test_depth_under_axes_is_one_integer() -> None:
    spec = parse_spec(GOOD.replace("depth = 2\n", "").replace("[axes]", "[axes]\ndepth = 3"))
    assert spec.depth == 3 and "depth" not in spec.axes


def test_fixed_spikes_make_signals() -> None:
    text = GOOD.replace('spike = { linspace = [0.5, 2.0, 4] }\n', "").replace(
        "[fixed]", "[fixed]\nspikes = [2.0, 1.18, 1.0]").replace("block = { spike = 2 }", "")
    spec = parse_spec(text)
    assert spec.n_signals == 3 and spec.spikes == (2.0, 1.18, 1.0)


BAD = [
    ("unknown section", GOOD + "\n[extra]\na = 1\n", "extra"),
    ("unknown study key", GOOD.replace('seed = 3', 'seed = 3\ncolour = "red"'), "study.colour"),
    ("missing name", GOOD.replace('name = "t"\n', ""), "study.name"),
    ("bad name", GOOD.replace('name = "t"', 'name = "a b/c"'), "study.name"),
    ("unknown experiment", GOOD.replace('"deep-ck"', '"deep-nn"'), "study.experiment"),
    ("negative seed", GOOD.replace("seed = 3", "seed = -1"), "study.seed"),
    ("zero replicates", GOOD.replace("replicates = 2", "replicates = 0"), "study.replicates"),
    ("float replicates", GOOD.replace("replicates = 2", "replicates = 2.5"), "study.replicates"),
    ("unknown parameter", GOOD.replace("n = 64", "n = 64\nwidth = 3"), "fixed.width"),
    ("string n", GOOD.replace("n = 64", 'n = "64"'), "fixed.n"),
    ("n too small", GOOD.replace("n = 64", "n = 2"), "fixed.n"),
    ("missing n", GOOD.replace("n = 64\n", ""), "fixed.n"),
    ("missing depth", GOOD.replace("depth = 2\n", ""), "fixed.depth"),
    ("negative ratio", GOOD.replace("input_ratio = 2.0", "input_ratio = -1.0"), "fixed.input_ratio"),
    ("empty axis", GOOD.replace('activation = ["tanh", "sin:2"]', "activation = []"), "axes.activation"),
    ("duplicate axis value", GOOD.replace('["tanh", "sin:2"]', '["tanh", "tanh"]'), "axes.activation"),
    ("unknown activation", GOOD.replace('"sin:2"', '"swish"'), "axes.activation"),
    ("negative spike", GOOD.replace("linspace = [0.5, 2.0, 4]", "linspace = [-1.0, 2.0, 4]"), "axes.spike"),
    ("scalar axis", GOOD.replace('activation = ["tanh", "sin:2"]', 'activation = "tanh"'), "axes.activation"),
    ("bad generator", GOOD.replace("linspace = [0.5, 2.0, 4]", "arange = [0.5, 2.0, 4]"), "axes.spike"),
    ("geomspace from 0", GOOD.replace("linspace = [0.5, 2.0, 4]", "geomspace = [0.0, 2.0, 4]"),
     "axes.spike.geomspace"),
    ("bad linspace arity", GOOD.replace("linspace = [0.5, 2.0, 4]", "linspace = [0.5, 2.0]"), "axes.spike"),
    ("both fixed and axis", GOOD.replace("n = 64", "n = 64\nspike = 1.0"), "spike"),
    ("non-axis as axis", GOOD.replace("[axes]", "[axes]\ndepth = [1, 2]"), "depth"),
    ("unknown input model", GOOD.replace("n = 64", 'n = 64\ninput = "images"'), "fixed.input"),
    ("top_k too large", GOOD.replace("top_k = 4", "top_k = 64"), "measure.top_k"),
    ("bad eigensolver", GOOD.replace("top_k = 4", 'top_k = 4\neigensolver = "qr"'), "measure.eigensolver"),
    ("unknown measure key", GOOD.replace("top_k = 4", "top_k = 4\nbins = 3"), "measure.bins"),
    ("block on unknown dim", GOOD.replace("block = { spike = 2 }", "block = { lr = 2 }"), "run.block.lr"),
    ("zero block", GOOD.replace("block = { spike = 2 }", "block = { spike = 0 }"), "run.block.spike"),
    ("bad backend", GOOD + 'backend = "jax"\n', "run.backend"),
    ("cupy without gpu", GOOD + 'backend = "cupy"\n', "run.gpus_per_actor"),
    ("bad dtype", GOOD + 'dtype = "float16"\n', "run.dtype"),
    ("zero attempts", GOOD + "max_attempts = 0\n", "run.max_attempts"),
    ("negative timeout", GOOD + "timeout_s = -5\n", "run.timeout_s"),
    ("unknown run key", GOOD + "threads = 2\n", "run.threads"),
    ("out of memory", GOOD.replace("n = 64", "n = 200000"), "GiB"),
    ("too deep", GOOD.replace("depth = 2", "depth = 100"), "fixed.depth"),
    ("spikes on axes", GOOD.replace("[axes]", "[axes]\nspikes = [1.0, 2.0]"), "axes.spikes"),
    ("not toml", "[study\nname=", "not valid TOML"),
    ("one-step lr negative", GOOD.replace('"deep-ck"', '"one-step"').replace("depth = 2\n", "")
        .replace('spike = { linspace = [0.5, 2.0, 4] }', "lr = [-1.0, 1.0]").replace("spike = 2", "lr = 2"),
        "axes.lr"),
    ("one-step steps zero", GOOD.replace('"deep-ck"', '"one-step"').replace("depth = 2\n", "steps = 0\n")
        .replace('spike = { linspace = [0.5, 2.0, 4] }\n', "").replace("block = { spike = 2 }", ""),
        "fixed.steps"),
    ("one-step unknown teacher", GOOD.replace('"deep-ck"', '"one-step"').replace("depth = 2\n", 'teacher = "swish"\n')
        .replace('spike = { linspace = [0.5, 2.0, 4] }\n', "").replace("block = { spike = 2 }", ""),
        "fixed.teacher"),
    ("one-step width too large", GOOD.replace('"deep-ck"', '"one-step"')
        .replace("depth = 2\n", "width_ratio = 400000.0\n")
        .replace('spike = { linspace = [0.5, 2.0, 4] }\n', "").replace("block = { spike = 2 }", ""),
        "GiB"),
]


@pytest.mark.parametrize("label,text,key", BAD, ids=[b[0] for b in BAD])
def test_bad_study_names_the_key(label: str, text: str, key: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    msg = str(info.value)
    assert key in msg, msg
    assert "\n" not in msg


def test_missing_file() -> None:
    with pytest.raises(SpecError, match="does not exist"):
        load_spec("/nonexistent/study.toml")


def test_bad_study_creates_no_store(tmp_path: Path) -> None:
    study = tmp_path / "bad.toml"
    study.write_text(GOOD.replace('"sin:2"', '"swish"'))
    proc = subprocess.run([sys.executable, "-m", "sweep.cli", "run", str(study)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "axes.activation" in proc.stderr and "swish" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("path", sorted((ROOT / "studies").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_studies_validate(path: Path) -> None:
    spec = load_spec(path)
    assert spec.name
