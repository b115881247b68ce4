"""trials.csv rows from Tune Trial objects: identity, stop reasons, steady epoch time, failures, resources."""
from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pandas as pd
import pytest

from search.trials import (reported_metrics, steady_epoch_time_s, stop_reason, trial_key, trial_row,
                           write_trials_csv)


def fake_trial(tmp_path=None, *, status="TERMINATED", epochs_done=3, failures=0, fold=1, config_id="abc"):
    config = {"trial_config": {"config_id": config_id, "fold": fold, "epochs": 3, "learning_rate": 1e-4,
                               "weights_dir": "/weights", "n_classes": 2, "checkpoint_every": 1}}
    return SimpleNamespace(
        config=config, trial_id=f"t{fold}", status=status, num_failures=failures,
        last_result={"training_iteration": epochs_done, "val_auc": 0.7, "time_total_s": 12.0, "pid": 42,
                     "hostname": "node-a"},
        placement_group_factory=SimpleNamespace(required_resources={"CPU": 2.0, "GPU": 0.5}),
        local_path=str(tmp_path) if tmp_path else None, path=None)


def test_identity_and_metrics_leave_out_tune_bookkeeping():
    trial = fake_trial()
    assert trial_key(trial.config) == "abc/1"
    assert reported_metrics({"val_auc": 0.7, "training_iteration": 3, "pid": 1, "done": True, "x": math.nan,
                             "config/lr": 1.0, "note": "text"}) == {"val_auc": 0.7}


def test_steady_epoch_time_leaves_out_traced_epochs():
    rows = [{"epoch_time_s": 30.0, "traced": 1.0}, {"epoch_time_s": 5.0, "traced": 0.0},
            {"epoch_time_s": 7.0, "traced": 0.0}]
    assert steady_epoch_time_s(rows) == pytest.approx(6.0)
    assert math.isnan(steady_epoch_time_s(rows[:1]))  # only a traced epoch: never reported as steady
    assert math.isnan(steady_epoch_time_s([]))


def test_stop_reasons():
    assert stop_reason("TERMINATED", 3, 3, None) == "completed"
    assert stop_reason("TERMINATED", 1, 3, None) == "stopped early by the scheduler after 1 epochs"
    assert stop_reason("TERMINATED", 1, 3, "stopped at rung 1: ...") == "stopped at rung 1: ..."
    assert stop_reason("ERROR", 1, 3, None) == "error"


def test_a_row_reads_result_json_and_falls_back_to_the_driver_epoch_times(tmp_path):
    trial = fake_trial(tmp_path, epochs_done=1, failures=1)
    lines = [{"training_iteration": 1, "epoch_time_s": 9.0, "traced": 1.0, "val_auc": 0.6}]
    (tmp_path / "result.json").write_text("\n".join(json.dumps(line) for line in lines) + "\n{cut sho")
    row = trial_row(trial, {"abc/1": "stopped at rung 1: config mean 0.6"})
    assert row["stop_reason"] == "stopped at rung 1: config mean 0.6" and row["failures"] == 1
    assert math.isnan(row["steady_epoch_time_s"])  # its one epoch was traced: not a steady cost
    assert (row["cpus"], row["gpus"], row["time_total_s"]) == (2.0, 0.5, 12.0)
    assert "weights_dir" not in row and "pid" not in row and "hostname" not in row
    remote = fake_trial(None)  # result.json not readable from the driver (a bucket, another node)
    row = trial_row(remote, {}, [{"epoch_time_s": 9.0, "traced": 1.0}, {"epoch_time_s": 3.0, "traced": 0.0}])
    assert row["steady_epoch_time_s"] == pytest.approx(3.0) and row["stop_reason"] == "completed"


def test_trials_csv_is_sorted_by_config_then_fold(tmp_path):
    trials = [fake_trial(fold=1, config_id="b"), fake_trial(fold=0, config_id="b"), fake_trial(fold=0, config_id="a")]
    table = pd.read_csv(write_trials_csv(trials, tmp_path / "trials.csv"), dtype={"config_id": str})
    assert list(zip(table["config_id"], table["fold"])) == [("a", 0), ("b", 0), ("b", 1)]
