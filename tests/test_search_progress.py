"""The live progress table: counts by state, the best config over ended folds, one compact row."""
from __future__ import annotations

from types import SimpleNamespace

from search.progress import HEADER, best_config, count_states, format_row


def trial(config_id, fold, status, epochs_done=3, val_auc=None):
    result = {"training_iteration": epochs_done}
    if val_auc is not None:
        result["val_auc"] = val_auc
    config = {"trial_config": {"config_id": config_id, "fold": fold, "epochs": 3, "backbone": "resnet50",
                               "method": "B", "freeze": "conv3", "source_weights": "imagenet"}}
    return SimpleNamespace(config=config, status=status, last_result=result)


def test_states_split_done_from_stopped_early():
    trials = [trial("a", 0, "RUNNING", 1), trial("a", 1, "PENDING", 0), trial("b", 0, "TERMINATED", 3, 0.7),
              trial("b", 1, "TERMINATED", 1, 0.6), trial("c", 0, "ERROR", 1)]
    assert count_states(trials) == {"running": 1, "pending": 1, "done": 1, "stopped": 1, "error": 1}


def test_best_config_is_the_best_mean_over_ended_folds():
    trials = [trial("a", 0, "TERMINATED", 3, 0.80), trial("a", 1, "TERMINATED", 3, 0.60),
              trial("b", 0, "TERMINATED", 3, 0.75), trial("c", 0, "RUNNING", 2, 0.99)]
    description, mean, folds = best_config(trials, "val_auc", "max")
    assert description == "b resnet50 B conv3 imagenet" and mean == 0.75 and folds == 1
    assert best_config(trials, "val_auc", "min")[0].startswith("a ")
    assert best_config(trials[3:], "val_auc", "max") is None


def test_a_row_lines_up_under_the_header():
    row = format_row(3725, {"running": 2, "pending": 10, "done": 3, "stopped": 1, "error": 0},
                     ("b resnet50 B conv3 imagenet", 0.8123, 2))
    header = HEADER.format(metric="val_auc")
    assert row.startswith("  1:02:05")
    for column in ("running", "pending", "done", "stopped", "error"):
        end = header.index(column) + len(column)
        assert row[end - 1] != " "  # numbers are right-aligned under their column names
    assert row.endswith("b resnet50 B conv3 imagenet  0.812 (2)")
    assert format_row(5, {"running": 0, "pending": 1, "done": 0, "stopped": 0, "error": 0}, None).endswith("  -")
