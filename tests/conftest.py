"""Test-wide settings: embedded Ray on loopback, one BLAS thread per process, no GUI backend."""

import os

# before any `import ray`: node IP resolves to 127.0.0.1, never a LAN address
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("MPLBACKEND", "Agg")
# one BLAS thread: tests run beside Ray workers on 2 cores; oversubscribed OpenBLAS is 10x slower
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from kernels.backend import pin_process_threads  # noqa: E402

pin_process_threads(1)
