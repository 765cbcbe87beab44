import subprocess
import sys
import textwrap


def test_importing_kernels_pulls_in_no_backend_or_orchestration_library():
    # a fresh interpreter: this test process may already have imported them elsewhere
    code = textwrap.dedent(
        """
        import sys
        import kernels
        import kernels.backend, kernels.activations, kernels.seeding
        import kernels.data, kernels.network, kernels.eigen, kernels.observables
        from kernels.backend import get_backend
        get_backend("numpy")
        heavy = sorted(m for m in ("ray", "cupy", "cupyx", "xarray", "zarr", "sweep")
                       if m in sys.modules)
        print(",".join(heavy) or "clean")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "clean"
