"""Connecting to Ray and checking, before any trial starts, that every node can reach what trials need.

Ray is imported inside the functions. Preflight failures raise SearchError with what to change.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Iterable

from search.errors import SearchError

PROBE_TIMEOUT_S = 120  # a node that cannot run a 1-CPU probe task in this long is as good as unreachable


def connect(address: str | None = None, env_vars: dict[str, str] | None = None) -> dict:
    """Join the Ray cluster at `address` (or $RAY_ADDRESS), or start/reuse a local one; returns its resources.
    `env_vars` go to every worker through Ray's runtime environment (search.quiet.worker_environment). Ray
    stores, shows and logs a runtime environment in clear, so only the log-level variables of
    search.quiet.WORKER_QUIET may travel this way: never a credential (docs/security.md)."""
    import ray

    from search.quiet import WORKER_QUIET

    unexpected = sorted(set(env_vars or {}) - set(WORKER_QUIET))
    if unexpected:  # a programming error, not user input: nothing else may be logged by Ray in clear
        raise ValueError(f"only log-level variables travel in Ray's runtime environment; not {unexpected}")

    address = address or os.environ.get("RAY_ADDRESS") or None
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=True, configure_logging=False,
                     runtime_env={"env_vars": dict(env_vars)} if env_vars else None)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise SearchError(f"cannot connect to the Ray cluster at {address!r}: {error}. Start one with "
                              "`ray start --head` (or `ray up CLUSTER.yaml`), or leave --address out to run "
                              "locally") from error
    return ray.cluster_resources()


def alive_nodes() -> list[dict]:
    """The cluster's live nodes (Ray's own records) that can run tasks (CPU > 0)."""
    import ray

    return [node for node in ray.nodes() if node.get("Alive") and node.get("Resources", {}).get("CPU", 0) > 0]


def _probe(paths: list[str], marker: str | None) -> dict:
    import socket

    missing = [path for path in paths if not os.path.exists(path)]
    return {"host": socket.gethostname(), "missing": missing,
            "marker_seen": marker is None or os.path.exists(marker)}


def _node_name(node: dict) -> str:
    return f"{node.get('NodeManagerAddress', '?')} (node {node['NodeID'][:8]})"


def _on_every_node(function, *args) -> dict:
    """{node name: object ref} of `function(*args)` run as a task pinned to each live node (0 CPUs, so a
    busy node still runs it; no retries, so a crash is that node's answer)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    remote = ray.remote(num_cpus=0, max_retries=0)(function)
    return {_node_name(node): remote.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node["NodeID"], soft=False)).remote(*args)
            for node in alive_nodes()}


def probe_nodes(paths: Iterable[str], marker: str | None = None) -> dict[str, dict]:
    """Run a tiny task on every node: which of `paths` (and the marker file) does each node see?"""
    import ray

    pending = _on_every_node(_probe, [str(path) for path in paths], marker)
    try:
        values = ray.get(list(pending.values()), timeout=PROBE_TIMEOUT_S)
    except ray.exceptions.GetTimeoutError as error:
        raise SearchError(f"preflight: a node did not answer within {PROBE_TIMEOUT_S} s; check that every "
                          "node is up (`ray status`)") from error
    return dict(zip(pending, values))


def check_reachable(handle, *, timeout_s: float = PROBE_TIMEOUT_S) -> list[str]:
    """Prove that every live Ray node can read a PathHandle's dataset; returns the names of the nodes checked.

    One tiny task per node loads the manifest and opens the first and last image. Raises SearchError naming
    each node that cannot, with its reason. Any other handle returns [] unchecked: an InMemoryHandle travels
    through the object store, and a caller's own handle (tests, notebooks) is the caller's to check."""
    import ray

    from data.handle import PathHandle

    if not isinstance(handle, PathHandle):
        return []
    pending = {ref: name for name, ref in _on_every_node(_probe_dataset, handle.root).items()}
    ready, late = ray.wait(list(pending), num_returns=len(pending), timeout=timeout_s)
    failures = [f"{pending[ref]}: did not answer within {timeout_s:g} s" for ref in late]
    for ref in ready:
        try:
            problem = ray.get(ref)
        except Exception as error:  # a task that crashed on its node is that node's failure
            problem = f"the check crashed ({error.__class__.__name__}: {error})"
        if problem:
            failures.append(f"{pending[ref]}: {problem}")
    for ref in late:
        ray.cancel(ref, force=True)
    if failures:
        raise SearchError(f"preflight: {len(failures)} of {len(pending)} Ray node(s) cannot read the dataset "
                          f"{handle.root}; "
                          "put it on storage every node mounts at the same path, or keep a small dataset in memory "
                          "(mode 'memory'). " + "; ".join(sorted(failures)))
    return sorted(pending.values())


def _probe_dataset(root: str) -> str | None:
    """On one node: None if PREPARED/ at `root` reads, else the reason (runs inside a Ray task)."""
    from data.errors import DataError
    from data.handle import PathHandle

    try:
        paths, _, _, _ = PathHandle(root).load()
    except DataError as error:
        return str(error)
    missing = [path for path in {paths[0], paths[-1]} if not Path(path).is_file()] if paths else ["any image"]
    return f"image file(s) missing: {', '.join(missing)}" if missing else None


def check_tracking(tracking_uri: str, n_nodes: int) -> None:
    """sqlite serves one machine only; a multi-node search needs an `mlflow server`. Also: is it reachable?"""
    if tracking_uri.startswith("sqlite:") and n_nodes > 1:
        raise SearchError(
            f"the tracking store {tracking_uri} is an sqlite file, but the Ray cluster has {n_nodes} nodes: "
            "start an MLflow tracking server (`mlflow server --app-name basic-auth ...`, docs/security.md) "
            "and pass --tracking-uri http://HOST:5000")
    if tracking_uri.startswith(("http://", "https://")):
        from mlflow.tracking import MlflowClient

        previous = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"  # fail fast here; searches keep the default
        try:
            MlflowClient(tracking_uri).search_experiments(max_results=1)
        except Exception as error:
            if getattr(error, "error_code", None) in ("UNAUTHENTICATED", "PERMISSION_DENIED"):  # HTTP 401, 403
                raise SearchError(f"the MLflow tracking server {tracking_uri} refused the driver's credentials "
                                  "(MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD or ~/.mlflow/credentials): "
                                  "check the user, its password and its permissions") from error
            raise SearchError(f"the MLflow tracking server {tracking_uri} is not reachable "
                              f"({type(error).__name__}): start it or fix --tracking-uri") from error
        finally:
            if previous is None:
                os.environ.pop("MLFLOW_HTTP_REQUEST_MAX_RETRIES", None)
            else:
                os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = previous


def is_uri(location: str) -> bool:
    return "://" in str(location)


def check_paths(named_paths: dict[str, str], storage: str | None = None) -> int:
    """Every node sees each local path in `named_paths`; a local `storage` is shared. Returns the node count.

    Shared storage is checked with a marker file written here and looked for on every node: a path that
    merely exists everywhere (each node's own /tmp) is not shared, and Tune would scatter checkpoints.
    """
    local = {name: path for name, path in named_paths.items() if path and not is_uri(path)}
    marker = None
    if storage and not is_uri(storage):
        Path(storage).mkdir(parents=True, exist_ok=True)
        marker = str(Path(storage) / f".cxrtune-preflight-{uuid.uuid4().hex[:8]}")
        Path(marker).write_text("storage shared check\n")
    try:
        answers = probe_nodes(local.values(), marker)
    finally:
        if marker:
            Path(marker).unlink(missing_ok=True)
    problems = []
    for node, answer in answers.items():
        for name, path in local.items():
            if path in answer["missing"]:
                problems.append(f"{name} {path} is not visible on node {node}")
        if not answer["marker_seen"]:
            problems.append(f"--storage {storage} is not shared with node {node} (give a shared "
                            "filesystem path or a URI such as s3://bucket/prefix)")
    if problems:
        raise SearchError("preflight failed: " + "; ".join(problems))
    return len(answers)


def preflight(*, data_handle, weights_dir: str | None, tracking_uri: str, storage: str | None,
              allow_unauthenticated_tracking: bool = False) -> int:
    """All checks before trials start; returns the number of nodes. Raises SearchError on the first problem."""
    from search.security import check_tracking_access, refuse_secrets_tune_would_log, warn_if_ray_unauthenticated

    refuse_secrets_tune_would_log()
    n_nodes = max(1, len(alive_nodes()))
    warn_if_ray_unauthenticated()
    check_tracking_access(tracking_uri, allow_unauthenticated=allow_unauthenticated_tracking)
    check_tracking(tracking_uri, n_nodes)
    named = {"--weights-dir": weights_dir}
    data_path = getattr(data_handle, "root", None) or getattr(data_handle, "path", None)
    if data_path is not None:
        named["prepared data"] = str(data_path)
    check_paths(named, storage)
    check_reachable(data_handle)
    return n_nodes


def check_resources(cpus_per_trial: float, gpus_per_trial: float) -> None:
    """One trial's resources fit on some live node (else its trials would pend forever)."""
    if cpus_per_trial <= 0 or gpus_per_trial < 0:
        raise SearchError(f"--cpus-per-trial must be > 0 and --gpus-per-trial >= 0; got {cpus_per_trial}, "
                          f"{gpus_per_trial}")
    nodes = [node.get("Resources", {}) for node in alive_nodes()]
    if not any(n.get("CPU", 0) >= cpus_per_trial and n.get("GPU", 0) >= gpus_per_trial for n in nodes):
        largest = max(((n.get("CPU", 0), n.get("GPU", 0)) for n in nodes), default=(0, 0))
        raise SearchError(f"no node can hold one trial ({cpus_per_trial} CPUs, {gpus_per_trial} GPUs); the "
                          f"largest node has {largest[0]:g} CPUs and {largest[1]:g} GPUs: lower "
                          "--cpus-per-trial/--gpus-per-trial or add nodes")


def check_weights(configs: list[dict], weights_dir: str | None) -> None:
    """Every source the configs need can be loaded: ImageNet files are fetched here, once, in the driver
    (parallel trials would race on Keras's non-atomic download); a missing one stops the search now,
    not once per trial."""
    from trainables.errors import WeightsError
    from trainables.weights import fetch_imagenet, get_source, source_problem

    problems = []
    for backbone, source in sorted({(c["backbone"], c["source_weights"]) for c in configs}):
        problem = source_problem(backbone, source, weights_dir)
        if problem and not get_source(source).pretrained_here:
            try:
                fetch_imagenet(backbone)
                problem = source_problem(backbone, source, weights_dir)
            except WeightsError as error:
                problem = str(error)
        if problem:
            problems.append(f"{backbone}.{source}: {problem.rstrip('.')}")
    if problems:
        raise SearchError("source weights missing for some configs: " + "; ".join(problems) +
                          ". Provide them, or leave those configs out with --available-sources")
