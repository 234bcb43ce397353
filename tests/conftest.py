"""Test-wide settings.

One thread for torch's and onnxruntime's CPU pools: with two cores shared by pytest and the
runtime's own pools, OpenMP oversubscription made some tests 20x slower. Set before torch
is first imported.
"""

import logging
import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
# The local profile keeps its seed figures: no test may depend on this machine's speed
# (tests/test_local_probe.py turns the probe on with fake timings).
os.environ["GTND_LOCAL_PROBE"] = "off"


def pytest_configure(config):
    """One torch thread for the whole session (OMP_NUM_THREADS may be set by the caller)."""
    try:
        import torch
    except ImportError:  # the light core's tests need no torch
        return
    torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    """GTND_TEST_ORDER=reverse runs the tests last to first (.ci/run's second pass), so a
    test that passes only after another has run shows up. No plugin needed."""
    if os.environ.get("GTND_TEST_ORDER", "").lower() == "reverse":
        items.reverse()


@pytest.fixture(autouse=True)
def restore_progress_logger():
    """Put the package logger back as it was (the CLI's -v/-q change it), and check that the
    test left no live progress display running. For every test: a ``gtnd -q`` run leaves
    the logger quiet, and a later test that expects progress bars would see none."""
    from gtn_deploy import progress

    logger = logging.getLogger(progress.LOGGER)
    level, handlers, propagate = logger.level, list(logger.handlers), logger.propagate
    yield
    logger.setLevel(level)
    logger.handlers[:] = handlers
    logger.propagate = propagate
    assert progress._board is None, "the live display was left running"
