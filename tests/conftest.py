"""Test-wide settings.

One thread for torch's and onnxruntime's CPU pools: with two cores shared by pytest and the
runtime's own pools, OpenMP oversubscription made some tests 20x slower. Set before torch
is first imported.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")


def pytest_configure(config):
    """One torch thread for the whole session (OMP_NUM_THREADS may be set by the caller)."""
    try:
        import torch
    except ImportError:  # the light core's tests need no torch
        return
    torch.set_num_threads(1)
