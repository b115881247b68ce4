"""fold_table: one row per config from trials.csv rows, with fold means, stds and cost figures."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from search.aggregate import fold_table
from search.errors import SearchError


def trial_row(config_id, fold, *, method="A", status="TERMINATED", epochs=3, epochs_done=3,
              val_auc=0.7, accuracy=0.8, loss=0.5, steady=2.0, gpus=1.0, **extra):
    row = {
        "config_id": config_id, "backbone": "resnet50", "method": method, "freeze": "all",
        "source_weights": "imagenet", "image_size": 32, "epochs": epochs, "batch_size": 8,
        "learning_rate": 1e-4, "dropout": 0.5, "frozen_bn": "inference", "seed": 0,
        "fold": fold, "status": status, "stop_reason": "", "epochs_done": epochs_done,
        "val_auc": val_auc, "val_binary_accuracy": accuracy, "val_loss": loss, "train_loss": loss + 0.1,
        "val_auc_labels_scored": 2.0, "trainable_params": 1000.0, "total_params": 5000.0,
        "epoch_time_s": steady + 10.0, "steady_epoch_time_s": steady, "gpus": gpus, "cpus": 2.0,
    }
    row.update(extra)
    return row


def test_means_stds_and_counts_over_done_folds_only():
    trials = pd.DataFrame([
        trial_row("aaa", 0, val_auc=0.6, val_auc_cardiac=0.5),
        trial_row("aaa", 1, val_auc=0.8, val_auc_cardiac=np.nan),
        trial_row("aaa", 2, val_auc=0.1, status="ERROR", val_auc_cardiac=0.9),
        trial_row("bbb", 0, val_auc=0.9, method="C", val_auc_cardiac=0.7),
        trial_row("bbb", 1, val_auc=0.95, method="C", val_auc_cardiac=0.8),
        trial_row("bbb", 2, val_auc=0.85, method="C", val_auc_cardiac=0.9),
    ])
    table = fold_table(trials).set_index("config_id")

    assert list(table.index) == ["bbb", "aaa"]  # best cv_val_auc_mean first
    assert table.loc["aaa", "n_folds"] == 3
    assert table.loc["aaa", "n_folds_done"] == 2
    assert not table.loc["aaa", "all_folds_ended"] and not table.loc["aaa", "full_budget"]
    assert table.loc["bbb", "all_folds_ended"] and table.loc["bbb", "full_budget"]
    # The errored fold's 0.1 is left out; std is the sample std (ddof=1).
    assert table.loc["aaa", "cv_val_auc_mean"] == pytest.approx(0.7)
    assert table.loc["aaa", "cv_val_auc_std"] == pytest.approx(np.std([0.6, 0.8], ddof=1))
    assert table.loc["bbb", "cv_val_auc_mean"] == pytest.approx(0.9)
    assert table.loc["bbb", "method"] == "C"
    # A fold without a per-class AUC is left out of that class's mean, not counted as zero.
    assert table.loc["aaa", "cv_val_auc_cardiac_mean"] == pytest.approx(0.5)
    assert np.isnan(table.loc["aaa", "cv_val_auc_cardiac_std"])
    assert table.loc["bbb", "cv_val_auc_cardiac_mean"] == pytest.approx(0.8)
    for metric in ("val_binary_accuracy", "val_loss", "train_loss"):
        assert f"cv_{metric}_mean" in table and f"cv_{metric}_std" in table
    assert "cv_fold_mean" not in table and "cv_epochs_done_mean" not in table


def test_cost_figures_use_steady_epochs_and_gpu_counts():
    trials = pd.DataFrame([
        trial_row("aaa", 0, steady=2.0, gpus=0.5, time_total_s=30.0),
        trial_row("aaa", 1, steady=4.0, gpus=0.5, time_total_s=50.0),
    ])
    row = fold_table(trials).iloc[0]
    assert row["trainable_params"] == 1000 and row["total_params"] == 5000
    assert row["steady_epoch_time_s"] == pytest.approx(3.0)
    assert row["gpu_seconds_per_epoch"] == pytest.approx(0.5 * 3.0)
    assert row["cpu_seconds_per_epoch"] == pytest.approx(2.0 * 3.0)
    assert row["total_train_seconds"] == pytest.approx(80.0)
    assert row["total_gpu_seconds"] == pytest.approx(0.5 * 80.0)


def test_total_time_is_estimated_from_epochs_when_ray_time_is_absent():
    trials = pd.DataFrame([trial_row("aaa", 0, steady=2.0, gpus=2.0, epochs_done=3),
                           trial_row("aaa", 1, steady=np.nan, gpus=2.0, epochs_done=1)])
    trials.loc[1, "epoch_time_s"] = 12.0  # its only epoch included graph tracing
    row = fold_table(trials).iloc[0]
    assert row["steady_epoch_time_s"] == pytest.approx(2.0)  # from the fold that has a steady epoch
    # Fold 1 has no steady epoch: its training time falls back to its traced epoch time.
    assert row["total_train_seconds"] == pytest.approx(3 * 2.0 + 1 * 12.0)
    assert row["total_gpu_seconds"] == pytest.approx(2.0 * (3 * 2.0 + 1 * 12.0))


def test_stopped_early_and_missing_folds_are_reported():
    trials = pd.DataFrame([
        trial_row("aaa", 0, epochs=3, epochs_done=1), trial_row("aaa", 1, epochs=3, epochs_done=1),
        trial_row("bbb", 0), trial_row("bbb", 1, status="RUNNING", epochs_done=2),
    ])
    table = fold_table(trials, n_folds=2).set_index("config_id")
    # aaa's folds all ended, but after 1 of 3 epochs: not full-budget.
    assert table.loc["aaa", "stopped_early"] and table.loc["aaa", "all_folds_ended"]
    assert not table.loc["aaa", "full_budget"]
    assert table.loc["aaa", "epochs_trained_min"] == table.loc["aaa", "epochs_trained_max"] == 1
    assert not table.loc["bbb", "stopped_early"] and not table.loc["bbb", "all_folds_ended"]
    assert not table.loc["bbb", "full_budget"]
    assert table.loc["bbb", "n_folds_done"] == 1
    # Told there are 3 folds, no config has ended them all.
    assert not fold_table(trials, n_folds=3)["all_folds_ended"].any()


def test_full_budget_needs_every_fold_to_train_every_epoch():
    trials = pd.DataFrame([trial_row("aaa", 0, epochs=3, epochs_done=3), trial_row("aaa", 1, epochs=3, epochs_done=2),
                           trial_row("bbb", 0), trial_row("bbb", 1)])
    table = fold_table(trials).set_index("config_id")
    assert not table.loc["aaa", "full_budget"] and table.loc["bbb", "full_budget"]
    assert (table.loc["aaa", "epochs_trained_min"], table.loc["aaa", "epochs_trained_max"]) == (2, 3)


def test_a_first_epoch_is_never_reported_as_a_steady_cost():
    # A config stopped after 1 epoch: trials.csv (as older versions wrote it) says steady = its traced epoch.
    trials = pd.DataFrame([trial_row("aaa", f, epochs=3, epochs_done=1, steady=52.7) for f in range(2)])
    trials["epoch_time_s"] = 52.7
    row = fold_table(trials).iloc[0]
    assert np.isnan(row["steady_epoch_time_s"]) and np.isnan(row["gpu_seconds_per_epoch"])
    assert row["first_epoch_time_s"] == pytest.approx(52.7) and row["cost_from_first_epoch"]
    full = fold_table(pd.DataFrame([trial_row("bbb", f, steady=4.0) for f in range(2)])).iloc[0]
    assert full["steady_epoch_time_s"] == pytest.approx(4.0) and not full["cost_from_first_epoch"]


def test_mean_and_std_is_the_sample_std_and_skips_missing_values():
    from search.aggregate import fidelity_tags, mean_and_std

    assert mean_and_std([0.6, 0.8, np.nan]) == (pytest.approx(0.7), pytest.approx(np.std([0.6, 0.8], ddof=1)))
    assert np.isnan(mean_and_std([0.5])[1]) and np.isnan(mean_and_std([])[0])
    assert fidelity_tags({0: 3, 1: 3}, 3, 2)["cxrtune.full_budget"] == "true"
    assert fidelity_tags({0: 3, 1: 1}, 3, 2) == {"cxrtune.full_budget": "false", "cxrtune.epochs_trained_min": "1",
                                                 "cxrtune.epochs_trained_max": "3"}


def test_reads_trials_csv_as_written_to_disk(tmp_path):
    path = tmp_path / "trials.csv"
    pd.DataFrame([trial_row("0a1b2c3d4e", 0), trial_row("0a1b2c3d4e", 1, val_auc=0.9)]).to_csv(path, index=False)
    table = fold_table(pd.read_csv(path, dtype={"config_id": str}))
    assert table.loc[0, "config_id"] == "0a1b2c3d4e"
    assert table.loc[0, "cv_val_auc_mean"] == pytest.approx(0.8)


def test_table_without_config_id_names_what_is_missing():
    with pytest.raises(SearchError, match="config_id"):
        fold_table(pd.DataFrame({"fold": [0], "val_auc": [0.5]}))
