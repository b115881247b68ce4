"""Searches meeting failures from outside: a trial that always raises, an MLflow server that goes away."""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from conftest import free_port, migrated_store, start_mlflow_server, stop_mlflow_server

FAILING_LEARNING_RATE = 1e-3


def raising_or_reporting(config: dict, data) -> None:
    """A function trainable: one config raises in its first epoch every time, the other reports 2 epochs."""
    from ray import tune

    flat = config.get("trial_config", config)
    for epoch in (1, 2):
        if float(flat["learning_rate"]) == FAILING_LEARNING_RATE:
            raise RuntimeError(f"scripted: the model does not fit in memory (epoch {epoch})")
        auc = 0.6 + 0.01 * epoch
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "state.json").write_text(json.dumps({"epoch": epoch}))
            tune.report({"epoch": float(epoch), "val_auc": auc, "val_binary_accuracy": 0.7, "val_loss": 0.5,
                         "train_loss": 0.5, "epoch_time_s": 0.1, "images_per_s": 10.0, "traced": 0.0,
                         "trainable_params": 10.0, "total_params": 20.0, "gpus": 0.0},
                        checkpoint=tune.Checkpoint.from_directory(folder))


@pytest.mark.slow
def test_a_trial_that_always_raises_ends_in_error_with_its_reason_and_the_rest_finishes(ray_local, tmp_path):
    import ray.cloudpickle

    from search.settings import SearchSettings
    from search.tuner import run_search
    from tests.test_search_tuner import ScriptedData, migrated_store, mlflow_runs, scripted_space

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.cloudpickle.register_pickle_by_value(sys.modules["tests.test_search_tuner"])
    migrated_store(tmp_path / "out" / "mlflow.db")
    search_dir = run_search(SearchSettings(name="raise", n_folds=2, scheduler="fifo", max_failures=1),
                            data=ScriptedData({1e-4: 0.6, FAILING_LEARNING_RATE: 0.6}),
                            space=scripted_space([1e-4, FAILING_LEARNING_RATE], epochs=2),
                            out_dir=tmp_path / "out", trainable=raising_or_reporting)
    trials = pd.read_csv(search_dir / "trials.csv", keep_default_na=False)
    failing = trials["learning_rate"].astype(float) == FAILING_LEARNING_RATE
    assert (trials.loc[failing, "status"] == "ERROR").all() and (trials.loc[failing, "failures"] >= 1).all()
    assert trials.loc[failing, "error"].str.contains("does not fit in memory").all()
    assert (trials.loc[~failing, "status"] == "TERMINATED").all() and (trials.loc[~failing, "error"] == "").all()
    assert (trials.loc[~failing, "epochs_done"] == 2).all()
    runs = json.loads((search_dir / "mlflow_runs.json").read_text())
    client, _ = mlflow_runs(runs["tracking_uri"], "raise")
    statuses = {}
    for key, run_id in runs["trials"].items():
        run = client.get_run(run_id)
        statuses[key] = run.info.status
        if run.info.status == "FAILED":
            assert "does not fit in memory" in run.data.tags["last_failure"]
    assert sorted(statuses.values()) == ["FAILED", "FAILED", "FINISHED", "FINISHED"]


@pytest.mark.slow
def test_mlflow_server_going_away_keeps_what_was_not_logged_and_replays_it(tmp_path, monkeypatch, capsys):
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    from search.cli import main
    from search.tracking import write_runs
    from search.tracking_outbox import OUTBOX_FILE, OutboxClient

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail fast: the test waits for no backoff
    store, port = tmp_path / "server.db", free_port()
    backend = migrated_store(store)
    uri = f"http://127.0.0.1:{port}"
    search_dir = tmp_path / "out" / "s"
    search_dir.mkdir(parents=True)
    server = start_mlflow_server(backend, port, tmp_path / "server.log")
    try:
        client = OutboxClient(MlflowClient(uri), search_dir)
        experiment = client.create_experiment("s")
        parent = client.create_run(experiment).info.run_id
        client.log_batch(parent, metrics=[Metric("seen", 1.0, 0, 1)])
        stop_mlflow_server(server, crash=True)  # gone at once, as in a crash
        # The server is gone: the writes are kept, a new run gets a placeholder id, nothing raises.
        child = client.create_run(experiment, run_name="fold", tags={"mlflow.parentRunId": parent}).info.run_id
        client.log_batch(child, metrics=[Metric("val_auc", 0.7, 0, step) for step in (1, 2)])
        client.set_terminated(child, status="FINISHED")
        client.set_terminated(parent, status="FINISHED")
        assert child.startswith("outbox-") and len((search_dir / OUTBOX_FILE).read_text().splitlines()) == 4
        write_runs(search_dir, {"tracking_uri": uri, "experiment_id": experiment, "parent_run_id": parent,
                                "configs": {}, "trials": {"c/0": child}})
        assert main(["replay-mlflow", "s", "--out", str(tmp_path / "out")]) == 2  # still away: one line
        assert "did not take all calls" in capsys.readouterr().err
        server = start_mlflow_server(backend, port, tmp_path / "server.log")
        assert main(["replay-mlflow", "s", "--out", str(tmp_path / "out")]) == 0
    finally:
        stop_mlflow_server(server, crash=True)  # gone at once, as in a crash
    assert not (search_dir / OUTBOX_FILE).exists()
    real_child = json.loads((search_dir / "mlflow_runs.json").read_text())["trials"]["c/0"]
    check = MlflowClient(f"sqlite:///{store}")
    run = check.get_run(real_child)
    assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == parent
    assert [m.step for m in check.get_metric_history(real_child, "val_auc")] == [1, 2]
    assert check.get_run(parent).info.status == "FINISHED"
