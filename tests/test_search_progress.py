"""The live progress table: counts by state (backlog included), running trials, the closing summary."""
from __future__ import annotations

from types import SimpleNamespace

from search.progress import (HEADER, MAX_RUNNING_LINES, best_config, closing_summary, count_states, format_row,
                             running_lines)


def trial(config_id, fold, status, epochs_done=3, val_auc=None, method="B"):
    result = {"training_iteration": epochs_done}
    if val_auc is not None:
        result["val_auc"] = val_auc
    config = {"trial_config": {"config_id": config_id, "fold": fold, "epochs": 3, "backbone": "resnet50",
                               "method": method, "freeze": "conv3" if method == "B" else "none",
                               "source_weights": "imagenet"}}
    return SimpleNamespace(config=config, status=status, last_result=result, trial_id=f"{config_id}{fold}")


def test_states_split_done_from_stopped_early_and_pending_counts_the_backlog():
    trials = [trial("a", 0, "RUNNING", 1), trial("a", 1, "PENDING", 0), trial("b", 0, "TERMINATED", 3, 0.7),
              trial("b", 1, "TERMINATED", 1, 0.6), trial("c", 0, "ERROR", 1)]
    assert count_states(trials) == {"running": 1, "pending": 1, "done": 1, "stopped": 1, "error": 1}
    # Tune creates trials lazily: the 5 it has not created yet are pending too.
    assert count_states(trials, n_trials=10)["pending"] == 6
    # on_trial_start comes before Tune marks the trial RUNNING: the starting trial counts as running.
    assert count_states(trials, starting=trials[1])["running"] == 2


def test_best_config_is_the_best_mean_over_ended_folds():
    trials = [trial("a", 0, "TERMINATED", 3, 0.80), trial("a", 1, "TERMINATED", 3, 0.60),
              trial("b", 0, "TERMINATED", 3, 0.75, method="C"), trial("c", 0, "RUNNING", 2, 0.99)]
    description, mean, folds = best_config(trials, "val_auc", "max")
    assert description == "resnet50 C imagenet" and mean == 0.75 and folds == 1
    assert best_config(trials, "val_auc", "min")[0] == "resnet50 B conv3 imagenet"
    assert best_config(trials[3:], "val_auc", "max") is None


def test_a_row_lines_up_under_the_header():
    row = format_row(3725, {"running": 2, "pending": 10, "done": 3, "stopped": 1, "error": 0},
                     ("resnet50 B conv3 imagenet", 0.8123, 2))
    header = HEADER.format(metric="val_auc")
    assert row.startswith("  1:02:05")
    for column in ("running", "pending", "done", "stopped", "error"):
        end = header.index(column) + len(column)
        assert row[end - 1] != " "  # numbers are right-aligned under their column names
    assert row.endswith("resnet50 B conv3 imagenet  0.812 (2)")
    assert format_row(5, {"running": 0, "pending": 1, "done": 0, "stopped": 0, "error": 0}, None).endswith("  -")


def test_running_trials_show_epoch_and_latest_metric_capped_to_a_screen():
    lines = running_lines([trial("a", 1, "RUNNING", 2, 0.7123), trial("b", 0, "TERMINATED", 3, 0.8)], "val_auc")
    assert lines == ["      running: resnet50 B conv3 imagenet fold 1  epoch 2/3  val_auc 0.712"]
    many = [trial(f"c{i}", 0, "RUNNING", 1) for i in range(MAX_RUNNING_LINES + 3)]
    lines = running_lines(many, "val_auc")
    assert len(lines) == MAX_RUNNING_LINES + 1 and lines[-1].endswith("... and 3 more running")


def test_closing_summary_says_what_was_stopped_early_when_and_what_failed():
    trials = [trial("a", 0, "TERMINATED", 3, 0.8), trial("b", 0, "TERMINATED", 1, 0.6, method="A"),
              trial("b", 1, "TERMINATED", 1, 0.6, method="A"), trial("c", 1, "ERROR", 2, method="C")]
    lines = closing_summary(trials, lambda t: "RuntimeError: out of memory")
    assert lines == ["trials: 1 completed, 2 stopped early, 1 failed",
                     "  stopped early: resnet50 A imagenet: fold 0 after epoch 1, fold 1 after epoch 1",
                     "  failed: resnet50 C imagenet fold 1: RuntimeError: out of memory"]
