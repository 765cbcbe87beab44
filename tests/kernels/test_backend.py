import importlib.util
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from kernels.backend import (
    Backend,
    BackendUnavailableError,
    available_backends,
    blas_info,
    blas_threads,
    get_backend,
    is_cupy_array,
    to_host,
)

HAS_CUPY = importlib.util.find_spec("cupy") is not None


def test_numpy_is_the_default_with_float64():
    be = get_backend()
    assert be.name == "numpy" and be.xp is np and be.dtype == np.float64
    assert not be.is_gpu
    assert "numpy" in available_backends()


def test_float32_is_allowed_and_used_for_draws():
    be = get_backend("numpy", "float32")
    x = be.standard_normal(be.rng(np.random.SeedSequence(1)), (3, 4))
    assert x.dtype == np.float32 and x.shape == (3, 4)
    assert be.asarray([1.0, 2.0]).dtype == np.float32


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [({"name": "torch"}, "backend"), ({"dtype": "float16"}, "dtype")],
)
def test_unknown_backend_or_dtype_is_a_clear_value_error(kwargs, needle):
    with pytest.raises(ValueError, match=needle) as info:
        get_backend(**kwargs)
    # the message lists what is valid
    assert "numpy" in str(info.value) or "float64" in str(info.value)


@pytest.mark.skipif(HAS_CUPY, reason="cupy is installed: the 'absent' error cannot be observed")
def test_cupy_asked_but_absent_raises_with_install_hint():
    with pytest.raises(BackendUnavailableError, match="cupy") as info:
        get_backend("cupy")
    assert "pip install" in str(info.value)
    assert "cupy" not in available_backends()


def test_same_seed_same_draws_bitwise_and_children_differ():
    be = get_backend()
    a = be.standard_normal(be.rng(np.random.SeedSequence(7)), (50, 40))
    b = be.standard_normal(be.rng(np.random.SeedSequence(7)), (50, 40))
    c = be.standard_normal(be.rng(np.random.SeedSequence(8)), (50, 40))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_host_transfer_is_identity_for_numpy():
    x = np.arange(6.0).reshape(2, 3)
    assert to_host(x) is x
    assert get_backend().to_host(x) is x
    assert not is_cupy_array(x)


def test_is_cupy_array_reads_the_class_module_without_importing_cupy():
    fake_type = type("ndarray", (), {"__module__": "cupy._core.core"})
    assert is_cupy_array(fake_type())
    assert "cupy" not in sys.modules or HAS_CUPY


def test_describe_reports_backend_and_dtype():
    info = get_backend("numpy", "float32").describe()
    assert info["backend"] == "numpy" and info["dtype"] == "float32"
    assert info["array_module_version"] == np.__version__


def _blas_threads_now() -> list[int]:
    return [lib["num_threads"] for lib in blas_info()]


def test_blas_threads_limits_inside_and_restores_after():
    before = _blas_threads_now()
    assert before, "no BLAS library visible to threadpoolctl"
    with blas_threads(1):
        assert all(t == 1 for t in _blas_threads_now())
    assert _blas_threads_now() == before
    with blas_threads(None):  # None leaves the pools alone
        assert _blas_threads_now() == before


def test_blas_threads_rejects_zero():
    with pytest.raises(ValueError, match="blas threads"):
        with blas_threads(0):
            pass


def test_pin_process_threads_pins_pools_and_environment_in_a_fresh_process():
    code = textwrap.dedent(
        """
        import os
        import numpy
        from kernels.backend import blas_info, pin_process_threads
        pin_process_threads(1)
        assert all(lib["num_threads"] == 1 for lib in blas_info()), blas_info()
        assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
        assert os.environ["OMP_NUM_THREADS"] == "1"
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_backend_is_frozen():
    be = get_backend()
    assert isinstance(be, Backend)
    with pytest.raises(AttributeError):
        be.name = "cupy"  # type: ignore[misc]
