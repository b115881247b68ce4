"""A search on a multi-node Ray cluster simulated on one machine (ray.cluster_utils.Cluster, 2 nodes of 1
CPU), logged to a real `mlflow server` over HTTP, with the preflight checks that must fail fast; and the
dataset reachability check on the session's local Ray.

The cluster runs in a subprocess: the test session's own local Ray (`ray_local`) cannot share the process.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from data.handle import PathHandle, make_handle
from search.cluster import check_reachable, is_uri
from search.errors import SearchError
from test_data_handle import write_prepared
from test_search_tuner import mlflow_runs

TESTS_DIR = Path(__file__).resolve().parent
CLUSTER_TIMEOUT_S = 400


def run_on_two_nodes(out_dir: Path, log_dir: Path, server_url: str) -> dict:
    script = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(TESTS_DIR)!r})
        import ray
        from ray.cluster_utils import Cluster

        # 2 nodes of 1 CPU and 1 (declared) GPU each: Ray schedules and sets CUDA_VISIBLE_DEVICES as for real
        cluster = Cluster(initialize_head=True, head_node_args={{"num_cpus": 1, "num_gpus": 1}})
        cluster.add_node(num_cpus=1, num_gpus=1)
        cluster.wait_for_nodes()
        import test_search_tuner as scripted
        scripted.pickle_by_value()
        from search.errors import SearchError
        from search.settings import SearchSettings
        from search.tuner import run_search

        data = scripted.ScriptedData({{1e-4: 0.6, 2e-4: 0.7}}, sleep_s=0.5, log_dir={str(log_dir)!r})
        space = scripted.scripted_space([1e-4, 2e-4], epochs=2)
        common = dict(data=data, space=space, out_dir={str(out_dir)!r}, trainable=scripted.scripted_fold)
        result = {{}}
        for name, address, extra in (
                ("sqlite", cluster.address, {{}}),  # run_search joins the cluster
                ("weights", None, {{"tracking_uri": {server_url!r}, "weights_dir": "/no/such/weights"}})):
            try:
                run_search(SearchSettings(name=name, n_folds=2, **extra), address=address, **common)
                result[name] = "no error"
            except SearchError as error:
                result[name] = str(error)
        result["nodes"] = len([n for n in ray.nodes() if n["Alive"]])
        run_search(SearchSettings(name="cluster", n_folds=2, tracking_uri={server_url!r}, storage="relative-storage",
                                  scheduler="fifo", gpus_per_trial=0.5, cpus_per_trial=0.5),
                   **common)  # fifo: every trial runs both epochs
        print("RESULT " + json.dumps(result), flush=True)
        ray.shutdown()
        cluster.shutdown()
    """)
    # conftest hides GPUs with CUDA_VISIBLE_DEVICES=""; Ray refuses declared GPUs under it. The scripted
    # trainable imports no TensorFlow, so nothing probes a GPU.
    env = {key: value for key, value in os.environ.items() if key != "CUDA_VISIBLE_DEVICES"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=CLUSTER_TIMEOUT_S, cwd=out_dir.parent, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, f"cluster script failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.slow
def test_two_node_search_with_a_tracking_server_and_failing_preflights(tmp_path, mlflow_server):
    out_dir, log_dir = tmp_path / "out", tmp_path / "log"
    out_dir.mkdir()
    log_dir.mkdir()
    result = run_on_two_nodes(out_dir, log_dir, mlflow_server)
    assert result["nodes"] == 2
    assert "sqlite file, but the Ray cluster has 2 nodes" in result["sqlite"] and "--tracking-uri" in result["sqlite"]
    assert result["weights"].count("--weights-dir /no/such/weights is not visible on node") == 2
    # a relative --storage is made absolute (and passes the shared check: both nodes share this disk)
    assert (tmp_path / "relative-storage" / "cluster").is_dir()
    assert json.loads((out_dir / "cluster" / "search.json").read_text())["storage_path"] == str(
        tmp_path / "relative-storage")

    search_dir = out_dir / "cluster"
    trials = pd.read_csv(search_dir / "trials.csv", dtype={"config_id": str})
    assert len(trials) == 4 and (trials["stop_reason"] == "completed").all()
    starts = [line.split() for line in (log_dir / "starts.txt").read_text().splitlines()]
    assert len({start[2] for start in starts}) == 2  # both nodes trained
    assert {start[3] for start in starts} == {"0"}  # half a GPU each: each trial sees its node's GPU 0
    assert (trials["gpus"] == 0.5).all() and (trials["cpus"] == 0.5).all()

    runs = json.loads((search_dir / "mlflow_runs.json").read_text())
    assert runs["tracking_uri"] == mlflow_server and not is_uri(str(search_dir))
    client, all_runs = mlflow_runs(mlflow_server, "cluster")
    assert len(all_runs) == 1 + 2 + 4
    for key, run_id in runs["trials"].items():
        run = client.get_run(run_id)
        assert run.data.params["fold"] == key.split("/")[1]
        assert sorted(m.step for m in client.get_metric_history(run_id, "val_auc")) == [1, 2]
        assert run.data.tags["stop_reason"] == "completed"
    for config_id, run_id in runs["configs"].items():
        folds = trials[trials["config_id"] == config_id]["val_auc"]
        metrics = client.get_run(run_id).data.metrics
        assert metrics["val_auc"] == pytest.approx(folds.mean())
        assert metrics["gpu_seconds_per_epoch"] == pytest.approx(0.5 * 0.5)  # 0.5 GPU x 0.5 s steady epoch
        assert metrics["gpu_seconds"] == pytest.approx(2 * 0.5 * (2.0 + 0.5))  # 2 folds x (traced + 1)
    assert not (out_dir / "mlflow.db").exists()  # nothing went to the default sqlite store


def test_reachable_path_passes_on_every_node_and_memory_needs_no_check(tmp_path, ray_local):
    write_prepared(tmp_path / "p")
    checked = check_reachable(make_handle(tmp_path / "p", mode="path"))
    assert len(checked) == len([node for node in ray_local.nodes() if node["Alive"]]) >= 1
    assert check_reachable(make_handle(tmp_path / "p", mode="memory")) == []


def test_unreachable_path_names_the_node_and_the_reason(tmp_path, ray_local):
    write_prepared(tmp_path / "p")
    handle = make_handle(tmp_path / "p", mode="path")
    (tmp_path / "p" / "images" / "im11.png").unlink()  # as if the node saw a stale copy
    node_address = ray_local.nodes()[0]["NodeManagerAddress"]
    with pytest.raises(SearchError, match=rf"1 of 1 Ray node.*{node_address} \(node .*im11\.png"):
        check_reachable(handle)
    with pytest.raises(SearchError, match=r"cannot read the dataset /nowhere/p.*is not a prepared dataset"):
        check_reachable(PathHandle("/nowhere/p"))
