"""Preflight security checks (search/security.py) against small HTTP servers on this machine, and one search
logged to a real `mlflow server --app-name basic-auth` whose outputs and logs are grepped for planted secrets.

A server addressed by the machine's host name counts as reachable from other machines (the check reads the
URI, it resolves nothing), which is how an open server is refused here without touching the network.
"""
from __future__ import annotations

import http.server
import json
import socket
import threading
from contextlib import contextmanager

import pytest

from search.errors import SearchError
from search.security import check_tracking_access, is_loopback_host, refuse_credentials_in_uri

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


def test_an_unreachable_server_is_left_to_the_reachability_check():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert check_tracking_access(f"http://127.0.0.1:{port}") == "unreachable"


def test_the_cli_takes_the_flag(tmp_path, capsys):
    from search.cli import main

    assert main(["search", "--allow-unauthenticated-tracking", "--out", str(tmp_path)]) == 2
    assert "a new search needs --data, --space, --name" in capsys.readouterr().err
