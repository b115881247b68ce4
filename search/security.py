"""Preflight checks that keep a search's doors shut: the MLflow server it logs to, and the Ray cluster it runs on.

A tracking server holds every run of a search and the models trained on patient radiographs. One that answers
without credentials on an address other machines can reach is refused (docs/security.md) unless the user
accepts the risk with --allow-unauthenticated-tracking. Credentials reach MLflow only through its own
environment variables or credentials file, never through the URI: the URI is written to search.json, logged
as a param and printed.
"""
from __future__ import annotations

import ipaddress
import json
import os
from urllib.parse import urlsplit

from search.errors import SearchError

PROBE_TIMEOUT_S = 10  # an unauthenticated probe of the tracking server; reachability is checked after it
PROBE_PATH = "/api/2.0/mlflow/experiments/search?max_results=1"
ALLOW_FLAG = "--allow-unauthenticated-tracking"
CREDENTIAL_VARIABLES = "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"


def is_loopback_host(host: str | None) -> bool:
    """True for `localhost` and loopback addresses (127.0.0.0/8, ::1), by the URI's text alone.

    A name is not resolved: a name other than localhost is there for other machines to use, and what it
    resolves to on this one says nothing about who else can reach the server behind it.
    """
    if not host:
        return False
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def refuse_credentials_in_uri(tracking_uri: str) -> None:
    """`http://user:password@host` would put the password in search.json, MLflow params and printed lines."""
    parts = urlsplit(tracking_uri)
    if parts.username is not None or parts.password is not None:
        raise SearchError(f"--tracking-uri carries credentials (user:password@{parts.hostname}): they would be "
                          f"written to search.json and MLflow; remove them from the URI and set {CREDENTIAL_VARIABLES} "
                          "in the driver's environment (or ~/.mlflow/credentials) instead")


def client_has_credentials(tracking_uri: str) -> bool:
    """Does MLflow's client have something to authenticate with (environment variables or credentials file)?"""
    from mlflow.utils.credentials import get_default_host_creds

    creds = get_default_host_creds(tracking_uri)
    return bool((creds.username and creds.password) or creds.token or creds.aws_sigv4 or creds.auth
                or creds.client_cert_path)


def probe_without_credentials(tracking_uri: str) -> tuple[int, str] | None:
    """(HTTP status, body) of an API request carrying no credentials; None if unreachable.

    No redirects are followed (a proxy that redirects to its login page is a closed door), and no
    credentials are added from the environment or ~/.netrc: the question is what a stranger gets.
    """
    import requests

    from mlflow.environment_variables import MLFLOW_TRACKING_INSECURE_TLS, MLFLOW_TRACKING_SERVER_CERT_PATH

    url = tracking_uri.rstrip("/") + PROBE_PATH
    session = requests.Session()
    session.trust_env = False  # no ~/.netrc credentials; proxies from the environment are still honoured
    # the CA bundle MLflow's own client would use (trust_env off drops requests' reading of these variables)
    verify = (MLFLOW_TRACKING_SERVER_CERT_PATH.get() or os.environ.get("REQUESTS_CA_BUNDLE")
              or os.environ.get("CURL_CA_BUNDLE") or True) if not MLFLOW_TRACKING_INSECURE_TLS.get() else False
    try:
        response = session.get(url, timeout=PROBE_TIMEOUT_S, allow_redirects=False, verify=verify,
                               proxies=requests.utils.get_environ_proxies(url))
    except requests.RequestException:
        return None
    finally:
        session.close()
    return response.status_code, response.text


def _answers_openly(status: int, body: str) -> bool:
    if not 200 <= status < 300:
        return False
    try:
        return isinstance(json.loads(body or "{}"), dict)
    except ValueError:  # an HTML page with status 200 is a login form, not the tracking API
        return False


def check_tracking_access(tracking_uri: str, *, allow_unauthenticated: bool = False) -> str:
    """Refuse an open tracking server that other machines can reach; returns what was found:
    "local" (not an HTTP server), "loopback", "open" (allowed), "authenticated" (a 401/403, a redirect or a
    login page), or "unreachable" (no answer, or not the MLflow API's: left to check_tracking).
    """
    refuse_credentials_in_uri(tracking_uri)
    if not tracking_uri.startswith(("http://", "https://")):
        return "local"
    parts = urlsplit(tracking_uri)
    loopback = is_loopback_host(parts.hostname)
    answer = probe_without_credentials(tracking_uri)
    if answer is None:
        return "unreachable"  # check_tracking reports it with the reachability error
    status, body = answer
    if status == 403 and "Invalid Host header" in body:
        raise SearchError(f"the MLflow tracking server {tracking_uri} refuses the host name {parts.netloc!r}: "
                          f"start it with `--allowed-hosts {parts.netloc}` (MLflow's DNS-rebinding guard), or "
                          "use a name it accepts")
    if _answers_openly(status, body):
        if loopback:
            return "loopback"
        risk = (f"the MLflow tracking server {tracking_uri} answers without authentication: anyone who reaches "
                "it can read, download and delete this search's runs and the models trained on patient images")
        if not allow_unauthenticated:
            raise SearchError(f"{risk}. Start it with `mlflow server --app-name basic-auth` or behind an "
                              f"authenticating proxy (docs/security.md), or pass {ALLOW_FLAG} to accept the risk")
        print(f"warning: {risk} ({ALLOW_FLAG} given)", flush=True)
        return "open"
    if not (status in (401, 403) or 200 <= status < 400):
        return "unreachable"  # not an MLflow API answer (404, 5xx): check_tracking reports it
    if not client_has_credentials(tracking_uri):
        raise SearchError(f"the MLflow tracking server {tracking_uri} asks for credentials (HTTP {status}): set "
                          f"{CREDENTIAL_VARIABLES} in the driver's environment, or write them to "
                          "~/.mlflow/credentials (mode 0600); never in the URI or on a command line")
    if parts.scheme == "http" and not loopback:
        print(f"note: credentials for {parts.netloc} travel unencrypted over http://; use https:// unless "
              "this network is private to the cluster (docs/security.md)", flush=True)
    return "authenticated"


# Ray Tune copies these from the driver's environment into every trial's runtime_env (for S3 storage), and
# Ray's runtime-environment agent writes each runtime_env, values included, to runtime_env_agent.log on every
# node (found by the planted-secret test; ray/tune/execution/class_cache.py).
TUNE_COPIED_SECRETS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


def refuse_secrets_tune_would_log() -> None:
    """Cloud keys in the driver's environment would end up, in clear, in Ray's logs on every node."""
    found = [name for name in TUNE_COPIED_SECRETS if os.environ.get(name)]
    if found:
        raise SearchError(f"{', '.join(found)} is set in the driver's environment: Ray Tune copies it into every "
                          "trial's runtime environment, which Ray writes in clear to its logs on every node. Unset "
                          "it; give nodes their cloud rights by instance profile or workload identity, or a "
                          "credentials file on each node (AWS_PROFILE, ~/.aws/credentials) (docs/security.md)")


def ray_token_auth_enabled() -> bool | None:
    """Whether this Ray driver uses token authentication (None when this Ray cannot tell)."""
    try:
        from ray._private.authentication.authentication_utils import is_token_auth_enabled
    except ImportError:
        return None
    return bool(is_token_auth_enabled())


def warn_if_ray_unauthenticated() -> None:
    """A connected driver without token auth means the cluster takes anyone's jobs: say so once."""
    if ray_token_auth_enabled() is False:
        print(f"warning: this Ray cluster runs without token authentication (RAY_AUTH_MODE="
              f"{os.environ.get('RAY_AUTH_MODE', 'unset')}): anyone who reaches its ports can run code on it; "
              "start every node with RAY_AUTH_MODE=token (docs/security.md)", flush=True)
