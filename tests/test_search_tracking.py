"""MLflow from the driver: URIs, fold aggregates, and a search logged to a real `mlflow server` over HTTP."""
from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from search.cluster import check_tracking
from search.errors import SearchError
from search.tracking import absolute_tracking_uri, fold_aggregates, open_search_tracking
from test_search_tuner import migrated_store

SERVER_START_TIMEOUT_S = 90


def test_tracking_uris_are_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute_tracking_uri(None, Path("out")) == f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}"
    assert absolute_tracking_uri("sqlite:///rel/m.db", tmp_path) == f"sqlite:///{tmp_path / 'rel' / 'm.db'}"
    assert absolute_tracking_uri("sqlite:////abs/m.db", tmp_path) == "sqlite:////abs/m.db"
    assert absolute_tracking_uri("http://127.0.0.1:5000", tmp_path) == "http://127.0.0.1:5000"
    with pytest.raises(SearchError, match="not a URI"):
        absolute_tracking_uri("mlflow.db", tmp_path)


def test_fold_aggregates_are_mean_and_std_over_finished_folds():
    finals = {0: {"val_auc": 0.6, "val_binary_accuracy": 0.8, "steady_epoch_time_s": 2.0, "gpu_seconds": 10.0,
                  "trainable_params": 100.0},
              1: {"val_auc": 0.8, "val_binary_accuracy": 0.9, "steady_epoch_time_s": 4.0, "gpu_seconds": 20.0,
                  "trainable_params": 100.0, "val_auc_nodule": math.nan}}
    aggregates = fold_aggregates(finals)
    assert aggregates["n_folds_done"] == 2
    assert aggregates["cv_val_auc_mean"] == pytest.approx(0.7)
    assert aggregates["cv_val_auc_std"] == pytest.approx(0.1)
    assert aggregates["cv_val_binary_accuracy_mean"] == pytest.approx(0.85)
    assert aggregates["steady_epoch_time_s"] == pytest.approx(3.0)
    assert aggregates["total_gpu_seconds"] == pytest.approx(30.0)
    assert "cv_val_auc_nodule_mean" not in aggregates  # a NaN fold value is left out, not averaged


def test_sqlite_with_several_nodes_asks_for_a_tracking_server(tmp_path):
    check_tracking(f"sqlite:///{tmp_path}/m.db", 1)
    with pytest.raises(SearchError, match="sqlite.*2 nodes.*mlflow server.*--tracking-uri"):
        check_tracking(f"sqlite:///{tmp_path}/m.db", 2)


def test_an_unreachable_tracking_server_fails_fast():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(SearchError, match="not reachable"):
        check_tracking(f"http://127.0.0.1:{port}", 1)
    assert time.monotonic() - started < 60


def test_a_second_search_with_the_same_experiment_name_is_refused(tmp_path):
    uri = migrated_store(tmp_path / "m.db")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    open_search_tracking(tmp_path / "a", uri, "same", {"space": "demo"})
    assert json.loads((tmp_path / "a" / "mlflow_runs.json").read_text())["configs"] == {}
    with pytest.raises(SearchError, match="already exists.*--resume"):
        open_search_tracking(tmp_path / "b", uri, "same", {"space": "demo"})
    # reopening from the search folder (a resume) reuses the saved runs
    again = open_search_tracking(tmp_path / "a", uri, "same", {})
    assert again == json.loads((tmp_path / "a" / "mlflow_runs.json").read_text())


@pytest.fixture
def mlflow_server(tmp_path):
    """A real `mlflow server` on 127.0.0.1 and a free port; stopped (its process group) afterwards."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = migrated_store(tmp_path / "server.db")
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
               "--backend-store-uri", backend,
               "--default-artifact-root", str(tmp_path / "artifacts"), "--workers", "1"]
    log = open(tmp_path / "server.log", "wb")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {(tmp_path / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
        log.close()

# A search logged to this server over HTTP, on a simulated 2-node cluster: tests/test_search_cluster.py
