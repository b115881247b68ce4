"""Fold-aware ASHA: decisions from the mean over a config's folds, sticky per config; plain ASHA and FIFO."""
from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from search.errors import SearchError
from search.schedulers import (FoldAwareDecisions, make_scheduler, result_objectives, rung_cutoff,
                               rung_milestones)
from conftest import migrated_store
from test_search_tuner import ScriptedData, pickle_by_value, scripted_fold, scripted_space


def test_rungs_lie_below_max_t_at_grace_times_powers_of_the_reduction_factor():
    assert rung_milestones(1, 9, 3) == [1, 3]
    assert rung_milestones(1, 10, 2) == [1, 2, 4, 8]
    assert rung_milestones(2, 30, 3) == [2, 6, 18]
    assert rung_milestones(5, 5, 3) == []  # a rung at max_t would decide nothing: the trial ends there


def test_cutoff_is_the_quantile_of_the_other_configs():
    assert rung_cutoff([], 3) is None
    assert rung_cutoff([0.6], 2) == pytest.approx(0.6)
    assert rung_cutoff([0.5, 0.7], 2) == pytest.approx(0.6)   # rf 2: the median
    assert rung_cutoff([0.1, 0.2, 0.3, 0.4], 4) == pytest.approx(0.325)  # rf 4: the 75th percentile


def test_a_config_is_judged_on_the_mean_of_its_folds_at_the_rung():
    decisions = FoldAwareDecisions([1, 2], reduction_factor=2, sign=1.0)
    # config a: both folds reach rung 1 (mean 0.6); then b's first fold at 0.58 is judged against 0.6.
    assert not decisions.on_result("a", 0, 1, 0.70)
    assert not decisions.on_result("a", 1, 1, 0.50)
    assert decisions.config_value(1, "a") == pytest.approx(0.60)
    assert decisions.on_result("b", 0, 1, 0.58)          # below a's fold mean (0.60), though above a's fold 1
    assert decisions.stopped == {"b": 1}
    assert "rung 1" in decisions.reasons["b/0"]


def test_decisions_are_sticky_so_folds_live_or_die_together():
    decisions = FoldAwareDecisions([1, 2], reduction_factor=2, sign=1.0)
    assert not decisions.on_result("a", 0, 1, 0.60)
    assert not decisions.on_result("b", 0, 1, 0.70)      # b promoted at rung 1 by its first fold
    assert not decisions.on_result("b", 1, 1, 0.40)      # its weak second fold passes rung 1 with it
    assert decisions.config_value(1, "b") == pytest.approx(0.55)
    # c's fold 1 runs ahead of fold 0; c is stopped at rung 1 by fold 0, and fold 1 stops at its next report
    assert not decisions.on_result("c", 1, 1, 0.90)
    assert not decisions.on_result("c", 1, 2, 0.91)
    assert not decisions.on_result("c", 0, 1, 0.20)      # rung 1 already decided for c (by fold 1)
    assert decisions.on_result("d", 0, 1, 0.30)          # d: 0.30 < median(0.60, 0.55, 0.55) -> stopped
    assert decisions.on_result("d", 1, 3, 0.99)          # a stopped config's other fold stops whatever it reports
    assert decisions.reasons["d/1"].startswith("config stopped at rung 1")


def test_folds_running_side_by_side_are_judged_together():
    decisions = FoldAwareDecisions([2], reduction_factor=2, sign=1.0)
    assert not decisions.on_result("a", 0, 2, 0.70)      # a: alone, promoted at rung 2
    assert not decisions.on_result("b", 0, 1, 0.50)      # b's two folds both started
    assert not decisions.on_result("b", 1, 1, 0.50)
    assert not decisions.on_result("b", 0, 2, 0.75)      # fold 0 first at rung 2: waits for fold 1, trains on
    assert ("b", 2) not in decisions.decided
    assert decisions.on_result("b", 1, 2, 0.55)          # mean 0.65 < 0.70: both folds stop
    assert decisions.on_result("b", 0, 3, 0.80)          # fold 0 stops at its next report


def test_a_fold_that_trained_every_epoch_settles_its_config():
    decisions = FoldAwareDecisions([2], reduction_factor=2, sign=1.0)
    assert not decisions.on_result("a", 0, 2, 0.90)
    assert not decisions.on_result("b", 0, 1, 0.10)
    assert not decisions.on_result("b", 1, 1, 0.10)
    assert not decisions.on_result("b", 1, 2, 0.10)      # waits for fold 0, which...
    decisions.on_end("b", 1, completed=True)              # ...fold 1 finishes all its epochs meanwhile
    assert not decisions.on_result("b", 0, 2, 0.10)      # so b is not split: fold 0 goes on too
    assert "b" not in decisions.stopped


def test_min_mode_flips_the_sign():
    decisions = FoldAwareDecisions([1], reduction_factor=2, sign=-1.0)
    assert not decisions.on_result("a", 0, 1, 0.3)       # losses: lower is better
    assert decisions.on_result("b", 0, 1, 0.5)
    assert not decisions.on_result("c", 0, 1, 0.1)


def test_factory_names_and_errors(tmp_path):
    from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler

    assert type(make_scheduler("fifo", max_t=3)) is FIFOScheduler
    assert isinstance(make_scheduler("asha", max_t=3), AsyncHyperBandScheduler)
    fold_asha = make_scheduler("fold-asha", max_t=9, state_path=str(tmp_path / "state.pkl"))
    assert fold_asha.decisions.milestones == [1, 3]
    mo = make_scheduler("mo-fold-asha", max_t=9, objectives={"cv_val_auc_mean": "max", "trainable_params": "min"})
    assert mo.decisions.signs == (1.0, -1.0)
    with pytest.raises(SearchError, match="unknown scheduler 'pbt'"):
        make_scheduler("pbt", max_t=3)
    with pytest.raises(SearchError, match="reduction_factor > 1"):
        make_scheduler("asha", max_t=3, reduction_factor=1)


def test_fold_asha_decisions_survive_a_pickle_round_trip_through_its_state_file(tmp_path):
    """Tune restores the scheduler pickled at the search's start; later decisions come from the state file."""
    scheduler = make_scheduler("fold-asha", max_t=4, reduction_factor=2, state_path=str(tmp_path / "s.pkl"))
    pickled_at_start = pickle.dumps(scheduler)
    scheduler.decisions.on_result("a", 0, 1, 0.7)
    scheduler.decisions.on_result("b", 0, 1, 0.1)
    scheduler._save_decisions()
    restored = pickle.loads(pickled_at_start)
    assert restored.decisions.stopped == {"b": 1}



def test_tune_classes_pickled_under_their_former_modules_still_load():
    """A search started before the Tune classes left search.schedulers/tracking/progress/trials pickled them
    under those names; Tune unpickles them again on --resume."""
    from search.callbacks import ProgressTable, TrialsCsvWriter
    from search.fold_asha import FoldAwareASHAScheduler
    from search.tracking_callback import MlflowSearchCallback

    former = {"search.schedulers": FoldAwareASHAScheduler, "search.tracking": MlflowSearchCallback,
              "search.progress": ProgressTable, "search.trials": TrialsCsvWriter}
    for module, cls in former.items():
        assert pickle.loads(f"c{module}\n{cls.__name__}\n.".encode()) is cls  # pickle's GLOBAL opcode


class FakeTrial:
    """What the scheduler reads of a Tune Trial (as in benchmarks/search_schedulers.py)."""

    def __init__(self, config_id: str, fold: int, epochs: int):
        self.trial_id = f"{config_id}_{fold}"
        self.config = {"trial_config": {"config_id": config_id, "fold": fold, "epochs": epochs}}


# Scripted curves: (trainable params, AUC at epoch e = plateau - (plateau - 0.5) * rise ** e), fold 1 0.01
# lower. The cheap config (method A) learns slower and plateaus lower: 0.548, 0.586, 0.617, 0.642 at epochs
# 1-4; the costly ones (C, D) end higher: 0.650, 0.725, 0.763, 0.781 and 0.645, 0.718, 0.754, 0.772.
CURVES = {"cheap": (1.3e4, 0.74, 0.8), "mid": (8e6, 0.78, 0.7), "costly": (2.3e7, 0.80, 0.5),
          "costly2": (2.3e7, 0.79, 0.5)}


def scripted_search(name: str, epochs: int = 4) -> pd.DataFrame:
    """Run every fold of every config one after another through a real scheduler object, as Tune would feed
    it (costly configs first); returns trials.csv-like rows for the fold table."""
    scheduler = make_scheduler(name, max_t=epochs, reduction_factor=2,
                               objectives={"cv_val_auc_mean": "max", "trainable_params": "min"})
    rows = []
    for config_id in ("costly", "costly2", "mid", "cheap"):
        params, plateau, rise = CURVES[config_id]
        for fold in range(2):
            trial = FakeTrial(config_id, fold, epochs)
            for epoch in range(1, epochs + 1):
                auc = plateau - (plateau - 0.5) * rise ** epoch - 0.01 * fold
                result = {"training_iteration": epoch, "val_auc": auc, "trainable_params": params,
                          "epoch_time_s": 1.0 + params / 1e7, "traced": float(epoch == 1)}
                if scheduler.on_trial_result(None, trial, result) == "STOP":
                    break
            scheduler.on_trial_complete(None, trial, {"training_iteration": epoch})
            rows.append({"config_id": config_id, "fold": fold, "epochs": epochs, "epochs_done": epoch,
                         "status": "TERMINATED", "val_auc": auc, "trainable_params": params,
                         "steady_epoch_time_s": 1.0 + params / 1e7 if epoch > 1 else np.nan,
                         "epoch_time_s": 1.0 + params / 1e7, "gpus": 0.0})
    return pd.DataFrame(rows)


def full_budget_front(trials: pd.DataFrame) -> set[str]:
    from search.aggregate import fold_table
    from search.pareto import pareto_front

    table = fold_table(trials)
    flagged = pareto_front(table[table["full_budget"]], {"cv_val_auc_mean": "max", "trainable_params": "min"})
    return set(flagged.loc[flagged["on_front"], "config_id"])


def test_fold_asha_cuts_the_cheap_config_and_mo_fold_asha_keeps_it_on_the_front():
    # At rung 1 the cheap config's fold mean (0.543) is below the others': AUC-only fold-ASHA stops it after
    # one epoch, so the full-budget front lacks its cheap end.
    single = scripted_search("fold-asha")
    assert set(single.loc[single["config_id"] == "cheap", "epochs_done"]) == {1}
    assert full_budget_front(single) == {"costly"}
    # MO-fold-ASHA: the cheap config is the fewest-parameter end of the rung's non-dominated front: kept.
    multi = scripted_search("mo-fold-asha")
    assert set(multi.loc[multi["config_id"] == "cheap", "epochs_done"]) == {4}
    assert full_budget_front(multi) == {"cheap", "mid", "costly"}
    # It still stops what is dominated: costly2 (costly's cost, lower AUC) at rung 2.
    epochs = multi.groupby("config_id")["epochs_done"].max().to_dict()
    assert epochs == {"cheap": 4, "costly": 4, "costly2": 2, "mid": 4}


def test_mo_decisions_keep_the_best_fronts_spread_out_first():
    decisions = FoldAwareDecisions([1], reduction_factor=2, sign=(1.0, -1.0))  # (AUC: max, cost: min)
    assert not decisions.on_result("a", 0, 1, (0.80, 5.0))     # alone: kept
    assert decisions.on_result("b", 0, 1, (0.79, 5.0))         # dominated by a; 2 configs, the best 1 go on
    assert "non-dominated front 2" in decisions.reasons["b/0"]
    assert not decisions.on_result("c", 0, 1, (0.60, 1.0))     # cheaper: front 1 with a, its far end: kept
    # d lies between a and c on their front: third in the epsilon-net order, past ceil(4 / 2) = 2, but a
    # config no other beats on both objectives goes on.
    assert not decisions.on_result("d", 0, 1, (0.70, 3.0))
    assert decisions.on_result("e", 0, 1, (0.65, 5.5))         # behind a and b: front 3, stopped
    assert "front 3, place 5 of 5" in decisions.reasons["e/0"]
    assert decisions.config_value(1, "a") == pytest.approx((0.80, -5.0))


def test_mo_decisions_compare_a_config_only_with_configs_near_its_known_cost():
    # (AUC, log10 trainable params) at rung 1, as a slow-rising costly config and cheap fast risers look then.
    decisions = FoldAwareDecisions([1], reduction_factor=2, sign=(1.0, -1.0), cost_columns=(1,))
    assert not decisions.on_result("cheap", 0, 1, (0.62, 4.1))
    assert not decisions.on_result("cheap2", 0, 1, (0.63, 4.3))
    # Dominated by both, but they cost over 1.25 decades less: judged among configs near 7.3 only (itself).
    assert not decisions.on_result("costly", 0, 1, (0.54, 7.3))
    assert not decisions.on_result("costly2", 0, 1, (0.55, 7.2))  # beats costly at less cost: kept
    assert decisions.on_result("costly3", 0, 1, (0.53, 7.3))      # behind both near its cost: stopped
    assert "front 3 of configs within 1.25 decade(s) of its cost, place 3 of 3" in decisions.reasons["costly3/0"]
    scheduler = make_scheduler("mo-fold-asha", max_t=9, objectives={"cv_val_auc_mean": "max",
                                                                    "trainable_params": "min",
                                                                    "steady_epoch_time_s": "min"})
    assert scheduler.decisions.cost_columns == (1,)  # measured costs rank, but set no window


def test_objectives_map_to_what_trials_report():
    assert result_objectives({"cv_val_auc_mean": "max", "trainable_params": "min",
                              "steady_epoch_time_s": "min"}) == [
        ("val_auc", "max"), ("trainable_params", "min"), ("epoch_time_s", "min")]
    with pytest.raises(SearchError, match="cannot guide the scheduler"):
        result_objectives({"n_folds_done": "max"})
    with pytest.raises(SearchError, match="two or more objectives"):
        make_scheduler("mo-fold-asha", max_t=3, objectives={"cv_val_auc_mean": "max"})


def test_measured_costs_use_the_latest_untraced_epoch():
    scheduler = make_scheduler("mo-fold-asha", max_t=9, objectives={"cv_val_auc_mean": "max",
                                                                    "steady_epoch_time_s": "min"})
    trial = FakeTrial("a", 0, 9)
    assert scheduler._objective_values(trial, {"val_auc": 0.6, "epoch_time_s": 50.0, "traced": 1.0}) == (
        0.6, pytest.approx(np.log10(50.0)))   # epoch 1: the only time there is
    scheduler._objective_values(trial, {"val_auc": 0.7, "epoch_time_s": 5.0, "traced": 0.0})
    assert scheduler._objective_values(trial, {"val_auc": 0.7, "epoch_time_s": 40.0, "traced": 1.0})[1] == (
        pytest.approx(np.log10(5.0)))          # a re-traced epoch after a resume: the steady time stands


def test_mo_fold_asha_verdicts_survive_a_resume_through_its_state_file(tmp_path):
    objectives = {"cv_val_auc_mean": "max", "trainable_params": "min"}
    scheduler = make_scheduler("mo-fold-asha", max_t=4, reduction_factor=2, objectives=objectives,
                               state_path=str(tmp_path / "s.pkl"))
    pickled_at_start = pickle.dumps(scheduler)
    for config_id, auc, params in (("a", 0.8, 1e3), ("b", 0.7, 1e4)):
        trial = FakeTrial(config_id, 0, 4)
        scheduler.on_trial_result(None, trial, {"training_iteration": 1, "val_auc": auc, "trainable_params": params})
    restored = pickle.loads(pickled_at_start)
    assert restored.decisions.stopped == {"b": 1}
    assert restored.objectives == [("val_auc", "max"), ("trainable_params", "min")]
    # b's other fold, started after the resume, follows the saved verdict.
    assert restored.on_trial_result(None, FakeTrial("b", 1, 4), {
        "training_iteration": 1, "val_auc": 0.99, "trainable_params": 1e4}) == "STOP"


@pytest.mark.slow
def test_fold_asha_in_a_real_search_stops_exactly_the_weak_config_after_one_epoch(ray_local, tmp_path):
    """4 configs x 2 folds, 4 epochs, rungs at epochs 1 and 2 (rf 2), one trial at a time.

    val_auc = base + 0.01 * epoch - 0.02 * fold, with bases 0.60, 0.70, 0.50, 0.80 by learning rate, in
    the configs' order. Config means at rung 1: 0.60, then 0.70 (above 0.60: promoted), then 0.50 (its
    first fold gives 0.51 < median(0.60, 0.70)): stopped, both folds after exactly 1 epoch; then 0.80
    (above the median of the others): promoted at both rungs. Everything else trains all 4 epochs.
    The stopped trials take 3 s to end (Ray waits 2 s by default before it gives up reusing their worker
    for the next trial, which then failed).
    """
    from search.settings import SearchSettings
    from search.tuner import run_search

    pickle_by_value()
    migrated_store(tmp_path / "mlflow.db")
    rates = [1e-4, 2e-4, 3e-4, 4e-4]
    data = ScriptedData(dict(zip(rates, [0.60, 0.70, 0.50, 0.80])), unwind_s=3.0)
    settings = SearchSettings(name="fasha", n_folds=2, scheduler="fold-asha", reduction_factor=2, max_concurrent=1)
    search_dir = run_search(settings, data=data, space=scripted_space(rates, epochs=4), out_dir=tmp_path,
                            trainable=scripted_fold)
    trials = pd.read_csv(search_dir / "trials.csv", dtype={"config_id": str})
    epochs = {(row.learning_rate, row.fold): row.epochs_done for row in trials.itertuples()}
    assert epochs == {(1e-4, 0): 4, (1e-4, 1): 4, (2e-4, 0): 4, (2e-4, 1): 4,
                      (3e-4, 0): 1, (3e-4, 1): 1, (4e-4, 0): 4, (4e-4, 1): 4}
    weak = trials[trials["learning_rate"] == 3e-4]
    assert (weak["status"] == "TERMINATED").all()
    assert weak["stop_reason"].str.contains("rung 1").all()
    assert (trials[trials["learning_rate"] != 3e-4]["stop_reason"] == "completed").all()
    table = pd.read_csv(search_dir / "fold_table.csv", dtype={"config_id": str})
    assert len(table) == 4


@pytest.mark.parametrize("objectives, message", [
    ("cv_val_auc_mean", "is not COLUMN:max or COLUMN:min"),
    ("cv_val_auc_mean:max,n_folds_done:min", "'n_folds_done' cannot guide the scheduler"),
])
def test_search_refuses_objectives_it_cannot_follow_in_one_line(tmp_path, capsys, objectives, message):
    from search.cli import main

    assert main(["search", "--data", str(tmp_path), "--space", "demo", "--name", "x", "--out", str(tmp_path),
                 "--objectives", objectives]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


def test_decisions_saved_before_multi_objective_support_still_load():
    decisions = FoldAwareDecisions([1], reduction_factor=2, sign=1.0)
    old = {key: value for key, value in decisions.__dict__.items() if key not in ("signs", "cost_columns")}
    old["values"] = {1: {"a": {0: 0.7}}}  # one float per fold, as older versions pickled it
    restored = FoldAwareDecisions.__new__(FoldAwareDecisions)
    restored.__setstate__(old)
    assert restored.config_value(1, "a") == pytest.approx(0.7)
    assert restored.cost_columns == ()  # saved before cost windows: judged against every config, as then
    assert restored.on_result("b", 0, 1, 0.5)  # judged against the old record
