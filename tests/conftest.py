"""Shared fixtures. Tests run on the real stack: local Ray, sqlite MLflow, real DICOM files."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
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
# `mlflow server` imports MLflow and migrates its store before it answers: a busy shared 2-core machine has
# taken over 90 s, two servers at once longer.
SERVER_START_TIMEOUT_S = 300


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


# ----- helpers several test modules share (import them: `from conftest import free_port`) -----

def pydicom_testdata(name: str) -> Path:
    """A file bundled with pydicom or the pydicom-data package (offline); skips the test when it is absent."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} needs the pydicom-data package")
    return Path(path)


def free_port() -> int:
    """A TCP port nobody listens on at 127.0.0.1 right now (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


_STORE_TEMPLATE: list[Path] = []


def migrated_store(path: Path) -> str:
    """Put an empty, already-migrated MLflow sqlite store at `path`; returns its URI.

    Creating a store runs MLflow's schema migrations (~10 s on a busy 2-core machine); the tests make
    one per session and copy it, which also tests that the driver reuses an existing store.
    """
    if not _STORE_TEMPLATE:
        from mlflow.tracking import MlflowClient

        template = Path(tempfile.mkdtemp(prefix="cxrtune-mlflow-template-")) / "mlflow.db"
        MlflowClient(f"sqlite:///{template}").search_experiments()
        _STORE_TEMPLATE.append(template)
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_STORE_TEMPLATE[0], path)
    return f"sqlite:///{path}"


def start_mlflow_server(backend_uri: str, port: int, log: Path, *, args: tuple[str, ...] = (), env=None,
                        cwd=None) -> subprocess.Popen:
    """`mlflow server` on 127.0.0.1:`port` (one worker, plus `args`) in a session of its own, returned once
    its /health answers; fails the test with the end of its log when it dies or does not answer in time."""
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1", "--backend-store-uri", backend_uri, *args]
    with open(log, "ab") as stream:
        server = subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                  start_new_session=True)
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while server.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                if response.status == 200:
                    return server
        except OSError:
            time.sleep(0.5)
    stop_mlflow_server(server, crash=True)
    pytest.fail(f"mlflow server did not start: {log.read_text(errors='replace')[-2000:]}")


def stop_mlflow_server(server: subprocess.Popen, *, crash: bool = False) -> None:
    """Stop the server's whole process group (uvicorn and its job runners): SIGTERM, or SIGKILL at once
    with `crash` (gone as in a crash); SIGKILL as well when SIGTERM is not obeyed within 10 s."""
    try:
        os.killpg(server.pid, signal.SIGKILL if crash else signal.SIGTERM)
        server.wait(timeout=10)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
    server.wait(timeout=10)


@pytest.fixture
def mlflow_server(tmp_path):
    """A real `mlflow server` on 127.0.0.1 and a free port (its URL); stopped afterwards."""
    port = free_port()
    server = start_mlflow_server(migrated_store(tmp_path / "server.db"), port, tmp_path / "server.log",
                                 args=("--default-artifact-root", str(tmp_path / "artifacts")))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_mlflow_server(server)
