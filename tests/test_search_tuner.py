"""The search driver end to end on local Ray with a scripted trainable whose curves are known.

The scripted trainable (also used by the scheduler, tracking, cluster and resume tests) reports the
ARCHITECTURE §6 metrics once per epoch with val_auc = base[learning_rate] + 0.01 * epoch - offset * fold,
checkpoints every epoch, and can fail once at a chosen epoch.
"""
from __future__ import annotations

import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import migrated_store
from search.errors import SearchError

PATIENT_MARK = "PATIENT-SECRET"  # a fake patient identifier in the scripted manifest; must never be logged


class ScriptedData:
    """A picklable stand-in for a DatasetHandle; its fields script the trainable."""

    categories = ["effusion", "nodule"]

    def __init__(self, base: dict[float, float], *, fold_offset: float = 0.02, sleep_s: float = 0.0,
                 log_dir: str | None = None, fail_at_epoch: int | None = None, unwind_s: float = 0.0):
        self.base, self.fold_offset, self.sleep_s = dict(base), fold_offset, sleep_s
        self.log_dir, self.fail_at_epoch = log_dir, fail_at_epoch
        self.unwind_s = unwind_s  # how long a trial the scheduler stops takes to end (a real fit frees its model)

    def load(self):
        manifest = pd.DataFrame({"image_id": ["a", "b"], "patient_key": [PATIENT_MARK + "1", PATIENT_MARK + "2"],
                                 "split": ["cv", "cv"], "fold": [0, 1]})
        return np.zeros((2, 8, 8), np.uint8), np.zeros((2, 2), np.uint8), manifest, list(self.categories)

    def auc(self, learning_rate: float, fold: int, epoch: int) -> float:
        return self.base[learning_rate] + 0.01 * epoch - self.fold_offset * fold


def scripted_fold(config: dict, data: ScriptedData) -> None:
    """Function trainable: one tune.report per epoch with a checkpoint holding the epoch."""
    from ray import tune

    flat = config.get("trial_config", config)
    key = f"{flat['config_id']}-{flat['fold']}"
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            start = json.loads((Path(folder) / "state.json").read_text())["epoch"]
    if data.log_dir:
        import ray

        gpus = os.environ.get("CUDA_VISIBLE_DEVICES") or "-"  # Ray sets it for a trial given GPUs
        with open(Path(data.log_dir) / "starts.txt", "a") as stream:  # trial, first epoch - 1, node, GPUs
            stream.write(f"{key} {start} {ray.get_runtime_context().get_node_id()} {gpus}\n")
    for epoch in range(start + 1, int(flat["epochs"]) + 1):
        if data.fail_at_epoch == epoch and data.log_dir:
            marker = Path(data.log_dir) / f"failed-{key}"
            if not marker.exists():
                marker.write_text("once\n")
                raise RuntimeError(f"scripted failure at epoch {epoch}")
        time.sleep(data.sleep_s)
        auc = data.auc(float(flat["learning_rate"]), int(flat["fold"]), epoch)
        metrics = {"epoch": float(epoch), "val_auc": auc, "val_auc_labels_scored": 2.0,
                   "val_binary_accuracy": 0.5 + auc / 4, "val_loss": 1.0 - auc, "train_loss": 1.0 - auc,
                   "epoch_time_s": 0.5 if epoch > 1 else 2.0, "images_per_s": 10.0,
                   "traced": 1.0 if epoch == 1 else 0.0, "trainable_params": 1000.0 * flat["batch_size"],
                   "total_params": 5000.0, "gpus": 0.0,
                   "val_auc_effusion": auc + 0.01, "val_auc_nodule": auc - 0.01}
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "state.json").write_text(json.dumps({"epoch": epoch}))
            try:
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
            except SystemExit:  # how Tune ends a trial it stops, inside report
                time.sleep(data.unwind_s)
                raise


def scripted_space(learning_rates, *, epochs: int = 3, batch_size=8) -> dict:
    return {"name": "scripted", "backbone": "resnet50", "method": "A", "source_weights": "imagenet",
            "image_size": 32, "epochs": epochs, "batch_size": batch_size, "learning_rate": list(learning_rates),
            "dropout": 0.5, "frozen_bn": "inference"}


def pickle_by_value() -> None:
    """Ray workers cannot import this test module by name: ship its code with the pickles."""
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def mlflow_runs(tracking_uri: str, experiment_name: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    return client, client.search_runs([experiment.experiment_id], max_results=1000)


@pytest.mark.slow
def test_search_writes_every_output_and_one_mlflow_run_per_trial(ray_local, tmp_path, capsys):
    from search.settings import SearchSettings
    from search.tuner import run_search

    pickle_by_value()
    migrated_store(tmp_path / "mlflow.db")
    data = ScriptedData({1e-4: 0.6, 2e-4: 0.7})
    search_dir = run_search(SearchSettings(name="s1", n_folds=2, scheduler="fifo"), data=data,
                            space=scripted_space([1e-4, 2e-4]), out_dir=tmp_path, trainable=scripted_fold,
                            progress_interval_s=0)
    assert search_dir == tmp_path / "s1"
    for name in ("search.json", "mlflow_runs.json", "trials.csv", "fold_table.csv", "pareto.csv", "pareto.png"):
        assert (search_dir / name).is_file(), name
    trials = pd.read_csv(search_dir / "trials.csv", dtype={"config_id": str})
    assert len(trials) == 4 and set(trials["fold"]) == {0, 1}
    assert (trials["status"] == "TERMINATED").all() and (trials["epochs_done"] == 3).all()
    assert (trials["stop_reason"] == "completed").all() and (trials["failures"] == 0).all()
    assert trials["steady_epoch_time_s"].tolist() == [0.5] * 4  # traced first epoch left out
    best = trials[(trials["learning_rate"] == 2e-4) & (trials["fold"] == 1)].iloc[0]
    assert best["val_auc"] == pytest.approx(0.7 + 0.03 - 0.02)

    runs = json.loads((search_dir / "mlflow_runs.json").read_text())
    assert len(runs["configs"]) == 2 and len(runs["trials"]) == 4
    client, all_runs = mlflow_runs(runs["tracking_uri"], "s1")
    assert runs["tracking_uri"] == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert len(all_runs) == 1 + 2 + 4
    by_id = {run.info.run_id: run for run in all_runs}
    for key, run_id in runs["trials"].items():
        run = by_id[run_id]
        config_id, fold = key.split("/")
        assert run.data.tags["mlflow.parentRunId"] == runs["configs"][config_id]
        assert run.data.params["fold"] == fold and run.data.params["config_id"] == config_id
        assert run.data.tags["stop_reason"] == "completed" and run.info.status == "FINISHED"
        history = client.get_metric_history(run_id, "val_auc")
        assert [m.step for m in sorted(history, key=lambda m: m.step)] == [1, 2, 3]
        assert "val_auc_effusion" in run.data.metrics
    for config_id, run_id in runs["configs"].items():
        config_run = by_id[run_id]
        assert config_run.data.tags["mlflow.parentRunId"] == runs["parent_run_id"]
        assert config_run.data.metrics["n_folds_done"] == 2
        folds = trials[trials["config_id"] == config_id]["val_auc"]
        assert config_run.data.metrics["val_auc"] == pytest.approx(folds.mean())  # the fold runs' own keys
        assert "val_binary_accuracy_std" in config_run.data.metrics
    assert by_id[runs["parent_run_id"]].info.status == "FINISHED"
    assert PATIENT_MARK.encode() not in (tmp_path / "mlflow.db").read_bytes()
    with sqlite3.connect(tmp_path / "mlflow.db") as db:  # nothing patient-like hides in params or tags
        texts = db.execute("select value from params union all select value from tags").fetchall()
    assert not [text for (text,) in texts if PATIENT_MARK in str(text)]

    printed = capsys.readouterr().out
    assert "running  pending  done  stopped  error" in printed
    assert f"mlflow ui --backend-store-uri sqlite:///{tmp_path / 'mlflow.db'}" in printed

    with pytest.raises(SearchError, match="already exists.*--resume"):
        run_search(SearchSettings(name="s1", n_folds=2), data=data, space=scripted_space([1e-4]), out_dir=tmp_path,
                   trainable=scripted_fold)


@pytest.mark.slow
def test_failed_trial_is_retried_from_its_checkpoint_and_recorded(ray_local, tmp_path):
    from search.settings import SearchSettings
    from search.tuner import run_search

    pickle_by_value()
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    migrated_store(tmp_path / "out" / "mlflow.db")
    data = ScriptedData({1e-4: 0.6}, log_dir=str(log_dir), fail_at_epoch=3)
    search_dir = run_search(SearchSettings(name="retry", n_folds=2, scheduler="fifo", max_failures=1), data=data,
                            space=scripted_space([1e-4], epochs=4), out_dir=tmp_path / "out", trainable=scripted_fold)
    trials = pd.read_csv(search_dir / "trials.csv", dtype={"config_id": str})
    assert (trials["failures"] == 1).all() and (trials["epochs_done"] == 4).all()
    assert (trials["status"] == "TERMINATED").all()
    starts = sorted(line.split()[1] for line in (log_dir / "starts.txt").read_text().splitlines())
    assert starts == ["0", "0", "2", "2"]  # each fold restarted after its last checkpoint (epoch 2)
    runs = json.loads((search_dir / "mlflow_runs.json").read_text())
    client, all_runs = mlflow_runs(runs["tracking_uri"], "retry")
    assert len(all_runs) == 1 + 1 + 2
    for run_id in runs["trials"].values():
        run = client.get_run(run_id)
        assert run.data.tags["failures"] == "1" and "scripted failure" in run.data.tags["last_failure"]
        steps = sorted(m.step for m in client.get_metric_history(run_id, "val_auc"))
        assert steps == [1, 2, 3, 4]


@pytest.mark.slow
def test_failure_beyond_max_failures_ends_in_error_and_is_recorded(ray_local, tmp_path):
    from search.settings import SearchSettings
    from search.tuner import run_search

    pickle_by_value()
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    migrated_store(tmp_path / "out" / "mlflow.db")
    data = ScriptedData({1e-4: 0.6}, log_dir=str(log_dir), fail_at_epoch=2)
    search_dir = run_search(SearchSettings(name="err", n_folds=2, scheduler="fifo", max_failures=0), data=data,
                            space=scripted_space([1e-4]), out_dir=tmp_path / "out", trainable=scripted_fold)
    trials = pd.read_csv(search_dir / "trials.csv", dtype={"config_id": str})
    assert (trials["status"] == "ERROR").all() and (trials["stop_reason"] == "error").all()
    runs = json.loads((search_dir / "mlflow_runs.json").read_text())
    client, _ = mlflow_runs(runs["tracking_uri"], "err")
    for run_id in runs["trials"].values():
        run = client.get_run(run_id)
        assert run.info.status == "FAILED" and run.data.tags["stop_reason"] == "error"


def test_bad_flags_are_refused_with_what_is_accepted(ray_local, tmp_path):
    from search.settings import SearchSettings
    from search.tuner import run_search

    data, space = ScriptedData({1e-4: 0.6}), scripted_space([1e-4])
    with pytest.raises(SearchError, match="--name"):
        SearchSettings(name="../escape")
    with pytest.raises(SearchError, match="at least 2 folds"):
        SearchSettings(name="x", n_folds=1)
    with pytest.raises(SearchError, match="--keep-checkpoints 'all': choose one of final, none"):
        SearchSettings(name="k", keep_checkpoints="all")
    with pytest.raises(SearchError, match="unknown scheduler 'hyperband'.*fold-asha, asha, fifo"):
        run_search(SearchSettings(name="y", n_folds=2, scheduler="hyperband"), data=data, space=space,
                   out_dir=tmp_path, trainable=scripted_fold)
    with pytest.raises(SearchError, match="resnet50.chestxray8: no weights.*--available-sources"):
        run_search(SearchSettings(name="w", n_folds=2, overrides={"source_weights": "chestxray8"},
                                  weights_dir=str(tmp_path / "empty")), data=data, space=space, out_dir=tmp_path)
    with pytest.raises(SearchError, match="no node can hold one trial"):
        run_search(SearchSettings(name="z", n_folds=2, cpus_per_trial=64), data=data, space=space, out_dir=tmp_path,
                   trainable=scripted_fold)


def write_prepared(root: Path, n_patients: int = 8) -> Path:
    """A tiny PREPARED folder (ARCHITECTURE §2) without folds: 2 images per patient, 2 categories."""
    from PIL import Image

    (root / "images").mkdir(parents=True)
    rows = []
    for index in range(2 * n_patients):
        image_id = f"img{index:03d}"
        Image.fromarray(np.full((16, 16), index * 7 % 255, np.uint8)).save(root / "images" / f"{image_id}.png")
        rows.append({"image_id": image_id, "image_path": f"images/{image_id}.png",
                     "patient_key": f"{index // 2:016x}", "source_path": f"{image_id}.dcm",
                     "effusion": index % 2, "nodule": (index // 2) % 2})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    (root / "summary.json").write_text(json.dumps({
        "counts": {"input": len(rows), "accepted": len(rows), "rejected": 0, "duplicate": 0},
        "categories": ["effusion", "nodule"], "image_size": 16, "bit_depth": 8, "format": "hospital"}))
    return root


@pytest.mark.slow
def test_a_prepared_folder_without_folds_gets_them_from_the_search_and_keeps_them(ray_local, tmp_path):
    from data.handle import InMemoryHandle
    from data.manifest import load_prepared
    from search.search_data import reload_handle
    from search.settings import SearchSettings, read_settings
    from search.tuner import run_search

    pickle_by_value()
    prepared = write_prepared(tmp_path / "prepared")
    migrated_store(tmp_path / "out" / "mlflow.db")
    search_dir = run_search(SearchSettings(name="prep", n_folds=2, scheduler="fifo"), data=prepared,
                            space=scripted_space([1e-4], epochs=1), out_dir=tmp_path / "out", trainable=trial_on_folds)
    manifest = load_prepared(prepared).manifest
    assert set(manifest.loc[manifest["split"] == "cv", "fold"]) == {0, 1}
    saved = pd.read_csv(search_dir / "folds.csv", dtype={"image_id": str})
    assert saved["fold"].tolist() == manifest["fold"].astype(int).tolist()
    trials = pd.read_csv(search_dir / "trials.csv", dtype={"config_id": str})
    # each trial saw its own fold's validation rows (reported as val_auc_labels_scored below)
    expected = manifest[manifest["split"] == "cv"].groupby("fold").size().to_dict()
    assert dict(zip(trials["fold"], trials["val_auc_labels_scored"])) == expected
    settings = read_settings(search_dir)
    assert settings.data == {"kind": "prepared", "path": str(prepared), "mode": "auto"}
    assert isinstance(reload_handle(settings, search_dir), InMemoryHandle)
    # someone reassigns the folds with another seed: a resume would mix two fold sets, so it is refused
    from data.folds import assign_prepared_folds

    assign_prepared_folds(prepared, n_folds=2, seed=7)
    if not load_prepared(prepared).manifest["fold"].astype(int).equals(saved["fold"]):
        with pytest.raises(SearchError, match="differ from those this search started with"):
            reload_handle(settings, search_dir)


def trial_on_folds(config: dict, data) -> None:
    """A trainable that checks the handle it got: reports its fold's validation size as a metric."""
    from ray import tune

    flat = config.get("trial_config", config)
    _, _, manifest, categories = data.load()
    assert flat["n_classes"] == len(categories) == 2
    val_rows = int(((manifest["split"] == "cv") & (manifest["fold"] == flat["fold"])).sum())
    tune.report({"epoch": 1.0, "val_auc": 0.5, "val_auc_labels_scored": float(val_rows), "epoch_time_s": 0.1,
                 "traced": 1.0, "trainable_params": 10.0})


def test_cli_set_values_are_yaml_and_bad_ones_are_refused():
    from search.cli.search import parse_overrides

    assert parse_overrides(["epochs=2", "learning_rate=[1.0e-4, 1.0e-3]", "method=A"]) == {
        "epochs": 2, "learning_rate": [1e-4, 1e-3], "method": "A"}
    with pytest.raises(SearchError, match="expected KEY=VALUE"):
        parse_overrides(["epochs"])


def test_cli_refuses_incomplete_or_mixed_flags_in_one_line(tmp_path, capsys):
    from search.cli import main

    assert main(["search", "--data", str(tmp_path)]) == 2
    assert "a new search needs --space, --name (or --resume NAME" in capsys.readouterr().err
    assert main(["search", "--resume", "old", "--name", "new", "--out", str(tmp_path)]) == 2
    assert "leave out --name" in capsys.readouterr().err
    assert main(["search", "--resume", "nope", "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("cxrtune search: error: no search 'nope' to resume") and error.count("\n") == 1
