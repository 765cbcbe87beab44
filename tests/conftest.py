"""Test-wide settings: embedded Ray on loopback, one BLAS thread per process, no GUI backend."""

import os

# before any `import ray`: node IP resolves to 127.0.0.1, never a LAN address
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("MPLBACKEND", "Agg")
