import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from kernels.backend import get_backend
from kernels.eigen import (
    DENSE_BELOW,
    NonFiniteError,
    all_eigenvalues,
    check_finite,
    full_eigensystem,
    top_eigenpairs,
)


def _features(d: int, n: int, seed: int = 0, spike: float = 3.0) -> np.ndarray:
    """tanh features of a spiked input: a realistic CK with one outlier above an MP-like bulk."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n)) / np.sqrt(n)
    b = rng.choice([-1.0, 1.0], size=n) / np.sqrt(n)
    X += spike * np.outer(rng.standard_normal(n) / np.sqrt(n), b)
    W = rng.standard_normal((d, n))
    return np.tanh(W @ X) / np.sqrt(d)


def _dense_reference(F: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    vals, vecs = np.linalg.eigh(F.T @ F)
    return vals[::-1][:k], vecs[:, ::-1][:, :k]


def _assert_same_pairs(vals, vecs, ref_vals, ref_vecs, rtol=1e-8):
    assert vals.dtype == np.float64 and vecs.dtype == np.float64
    assert np.all(np.diff(vals) <= 0), "eigenvalues must be descending"
    np.testing.assert_allclose(vals, ref_vals, rtol=rtol, atol=0)
    # eigenvectors up to sign; the gaps among the top 8 here are >= 1e-3 so each is well defined
    overlaps = np.abs(np.sum(vecs * ref_vecs, axis=0))
    np.testing.assert_allclose(overlaps, 1.0, atol=1e-7)
    np.testing.assert_allclose(vecs.T @ vecs, np.eye(vecs.shape[1]), atol=1e-10)


@pytest.mark.parametrize(("d", "n"), [(600, 400), (400, 400)])
def test_lanczos_top_k_equals_dense_eigh(d, n):
    F = _features(d, n)
    vals, vecs = top_eigenpairs(F, 8, seed=np.random.SeedSequence(1))
    _assert_same_pairs(vals, vecs, *_dense_reference(F, 8))


def test_linear_operator_path_equals_dense_eigh():
    F = _features(500, 400)
    vals, vecs = top_eigenpairs(F, 8, operator="linear")
    _assert_same_pairs(vals, vecs, *_dense_reference(F, 8))


def test_dual_gram_equals_primal_when_d_is_smaller():
    F = _features(300, 500, seed=3)
    for method in ("lanczos", "dense"):
        vals, vecs = top_eigenpairs(F, 8, method=method)
        _assert_same_pairs(vals, vecs, *_dense_reference(F, 8))


def test_dense_method_is_the_reference():
    F = _features(450, 400, seed=4)
    vals, vecs = top_eigenpairs(F, 5, method="dense")
    _assert_same_pairs(vals, vecs, *_dense_reference(F, 5), rtol=1e-12)


def test_small_or_k_close_to_dimension_falls_back_to_dense():
    # dimension <= DENSE_BELOW, and k > dim/4: both solved densely (ARPACK needs k < dim)
    F = _features(80, 60, seed=5)
    vals, vecs = top_eigenpairs(F, 60)
    ref_vals, _ = _dense_reference(F, 60)
    np.testing.assert_allclose(vals, ref_vals, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(vecs.T @ vecs, np.eye(60), atol=1e-10)
    assert DENSE_BELOW >= 60


def test_k_above_d_uses_the_primal_and_returns_the_zero_eigenvalues():
    F = _features(6, 40, seed=6)
    vals, vecs = top_eigenpairs(F, 10)
    assert vals.shape == (10,) and vecs.shape == (40, 10)
    np.testing.assert_allclose(vals[6:], 0.0, atol=1e-12)
    np.testing.assert_allclose(vecs.T @ vecs, np.eye(10), atol=1e-10)


def test_seeded_start_vector_is_deterministic_without_global_rng():
    F = _features(500, 400, seed=7)
    np.random.seed(0)
    a = top_eigenpairs(F, 6, seed=np.random.SeedSequence(2))
    np.random.seed(123)  # the global RNG must not matter
    b = top_eigenpairs(F, 6, seed=np.random.SeedSequence(2))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_all_eigenvalues_full_spectrum_with_zeros():
    F = _features(120, 300, seed=8)
    vals = all_eigenvalues(F)
    assert vals.shape == (300,)
    assert np.all(np.diff(vals) >= 0)
    np.testing.assert_array_equal(vals[:180], 0.0)
    ref = np.linalg.eigvalsh(F.T @ F)
    np.testing.assert_allclose(vals[180:], ref[180:], rtol=1e-9, atol=1e-12)
    assert np.isclose(vals.sum(), np.sum(F * F), rtol=1e-12)  # trace


def test_full_eigensystem_agrees_with_both_solvers():
    for d, n in ((200, 300), (350, 300)):
        F = _features(d, n, seed=9)
        spectrum, vals, vecs = full_eigensystem(F, 6)
        np.testing.assert_allclose(spectrum, all_eigenvalues(F), rtol=1e-12, atol=1e-12)
        _assert_same_pairs(vals, vecs, *top_eigenpairs(F, 6, method="dense"))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_features_are_refused_before_any_solve(bad):
    F = _features(300, 280)
    F[5, 7] = bad
    with pytest.raises(NonFiniteError, match="features F: 1 of"):
        top_eigenpairs(F, 4)
    with pytest.raises(NonFiniteError):
        all_eigenvalues(F)
    with pytest.raises(NonFiniteError):
        full_eigensystem(F, 4)
    assert issubclass(NonFiniteError, ValueError)


def test_overflowing_gram_is_refused():
    F = np.full((3, 4), 1e200)
    with pytest.raises(NonFiniteError, match="Gram"):
        top_eigenpairs(F, 2)


def test_check_finite_names_the_array():
    check_finite(np.ones(3), "fine")
    with pytest.raises(NonFiniteError, match="weights"):
        check_finite(np.array([1.0, np.nan]), "weights")


def test_nan_never_reaches_lapack_in_a_subprocess():
    # guards the failure mode itself: a NaN Gram must fail fast, not hang the worker
    code = textwrap.dedent(
        """
        import numpy as np
        from kernels.eigen import NonFiniteError, top_eigenpairs
        F = np.ones((500, 500)); F[0, 0] = np.nan
        try:
            top_eigenpairs(F, 3)
        except NonFiniteError:
            print("refused")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "refused", out.stderr


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"k": 0}, "k"),
        ({"k": 401}, "k"),
        ({"k": 2.5}, "k"),
        ({"k": 3, "method": "qr"}, "method"),
        ({"k": 3, "operator": "sparse"}, "operator"),
    ],
)
def test_bad_arguments_are_value_errors(kwargs, needle):
    F = _features(300, 400)
    with pytest.raises(ValueError, match=needle):
        top_eigenpairs(F, **kwargs)


def test_bad_shape_is_refused():
    with pytest.raises(ValueError, match="F"):
        top_eigenpairs(np.ones(5), 1)


def test_float32_features_are_solved_in_float64():
    F = _features(400, 300, seed=10)
    vals32, vecs32 = top_eigenpairs(F.astype(np.float32), 4)
    ref_vals, _ = _dense_reference(F, 4)
    assert vals32.dtype == np.float64
    # float32 Gram: relative error ~ eps32·sqrt(d) ≈ 2e-6
    np.testing.assert_allclose(vals32, ref_vals, rtol=1e-5)


def test_backend_argument_selects_the_array_module():
    F = _features(300, 280, seed=11)
    be = get_backend()
    a = top_eigenpairs(F, 4, backend=be)
    b = top_eigenpairs(F, 4)
    assert np.array_equal(a[0], b[0])


def test_no_warning_on_a_normal_solve():
    F = _features(500, 400, seed=12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        top_eigenpairs(F, 8)
