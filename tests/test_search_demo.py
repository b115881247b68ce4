"""The demo end to end, reduced: every layer on synthetic data, outputs where the README says."""
from __future__ import annotations

import re
import sqlite3

import pandas as pd
import pytest

from search.demo import DemoSettings, run_demo

pytestmark = pytest.mark.slow

# A line of TensorFlow's native loggers (absl/glog: "I0000 00:00:1796299230.882221   19375 cudart_stub.cc:31] ...")
# anywhere in a line: Ray prefixes a worker's lines with "(train_fold pid=123)" and colour codes.
NATIVE_LOG_LINE = re.compile(r"\b[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\]")
DEMO_SIZE_BOUND_MB = 300


def test_reduced_demo_leaves_store_table_and_front(tmp_path, capfd, monkeypatch, own_ray_runtime):
    # What `cxrtune demo` sets (search/quiet.py); conftest's own default (2) would let C++ errors through.
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    settings = DemoSettings(hospital_images=80, nih_images=60, render_size=64, image_size=32, n_folds=2,
                            pretrain_epochs=1, search_epochs=2)
    search_dir = run_demo(tmp_path, settings)
    captured = capfd.readouterr()  # file-descriptor level: native libraries and Ray workers' forwarded lines
    printed, terminal = captured.out, captured.out + captured.err

    # A quiet terminal: the progress table and the results, not the libraries' start-up and bookkeeping.
    lines = terminal.splitlines()
    assert not [line for line in lines if NATIVE_LOG_LINE.search(line)], "TensorFlow's C++ logger reached the terminal"
    assert "absl::InitializeLog" not in terminal and "Checkpoint successfully created" not in terminal
    assert "trials: " in printed and "running  pending  done  stopped  error" in printed
    # Disk: finished trials keep nothing in the demo (--keep-checkpoints none); the whole folder stays small.
    size_mb = sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file()) / 2**20
    assert size_mb < DEMO_SIZE_BOUND_MB, f"the demo left {size_mb:.0f} MB"
    assert not list((search_dir / "tune").rglob("model.weights.h5"))
    assert "Tables as in the study:  cxrtune report demo --out" in printed

    # The two tables are printed, and the command that opens the MLflow UI on this store.
    assert "Fold table (mean +/- std over folds)" in printed
    assert "Pareto front" in printed
    assert f"mlflow ui --backend-store-uri sqlite:///{tmp_path / 'mlflow.db'}" in printed
    assert "the demo leaves the imagenet source out" in printed  # the test session's Keras cache is empty

    for name in ("fold_table.csv", "pareto.csv", "pareto.png", "mlflow.db"):
        assert (tmp_path / name).is_file(), name
    table = pd.read_csv(tmp_path / "fold_table.csv", dtype={"config_id": str})
    # Offline the demo space is A, B, C with the pretrained chestxray8 source, plus D from scratch.
    assert sorted(table["method"]) == ["A", "B", "C", "D"]
    assert set(table.loc[table["method"] != "D", "source_weights"]) == {"chestxray8"}
    assert table["cv_val_auc_mean"].between(0, 1).all()
    front = pd.read_csv(tmp_path / "pareto.csv", dtype={"config_id": str})
    assert front["on_front"].astype(bool).any()
    assert set(front["config_id"]) == set(table.loc[table["full_budget"], "config_id"])  # stopped ones: never

    # One MLflow run per (config, fold) trial, nested under config runs under the search's parent run.
    trials = pd.read_csv(search_dir / "trials.csv", dtype={"config_id": str})
    assert len(trials) == 4 * 2
    with sqlite3.connect(tmp_path / "mlflow.db") as store:
        fold_runs = store.execute(
            "SELECT COUNT(DISTINCT params.run_uuid) FROM params JOIN runs ON runs.run_uuid = params.run_uuid "
            "JOIN experiments ON experiments.experiment_id = runs.experiment_id "
            "WHERE params.key = 'fold' AND experiments.name = 'demo'").fetchone()[0]
        pretrain_runs = store.execute(
            "SELECT COUNT(*) FROM runs JOIN experiments ON experiments.experiment_id = runs.experiment_id "
            "WHERE experiments.name != 'demo' AND experiments.name != 'Default'").fetchone()[0]
        locations = [row[0] for row in store.execute(
            "SELECT artifact_location FROM experiments WHERE name != 'Default'")]
    assert fold_runs == len(trials)
    assert pretrain_runs == 1  # the chestxray8 source, logged with its card
    # Artifacts sit beside the sqlite store, not in ./mlruns of whatever folder the process ran in.
    assert locations and all(location == (tmp_path / "mlartifacts").as_uri() for location in locations)


def test_a_rerun_replaces_only_an_earlier_demo(tmp_path):
    from search.demo import DEMO_OUTPUTS, clear_previous_demo
    from search.errors import SearchError

    earlier = tmp_path / "earlier"
    (earlier / "demo").mkdir(parents=True)
    (earlier / "demo" / "search.json").write_text("{}")
    (earlier / "prepared" / "hospital").mkdir(parents=True)
    (earlier / "mlflow.db").write_text("")
    (earlier / "notes.txt").write_text("the user's own file")
    clear_previous_demo(earlier)
    assert sorted(path.name for path in earlier.iterdir()) == ["notes.txt"]
    assert "notes.txt" not in DEMO_OUTPUTS

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "mlflow.db").write_text("somebody's store")
    with pytest.raises(SearchError, match="holds no earlier demo"):
        clear_previous_demo(foreign)
    assert (foreign / "mlflow.db").read_text() == "somebody's store"
