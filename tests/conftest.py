"""Shared fixtures. Tests run on the real stack: local Ray, sqlite MLflow, real DICOM files."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Before TensorFlow or Keras is imported anywhere: quiet logs, no GPU probing, and a Keras cache
# that belongs to the test session (tests write their own weight files; nothing is downloaded).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ["KERAS_HOME"] = tempfile.mkdtemp(prefix="cxrtune-keras-home-")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real reference data beside the checkout; skips the test in a user's clone."""
    if not SHARED_DATA.is_dir():
        pytest.skip("reference data not present")
    return SHARED_DATA


def _start_session_ray():
    import ray

    # address="local": always start our own, never attach to a cluster another process left running.
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray runtime for the whole session (starting one costs several seconds)."""
    import ray

    if not ray.is_initialized():
        _start_session_ray()
    yield ray
    ray.shutdown()


@pytest.fixture
def own_ray_runtime():
    """The code under test starts Ray itself, as a user's run does (search.cluster.connect: workers' lines
    forwarded to the terminal, their quiet environment); the session's runtime, if any, is back after."""
    import ray

    was_running = ray.is_initialized()
    ray.shutdown()
    yield
    ray.shutdown()
    if was_running:
        _start_session_ray()
