"""Preflight security checks (search/security.py) against small HTTP servers on this machine, and one search
logged to a real `mlflow server --app-name basic-auth` whose outputs and logs are grepped for planted secrets.

A server addressed by the machine's host name counts as reachable from other machines (the check reads the
URI, it resolves nothing), which is how an open server is refused here without touching the network.
"""
from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from search.errors import SearchError
from search.security import (PROBE_PATH, TUNE_COPIED_SECRETS, check_tracking_access, is_loopback_host,
                             refuse_credentials_in_uri, refuse_secrets_tune_would_log)
from conftest import free_port, migrated_store, start_mlflow_server, stop_mlflow_server
from test_examples_security import EXAMPLES
from test_search_tuner import mlflow_runs

HOST_NAME = socket.gethostname()
OPEN_BODY = json.dumps({"experiments": [{"experiment_id": "0", "name": "Default"}]}).encode()


def host_name_address() -> str:
    """Where this machine's host name points: a loopback address (/etc/hosts) or its own interface."""
    return socket.gethostbyname(HOST_NAME)


@contextmanager
def fake_tracking_server(bind: str, status: int, body: bytes = b"", headers: dict | None = None):
    """A one-thread HTTP server on `bind` answering every GET with `status`, `body` and `headers`; yields port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the stdlib's name)
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # keep pytest's output clean
            pass

    server = http.server.HTTPServer((bind, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def no_mlflow_credentials(monkeypatch, tmp_path):
    """A client with nothing to authenticate with: no variables, no ~/.mlflow/credentials."""
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
                 "MLFLOW_TRACKING_AUTH", "MLFLOW_TRACKING_AWS_SIGV4", "MLFLOW_TRACKING_CLIENT_CERT_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


def test_loopback_is_read_from_the_uri_alone():
    for host in ("localhost", "LOCALHOST.", "127.0.0.1", "127.3.2.1", "::1", "[::1]"):
        assert is_loopback_host(host), host
    for host in (HOST_NAME, "mlflow.internal", "10.0.0.5", "0.0.0.0", "192.0.2.2", "", None):
        assert not is_loopback_host(host), host


def test_credentials_in_the_tracking_uri_are_refused():
    with pytest.raises(SearchError, match="carries credentials.*MLFLOW_TRACKING_USERNAME") as caught:
        refuse_credentials_in_uri("http://admin:hunter2-hunter2@mlflow:5000")
    assert "hunter2" not in str(caught.value)  # the refusal itself must not print the password
    refuse_credentials_in_uri("http://mlflow:5000")
    assert check_tracking_access("sqlite:////tmp/m.db") == "local"


def test_an_open_server_reached_by_host_name_is_refused_unless_allowed(no_mlflow_credentials, capsys):
    with fake_tracking_server(host_name_address(), 200, OPEN_BODY) as port:
        uri = f"http://{HOST_NAME}:{port}"
        with pytest.raises(SearchError, match="answers without authentication.*--app-name basic-auth.*"
                                              "--allow-unauthenticated-tracking"):
            check_tracking_access(uri)
        assert check_tracking_access(uri, allow_unauthenticated=True) == "open"
        assert "warning: the MLflow tracking server" in capsys.readouterr().out
    with fake_tracking_server("127.0.0.1", 200, OPEN_BODY) as port:  # a server only this machine reaches
        assert check_tracking_access(f"http://127.0.0.1:{port}") == "loopback"


def test_a_server_asking_for_credentials_needs_them_in_the_environment(no_mlflow_credentials, monkeypatch,
                                                                       capsys):
    challenge = {"WWW-Authenticate": 'Basic realm="mlflow"'}
    with fake_tracking_server(host_name_address(), 401, b"You are not authenticated.", challenge) as port:
        uri = f"http://{HOST_NAME}:{port}"
        with pytest.raises(SearchError, match=r"asks for credentials \(HTTP 401\).*MLFLOW_TRACKING_PASSWORD"):
            check_tracking_access(uri)
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "cxrtune")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-printed-anywhere")
        assert check_tracking_access(uri) == "authenticated"
        printed = capsys.readouterr().out
        assert "travel unencrypted over http://" in printed and "not-printed-anywhere" not in printed
    # an authenticating proxy that redirects to its login page, and a login page served with 200
    with fake_tracking_server(host_name_address(), 302, b"", {"Location": "/oauth2/sign_in"}) as port:
        assert check_tracking_access(f"http://{HOST_NAME}:{port}") == "authenticated"
    with fake_tracking_server(host_name_address(), 200, b"<html>sign in</html>") as port:
        assert check_tracking_access(f"http://{HOST_NAME}:{port}") == "authenticated"


def test_a_refused_host_header_names_the_mlflow_flag(no_mlflow_credentials):
    with fake_tracking_server(host_name_address(), 403,
                              b"Invalid Host header - possible DNS rebinding attack detected") as port:
        with pytest.raises(SearchError, match=f"--allowed-hosts {HOST_NAME}:{port}"):
            check_tracking_access(f"http://{HOST_NAME}:{port}")


def test_an_unreachable_server_is_left_to_the_reachability_check(no_mlflow_credentials):
    assert check_tracking_access(f"http://127.0.0.1:{free_port()}") == "unreachable"
    with fake_tracking_server(host_name_address(), 404, b"Not Found") as port:  # not MLflow's API at all
        assert check_tracking_access(f"http://{HOST_NAME}:{port}") == "unreachable"


def test_cloud_keys_tune_would_copy_into_ray_logs_are_refused(monkeypatch):
    for name in TUNE_COPIED_SECRETS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")  # an identifier alone opens nothing
    refuse_secrets_tune_would_log()
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token-not-printed")
    with pytest.raises(SearchError, match="AWS_SESSION_TOKEN is set.*runtime environment.*instance profile") as caught:
        refuse_secrets_tune_would_log()
    assert "not-printed" not in str(caught.value)


def test_the_cli_takes_the_flag(tmp_path, capsys):
    from search.cli import main

    assert main(["search", "--allow-unauthenticated-tracking", "--out", str(tmp_path)]) == 2
    assert "a new search needs --data, --space, --name" in capsys.readouterr().err


# ----- one search against a real `mlflow server --app-name basic-auth`, grepped for planted secrets -----

PLANTED = {"MLFLOW_TRACKING_PASSWORD": "planted-mlflow-password-7f3a9c",
           "CXRTUNE_SALT": "planted-patient-salt-41d2e8",
           "AWS_SECRET_ACCESS_KEY": "planted-cloud-key-9b6c05"}
SEARCH_TIMEOUT_S = 400


@pytest.fixture
def basic_auth_server(tmp_path):
    """`mlflow server --app-name basic-auth` on 127.0.0.1 with examples/mlflow-basic-auth.ini (its user store
    moved into tmp_path) and the admin password from the environment; yields (port, server folder)."""
    folder = tmp_path / "server"
    folder.mkdir()
    ini = (EXAMPLES / "mlflow-basic-auth.ini").read_text().replace(
        "sqlite:////mlflow/basic_auth.db", f"sqlite:///{folder / 'basic_auth.db'}")
    (folder / "basic_auth.ini").write_text(ini)
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_TRACKING_")}
    env.update(MLFLOW_AUTH_CONFIG_PATH=str(folder / "basic_auth.ini"), MLFLOW_AUTH_ADMIN_USERNAME="admin",
               MLFLOW_AUTH_ADMIN_PASSWORD=PLANTED["MLFLOW_TRACKING_PASSWORD"],
               MLFLOW_FLASK_SERVER_SECRET_KEY="test-only-csrf-key-0123456789")
    hosts = f"{HOST_NAME},{HOST_NAME}:{port},127.0.0.1,127.0.0.1:{port},localhost:{port}"
    server = start_mlflow_server(migrated_store(folder / "mlflow.db"), port, folder / "server.log", env=env,
                                 cwd=folder, args=("--app-name", "basic-auth", "--allowed-hosts", hosts,
                                                   "--artifacts-destination", str(folder / "artifacts")))
    try:
        yield port, folder
    finally:
        stop_mlflow_server(server)


def search_with_planted_secrets(out_dir, ray_dir, uri: str):
    """A 2-trial scripted search in its own process and its own local Ray (temp dir `ray_dir`), with the
    planted secrets in the environment that the driver and, through Ray, every worker inherit."""
    tests_dir = Path(__file__).resolve().parent
    script = textwrap.dedent(f"""
        import json, os, sys
        sys.path[:0] = [{str(tests_dir.parent)!r}, {str(tests_dir)!r}]
        import ray
        ray.init(_temp_dir={str(ray_dir)!r}, num_cpus=2, include_dashboard=False, configure_logging=False)
        import test_search_tuner as scripted
        scripted.pickle_by_value()
        from search.errors import SearchError
        from search.settings import SearchSettings
        from search.tuner import run_search

        common = dict(data=scripted.ScriptedData({{1e-4: 0.6}}), space=scripted.scripted_space([1e-4], epochs=1),
                      out_dir={str(out_dir)!r}, trainable=scripted.scripted_fold, progress_interval_s=0)
        settings = dict(n_folds=2, scheduler="fifo", tracking_uri={uri!r})
        result = {{"ray_auth_mode": os.environ.get("RAY_AUTH_MODE")}}
        try:  # Tune would copy the cloud key into each trial's runtime_env, which Ray logs: refused
            run_search(SearchSettings(name="cloudkey", **settings), **common)
        except SearchError as error:
            result["cloudkey"] = str(error)
        del os.environ["AWS_SECRET_ACCESS_KEY"]  # the driver's only; Ray's processes keep it, inherited
        os.environ["MLFLOW_TRACKING_PASSWORD"] = "wrong-password-0000"
        try:
            run_search(SearchSettings(name="wrong", **settings), **common)
        except SearchError as error:
            result["wrong"] = str(error)
        os.environ["MLFLOW_TRACKING_PASSWORD"] = {PLANTED["MLFLOW_TRACKING_PASSWORD"]!r}
        run_search(SearchSettings(name="secure", **settings), **common)
        print("RESULT " + json.dumps(result), flush=True)
        ray.shutdown()
    """)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_AUTH", "RAY_AUTH"))}
    env.update(PLANTED, MLFLOW_TRACKING_USERNAME="admin")
    env.pop("MLFLOW_FLASK_SERVER_SECRET_KEY", None)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=SEARCH_TIMEOUT_S,
                          cwd=out_dir, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, f"search failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT "):]), done.stdout + done.stderr


@pytest.mark.slow
def test_a_search_logs_to_a_basic_auth_server_and_leaks_no_secret(basic_auth_server, tmp_path, monkeypatch):
    port, server_folder = basic_auth_server
    # the host name, when it points at this machine's loopback, makes the URI a non-loopback one
    by_name = host_name_address().startswith("127.")
    uri = f"http://{HOST_NAME if by_name else '127.0.0.1'}:{port}"
    assert requests.get(uri + PROBE_PATH, timeout=10).status_code == 401  # no credentials, no answer
    assert requests.get(uri + PROBE_PATH, timeout=10, auth=("admin", "wrong-password-0000")).status_code == 401

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    ray_dir = Path(tempfile.mkdtemp(prefix="cxr-ray-", dir="/tmp"))  # short: Ray's socket paths have a limit
    try:
        result, printed = search_with_planted_secrets(out_dir, ray_dir, uri)
        assert result["ray_auth_mode"] == "token" and "without token authentication" not in printed
        assert result["cloudkey"].startswith("AWS_SECRET_ACCESS_KEY is set in the driver's environment")
        assert "refused the driver's credentials" in result["wrong"] and "wrong-password" not in result["wrong"]
        assert not (out_dir / "wrong" / "search.json").exists()
        if by_name:
            assert f"credentials for {HOST_NAME}:{port} travel unencrypted over http://" in printed

        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PLANTED["MLFLOW_TRACKING_PASSWORD"])
        client, runs = mlflow_runs(uri, "secure")
        assert len(runs) == 1 + 1 + 2 and {run.info.status for run in runs} == {"FINISHED"}
        logged = [text for run in runs for text in (*run.data.params.values(), *run.data.tags.values())]

        outputs = [path for folder in (out_dir, ray_dir) for path in folder.rglob("*") if path.is_file()]
        outputs += [server_folder / "server.log", server_folder / "mlflow.db"]
        assert (out_dir / "secure" / "trials.csv").is_file() and any(ray_dir.rglob("raylet.out"))
        for name, secret in PLANTED.items():
            assert secret not in printed, f"{name} printed by the search"
            assert not [text for text in logged if secret in text], f"{name} in an MLflow param or tag"
            leaks = [str(path) for path in outputs if secret.encode() in path.read_bytes()]
            assert leaks == [], f"{name} written to {leaks}"
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)
