"""The cluster examples open no door: every YAML parses, nothing binds 0.0.0.0 without an authentication setting
beside it, nothing is opened to the internet, and the secrets script writes owner-only files."""
from __future__ import annotations

import json
import re
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT / "examples"
ANY_ADDRESS = "0.0.0.0"
INTERNET = ("0.0.0.0/0", "::/0")
# Keys of a mapping that holds one deployable unit (a container, a Ray node group): an authentication setting
# must sit inside the same unit as the binding it guards.
UNIT_KEYS = ("image", "rayStartParams", "containers")
EXPOSING_SERVICE_TYPES = ("LoadBalancer", "NodePort")


def _ray_auth(text: str) -> bool:
    return bool(re.search(r'RAY_AUTH_MODE(=|", "value": ")token', text))


def _mlflow_auth(text: str) -> bool:
    return bool(re.search(r'--app-name(=|\s+|", ")basic-auth', text))


def _mlflow_server(text: str) -> bool:
    return bool(re.search(r'mlflow(", "|\s+)server', text))


def _ray_node(text: str) -> bool:
    return bool(re.search(r"ray start|dashboard|rayStartParams", text))


def _unit(node: str, ancestors: list) -> object:
    """The innermost deployable unit around a value; outside any, the value itself (a shell command line: each
    runs in its own shell, so a setting in another line does not reach it)."""
    for ancestor in reversed(ancestors):
        if isinstance(ancestor, dict) and any(key in ancestor for key in UNIT_KEYS):
            return ancestor
    return node


def open_doors(document, where: str = "") -> list[str]:
    """What in one parsed YAML document is reachable without authentication (empty: nothing)."""
    problems: list[str] = []
    document_auth = False  # KubeRay's own switch: spec.authOptions.mode token covers every Ray container
    if isinstance(document, dict) and document.get("kind") == "RayCluster":
        spec = document.get("spec", {})
        document_auth = (spec.get("authOptions") or {}).get("mode") == "token"
        service_type = spec.get("headGroupSpec", {}).get("serviceType", "ClusterIP")
        if service_type != "ClusterIP":
            problems.append(f"{where}: the head Service is {service_type}; use ClusterIP and port-forward")
    if isinstance(document, dict) and document.get("kind") == "Service":
        service_type = document.get("spec", {}).get("type", "ClusterIP")
        if service_type in EXPOSING_SERVICE_TYPES:
            problems.append(f"{where}: Service {document['metadata']['name']} is {service_type}; use ClusterIP")
    if isinstance(document, dict) and document.get("kind") == "Ingress":
        problems.append(f"{where}: an Ingress exposes the cluster; use port-forwarding or a private proxy")

    def visit(node, ancestors: list) -> None:
        if isinstance(node, dict):
            for value in node.values():
                visit(value, ancestors + [node])
        elif isinstance(node, list):
            for value in node:
                visit(value, ancestors + [node])
        elif isinstance(node, str) and any(cidr in node for cidr in INTERNET):
            problems.append(f"{where}: {node!r} opens a port to the whole internet")
        elif isinstance(node, str) and ANY_ADDRESS in node:
            unit = json.dumps(_unit(node, ancestors))
            needs = []
            if _mlflow_server(unit) and not _mlflow_auth(unit):
                needs.append("`--app-name basic-auth`")
            if _ray_node(unit) and not (_ray_auth(unit) or document_auth):
                needs.append("RAY_AUTH_MODE=token")
            if not (_mlflow_server(unit) or _ray_node(unit) or _ray_auth(unit) or _mlflow_auth(unit)):
                needs.append("an authentication setting")
            if needs:
                problems.append(f"{where}: {node!r} binds {ANY_ADDRESS} without {' and '.join(needs)} beside it")

    visit(document, [])
    return problems


def check_yaml_text(text: str, where: str = "") -> list[str]:
    return [problem for index, document in enumerate(yaml.safe_load_all(text))
            for problem in open_doors(document, f"{where}#{index}")]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda path: path.name)
def test_example_parses_and_opens_no_door(path):
    documents = list(yaml.safe_load_all(path.read_text()))
    assert documents and all(documents)
    assert check_yaml_text(path.read_text(), path.name) == []


def test_the_examples_turn_authentication_on():
    vm = yaml.safe_load((EXAMPLES / "ray-cluster-gpu.yaml").read_text())
    commands = vm["head_start_ray_commands"] + vm["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token" in command for command in commands if "ray start" in command)
    assert not any("--dashboard-host" in command for command in commands)  # Ray's default: loopback
    mlflow = [command for command in commands if "mlflow server" in command]
    assert len(mlflow) == 1 and "--app-name basic-auth" in mlflow[0] and "--host 127.0.0.1" in mlflow[0]
    assert "PASSWORD" not in mlflow[0].replace("mlflow-server.env", "")  # read from a file, not argv
    for node_type in vm["available_node_types"].values():
        assert node_type["node_config"]["SecurityGroupIds"]  # not Ray's group, which opens SSH to the world
    kube = list(yaml.safe_load_all((EXAMPLES / "kuberay-raycluster.yaml").read_text()))
    cluster = next(doc for doc in kube if doc["kind"] == "RayCluster")["spec"]
    groups = [cluster["headGroupSpec"]] + cluster["workerGroupSpecs"]
    for group in groups:
        env = {item["name"]: item for item in group["template"]["spec"]["containers"][0]["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "cxrtune-ray-token"
    worker_env = json.dumps(cluster["workerGroupSpecs"])
    assert "cxrtune-mlflow-client" not in worker_env  # workers get no MLflow credentials
    mlflow = next(doc for doc in kube if doc["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert mlflow["command"][mlflow["command"].index("--app-name") + 1] == "basic-auth"
    assert mlflow["envFrom"][0]["secretRef"]["name"] == "cxrtune-mlflow-server"
    assert not any("PASSWORD" in part for part in mlflow["command"])
    assert {doc["metadata"]["name"] for doc in kube if doc["kind"] == "NetworkPolicy"} == {
        "cxrtune-mlflow-ingress", "cxrtune-ray-ingress"}


def test_the_checker_finds_the_open_doors_it_is_for():
    vm = """
head_start_ray_commands:
  - ray start --head --port=6379 --dashboard-host=0.0.0.0
  - nohup mlflow server --host 0.0.0.0 --port 5000 &
worker_start_ray_commands:
  - ray start --address=$RAY_HEAD_IP:6379
provider:
  security_group: {IpPermissions: [{FromPort: 22, ToPort: 22, IpRanges: [{CidrIp: 0.0.0.0/0}]}]}
"""
    problems = check_yaml_text(vm)
    assert len(problems) == 3, problems
    assert "RAY_AUTH_MODE=token" in problems[0] and "basic-auth" in problems[1] and "internet" in problems[2]
    fixed = vm.replace("ray start --head", "RAY_AUTH_MODE=token ray start --head").replace(
        "mlflow server", "mlflow server --app-name basic-auth").replace("0.0.0.0/0", "203.0.113.0/24")
    assert check_yaml_text(fixed) == []

    kube = """
kind: RayCluster
spec:
  headGroupSpec:
    serviceType: LoadBalancer
    rayStartParams: {dashboard-host: "0.0.0.0"}
    template: {spec: {containers: [{name: head, image: ray}]}}
---
kind: Deployment
spec: {template: {spec: {containers: [{name: mlflow, image: x, command: [mlflow, server, --host, 0.0.0.0]}]}}}
---
kind: Service
metadata: {name: mlflow}
spec: {type: NodePort}
"""
    problems = check_yaml_text(kube)
    assert len(problems) == 4, problems
    authenticated = kube.replace("image: ray}", "image: ray, env: [{name: RAY_AUTH_MODE, value: token}]}").replace(
        "command: [mlflow, server,", "command: [mlflow, server, --app-name, basic-auth,").replace(
        "LoadBalancer", "ClusterIP").replace("NodePort", "ClusterIP")
    assert check_yaml_text(authenticated) == []
    # KubeRay's own switch counts too
    assert check_yaml_text(authenticated.replace("env: [{name: RAY_AUTH_MODE, value: token}]", "env: []").replace(
        "spec:\n  headGroupSpec:", "spec:\n  authOptions: {mode: token}\n  headGroupSpec:")) == []


def test_the_secrets_script_writes_owner_only_files_once(tmp_path):
    target = tmp_path / "secrets"
    done = subprocess.run(["bash", str(EXAMPLES / "make-secrets.sh"), str(target)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stdout == "" and done.stderr == "", done.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    files = {path.name: path for path in target.iterdir()}
    assert set(files) == {"ray_auth_token", "mlflow-server.env", "mlflow-client.env"}
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in files.values())
    server = dict(line.split("=", 1) for line in files["mlflow-server.env"].read_text().splitlines())
    client = dict(line.split("=", 1) for line in files["mlflow-client.env"].read_text().splitlines())
    assert len(server["MLFLOW_AUTH_ADMIN_PASSWORD"]) >= 32  # MLflow refuses fewer than 12 characters
    assert client == {"MLFLOW_TRACKING_USERNAME": server["MLFLOW_AUTH_ADMIN_USERNAME"],
                      "MLFLOW_TRACKING_PASSWORD": server["MLFLOW_AUTH_ADMIN_PASSWORD"]}
    before = {name: path.read_bytes() for name, path in files.items()}
    subprocess.run(["bash", str(EXAMPLES / "make-secrets.sh"), str(target)], check=True, timeout=60)
    assert {name: path.read_bytes() for name, path in files.items()} == before  # a re-run keeps them


def test_the_image_build_context_is_an_allow_list_without_secrets():
    lines = [line.strip() for line in (EXAMPLES / "Dockerfile.dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*"  # everything out, then the package back in
    allowed = {line[1:] for line in lines if line.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "data", "spaces", "trainables", "search", "examples"}
    assert "**/*.SECRET" in lines and "**/*.env" in lines  # salt files and env files, wherever they sit


def test_nothing_in_cxrtune_turns_ray_token_auth_off_or_ships_env_vars_to_ray():
    sources = [path for folder in ("data", "spaces", "trainables", "search", "examples")
               for path in (REPO_ROOT / folder).rglob("*") if path.suffix in (".py", ".yaml", ".sh", "")
               and path.is_file()]
    offenders = [str(path) for path in sources
                 if re.search(r"RAY_AUTH_MODE\W+disabled", path.read_text(errors="replace"))]
    assert sources and offenders == []
    # Ray stores, shows and logs a runtime_env in clear: only search/cluster.py ships variables through it,
    # and only the fixed log-level variables that quiet the workers (no credential can be among them).
    from search.quiet import WORKER_QUIET, worker_environment

    shipping = [path.relative_to(REPO_ROOT).as_posix() for path in sources
                if path.suffix == ".py" and "env_vars" in path.read_text()]
    assert shipping == ["search/cluster.py"]
    assert set(worker_environment()) <= set(WORKER_QUIET)
    assert all(re.fullmatch(r"[A-Z_]*(LOG_LEVEL|VERBOSITY|minloglevel|LOGGER_LEVEL|PRINTING_URL_TO_STDOUT)", key)
               for key in WORKER_QUIET)
