"""MLflow from the driver: URIs, fold aggregates, and a search logged to a real `mlflow server` over HTTP."""
from __future__ import annotations

import json
import math
import time
import urllib.request
from pathlib import Path

import pytest

from search.cluster import check_tracking
from search.errors import SearchError
from search.tracking import (absolute_tracking_uri, artifact_location, config_run_names, fold_aggregates,
                             open_search_tracking)
from conftest import free_port, migrated_store
from test_search_tuner import ScriptedData, pickle_by_value, scripted_fold, scripted_space



def test_tracking_uris_are_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute_tracking_uri(None, Path("out")) == f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}"
    assert absolute_tracking_uri("sqlite:///rel/m.db", tmp_path) == f"sqlite:///{tmp_path / 'rel' / 'm.db'}"
    assert absolute_tracking_uri("sqlite:////abs/m.db", tmp_path) == "sqlite:////abs/m.db"
    assert absolute_tracking_uri("http://127.0.0.1:5000", tmp_path) == "http://127.0.0.1:5000"
    with pytest.raises(SearchError, match="not a URI"):
        absolute_tracking_uri("mlflow.db", tmp_path)
    assert absolute_tracking_uri(None) is None  # pretrain without --tracking-uri: nothing tracked
    # An sqlite store's artifacts beside it, wherever the process runs; a server chooses its own.
    assert artifact_location("sqlite:///rel/m.db") == (tmp_path / "rel" / "mlartifacts").as_uri()
    assert artifact_location("http://127.0.0.1:5000") is None


def test_fold_aggregates_use_the_fold_runs_keys_and_the_sample_std():
    finals = {0: {"val_auc": 0.6, "val_binary_accuracy": 0.8, "steady_epoch_time_s": 2.0, "gpu_seconds": 10.0,
                  "trainable_params": 100.0},
              1: {"val_auc": 0.8, "val_binary_accuracy": 0.9, "steady_epoch_time_s": 4.0, "gpu_seconds": 20.0,
                  "trainable_params": 100.0, "val_auc_nodule": math.nan}}
    aggregates = fold_aggregates(finals)
    assert aggregates["n_folds_done"] == 2
    assert aggregates["val_auc"] == pytest.approx(0.7)
    # The sample std (ddof=1), as fold_table.csv and the study: folds at 0.6 and 0.8 give 0.141, not 0.100.
    assert aggregates["val_auc_std"] == pytest.approx(0.1414214)
    assert aggregates["val_binary_accuracy"] == pytest.approx(0.85)
    assert aggregates["steady_epoch_time_s"] == pytest.approx(3.0)
    assert "steady_epoch_time_s_std" not in aggregates  # a cost, not a result: no spread
    assert aggregates["gpu_seconds"] == pytest.approx(30.0)
    assert "val_auc_nodule" not in aggregates  # a NaN fold value is left out, not averaged
    one_fold = fold_aggregates({0: {"val_auc": 0.6}})
    assert one_fold["val_auc"] == 0.6 and "val_auc_std" not in one_fold  # no std from one fold
    assert "gpu_seconds" not in one_fold  # a CPU search has no GPU cost: absent, not 0


def test_config_runs_are_named_in_words_with_an_id_only_when_needed():
    base = {"backbone": "resnet50", "method": "B", "freeze": "conv4", "source_weights": "imagenet"}
    names = config_run_names([dict(base, config_id="aaaaaaaaaa"), dict(base, config_id="bbbbbbbbbb"),
                              dict(base, config_id="cccccccccc", method="D", freeze="none", source_weights="none")])
    assert names == {"aaaaaaaaaa": "resnet50 B conv4 imagenet aaaaaa", "bbbbbbbbbb": "resnet50 B conv4 imagenet bbbbbb",
                     "cccccccccc": "resnet50 D random init"}


def test_sqlite_with_several_nodes_asks_for_a_tracking_server(tmp_path):
    check_tracking(f"sqlite:///{tmp_path}/m.db", 1)
    with pytest.raises(SearchError, match="sqlite.*2 nodes.*mlflow server.*--tracking-uri"):
        check_tracking(f"sqlite:///{tmp_path}/m.db", 2)


def test_an_unreachable_tracking_server_fails_fast():
    port = free_port()
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


# A search logged to this server over HTTP, on a simulated 2-node cluster: tests/test_search_cluster.py


def _rest(url: str, path: str, body: dict | None = None) -> dict:
    """One call of MLflow's REST API (GET with a query string, or POST with a JSON body)."""
    if body is None:
        request = urllib.request.Request(f"{url}{path}")
    else:
        request = urllib.request.Request(f"{url}{path}", data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_a_search_reads_well_in_mlflow(ray_local, mlflow_server, tmp_path, capsys):
    """Through the REST API of a real `mlflow server`: the experiment opens as a training experiment,
    runs have names, config runs share the fold runs' keys, and the parent run tells the story."""
    from search.settings import SearchSettings
    from search.tuner import run_search

    pickle_by_value()
    data = ScriptedData({1e-4: 0.6, 2e-4: 0.7})
    search_dir = run_search(SearchSettings(name="readable", n_folds=2, scheduler="fifo", tracking_uri=mlflow_server),
                            data=data, space=scripted_space([1e-4, 2e-4], epochs=2), out_dir=tmp_path / "out",
                            trainable=scripted_fold, progress_interval_s=0)
    printed = capsys.readouterr().out
    experiment = _rest(mlflow_server, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=readable")["experiment"]
    tags = {tag["key"]: tag["value"] for tag in experiment["tags"]}
    assert tags["mlflow.experimentKind"] == "custom_model_development"  # what the UI reads to pick its view
    runs = _rest(mlflow_server, "/api/2.0/mlflow/runs/search",
                 {"experiment_ids": [experiment["experiment_id"]], "max_results": 100})["runs"]

    def kind(run):
        return {t["key"]: t["value"] for t in run["data"].get("tags", [])}.get("cxrtune.kind")

    def metrics(run):
        return {m["key"]: m["value"] for m in run["data"].get("metrics", [])}

    by_kind = {}
    for run in runs:
        by_kind.setdefault(kind(run), []).append(run)
    assert {k: len(v) for k, v in by_kind.items()} == {"search": 1, "config": 2, "fold": 4}
    saved = json.loads((search_dir / "mlflow_runs.json").read_text())
    config_names = {run["info"]["run_name"] for run in by_kind["config"]}
    assert config_names == {f"resnet50 A imagenet {config_id[:6]}" for config_id in saved["configs"]}
    assert {run["info"]["run_name"] for run in by_kind["fold"]} == {
        f"{name} fold {fold}" for name in config_names for fold in (0, 1)}
    assert by_kind["search"][0]["info"]["run_name"] == "readable"

    for run in by_kind["fold"]:
        assert not {"epoch", "gpus", "traced", "gpu_seconds", "gpu_seconds_per_epoch"} & set(metrics(run))
        assert {t["key"]: t["value"] for t in run["data"]["tags"]}["traced_epochs"] == "1"
    for run in by_kind["config"]:
        values = metrics(run)
        fold_keys = set().union(*(metrics(fold) for fold in by_kind["fold"]
                                  if fold["info"]["run_name"].startswith(run["info"]["run_name"])))
        shared = {key for key in values if not key.endswith("_std") and key != "n_folds_done"}
        assert "val_auc" in shared and shared <= fold_keys  # one column per quantity in the runs table
        assert values["val_auc_std"] == pytest.approx(0.02 / math.sqrt(2))  # folds 0.02 apart, sample std
        history = _rest(mlflow_server, f"/api/2.0/mlflow/metrics/get-history?run_id={run['info']['run_id']}"
                                       "&metric_key=val_auc")["metrics"]
        assert {point["step"] for point in history} == {0}  # not a curve over "folds done"
        assert not {"gpu_seconds", "total_gpu_seconds"} & set(values)

    parent = by_kind["search"][0]
    story = metrics(parent)
    assert story["trials_completed"] == 4 and story["trials_failed"] == 0 and story["configs_full_budget"] == 2
    assert story["val_auc"] == pytest.approx(0.7 + 0.02 - 0.01)  # lr 2e-4 after 2 epochs, mean of 2 folds
    parent_tags = {t["key"]: t["value"] for t in parent["data"]["tags"]}
    assert saved["configs"][parent_tags["best_config_id"]] == parent_tags["best_config_run_id"]
    assert "Best config" in parent_tags["mlflow.note.content"]
    artifacts = _rest(mlflow_server, f"/api/2.0/mlflow/artifacts/list?run_id={parent['info']['run_id']}")
    assert {"fold_table.csv", "pareto.csv", "pareto.json", "pareto.png", "trials.csv", "report"} <= {
        entry["path"] for entry in artifacts["files"]}

    assert "trials: 4 completed, 0 stopped early, 0 failed" in printed
    assert f"#/experiments/{experiment['experiment_id']}/runs?workflowType=machine_learning" in printed
    assert "disk: " in printed and " MB in " in printed
    fold_table = (search_dir / "fold_table.csv").read_text().splitlines()
    header, first = fold_table[0].split(","), fold_table[1].split(",")
    assert first[header.index("n_folds_done")] == "2" and first[header.index("trainable_params")] == "8000"


def test_a_refused_search_leaves_no_folder_behind(tmp_path):
    from search.settings import SearchSettings
    from search.tuner import run_search

    with pytest.raises(Exception, match="missing"):
        run_search(SearchSettings(name="refused", n_folds=2), data=tmp_path / "missing", space="demo",
                   out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
