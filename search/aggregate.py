"""Fold aggregation: trials.csv (one row per config and fold) -> one row per config.

What each column of the fold table means (all per config, over its folds):

- config params (`config_id`, `backbone`, `method`, ...): copied from the config's first trial row.
- `n_folds`: folds the search has for this config (the distinct `fold` values of the whole trials table,
  unless the caller says how many); `n_folds_done`: folds whose trial ended normally (Ray status
  TERMINATED, whether it ran all its epochs or was stopped by the scheduler); `all_folds_ended`: every
  fold done (some perhaps cut by the scheduler).
- Fidelity: `epochs_trained_min` / `epochs_trained_max`: epochs trained by the shortest and longest done
  fold; `full_budget`: every fold done AND trained every epoch of the config (what fronts and reports use
  by default: a config cut after 1 epoch is not measured on the same footing); `stopped_early`: some done
  fold trained fewer epochs than the config asked for (the scheduler cut it).
- `cv_<metric>_mean` / `cv_<metric>_std`: mean and sample standard deviation (ddof=1, NaN for one fold) of
  the metric's last reported value over the done folds; for every `val_*` and `train_*` metric, per-class
  `val_auc_<category>` included. A fold where a metric could not be computed (e.g. a category with no
  positives in its validation part) is left out of that metric's mean, not counted as zero.
- `trainable_params`, `total_params`: the model's parameter counts (the same for every fold).
- `steady_epoch_time_s`: mean over done folds of each trial's steady-state epoch time (seconds per epoch
  over the epochs without graph tracing, as measured by the trial); NaN when no fold had such an epoch
  (a fold that trained one epoch only has a traced one: it is never reported as steady). Then
  `first_epoch_time_s` holds the mean first-epoch time (graph tracing included, several times the steady
  cost) and `cost_from_first_epoch` is True: the cost could only be measured on a first epoch.
- `gpu_seconds_per_epoch`: mean over done folds of gpus x steady_epoch_time_s (GPU-seconds for one epoch;
  0 on CPU-only trials, where `cpu_seconds_per_epoch` = cpus x steady_epoch_time_s says the cost instead).
- `total_gpu_seconds`: sum over every fold trial (done or not) of gpus x its training time in seconds:
  Ray's `time_total_s` when trials.csv has it, else epochs_done x epoch time (steady when known).
- `feature_pass_seconds`: the config's share of the one-off frozen-trunk feature passes its cached trials
  used (each pass split evenly over every cached trial of the search with the same backbone, source
  weights, freeze and image size); 0 without the cache. `total_train_seconds_amortised`:
  `total_train_seconds` with each pass moved from the trial that happened to run it to that even split.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from search.errors import SearchError
from spaces.configs import CONFIG_KEYS

# The config keys of ARCHITECTURE.md section 5, in the order tables show them.
CONFIG_COLUMNS = CONFIG_KEYS
# Ray Tune's name for a trial that ended without error (finished or stopped by the scheduler).
DONE_STATUSES = frozenset({"TERMINATED"})
# Per-trial columns that are bookkeeping or cost, not metrics to average as cv_<name>_mean.
NOT_METRICS = frozenset({
    "fold", "status", "stop_reason", "epochs_done", "epoch", "traced", "gpus", "cpus",
    "trainable_params", "total_params", "epoch_time_s", "steady_epoch_time_s", "images_per_s",
    "time_total_s", "training_iteration",
})
REQUIRED_COLUMNS = ("config_id", "fold")


def mean_and_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; NaN for one value) of the finite values given: the one
    fold aggregation of cxrtune (fold table, MLflow config runs, test tables)."""
    finite = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if not len(finite):
        return float("nan"), float("nan")
    return float(finite.mean()), float(finite.std(ddof=1)) if len(finite) > 1 else float("nan")


def fidelity_tags(epochs_by_fold: dict[int, int], planned_epochs: int | None, n_folds: int) -> dict[str, str]:
    """How far a config trained, as MLflow tags of its config run (filter on `tags.cxrtune.full_budget`)."""
    epochs = [int(value) for value in epochs_by_fold.values()]
    full = (planned_epochs is not None and len(epochs) >= n_folds and min(epochs, default=0) >= planned_epochs)
    return {"cxrtune.full_budget": "true" if full else "false",
            "cxrtune.epochs_trained_min": str(min(epochs, default=0)),
            "cxrtune.epochs_trained_max": str(max(epochs, default=0))}


def metric_columns(trials: pd.DataFrame) -> list[str]:
    """The per-trial metric columns to aggregate: every numeric `val_*` or `train_*` column."""
    return [
        name for name in trials.columns
        if name.startswith(("val_", "train_")) and name not in NOT_METRICS
        and pd.api.types.is_numeric_dtype(trials[name])
    ]


def _numeric(trials: pd.DataFrame, name: str) -> pd.Series:
    if name not in trials.columns:
        return pd.Series(np.nan, index=trials.index, dtype=float)
    return pd.to_numeric(trials[name], errors="coerce").astype(float)


def _trial_costs(trials: pd.DataFrame) -> pd.DataFrame:
    """Per-trial cost figures, in seconds, GPU-seconds and CPU-seconds."""
    # A trial with one epoch only had a traced one: whatever trials.csv says, that is not a steady cost.
    steady = _numeric(trials, "steady_epoch_time_s").where(_numeric(trials, "epochs_done").fillna(0) >= 2)
    gpus = _numeric(trials, "gpus").fillna(0.0)
    cpus = _numeric(trials, "cpus").fillna(0.0)
    per_epoch = steady.fillna(_numeric(trials, "epoch_time_s"))
    estimated_total = _numeric(trials, "epochs_done").fillna(0.0) * per_epoch
    train_seconds = _numeric(trials, "time_total_s").fillna(estimated_total)
    return pd.DataFrame({
        "steady_epoch_time_s": steady,
        "first_epoch_time_s": _numeric(trials, "epoch_time_s").where(steady.isna()),
        "gpu_seconds_per_epoch": gpus * steady,
        "cpu_seconds_per_epoch": cpus * steady,
        "train_seconds": train_seconds,
        "gpu_seconds": gpus * train_seconds,
    }, index=trials.index)


# Trials that share these values share one frozen-trunk feature pass (trainables/feature_cache.py).
TRUNK_COLUMNS = ("backbone", "source_weights", "freeze", "image_size")


def _feature_pass_shares(trials: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """(each trial's share of the one-off feature passes it used, the pass seconds it ran itself).
    A pass is run by one trial and used by every cached trial with the same trunk: its seconds are
    split evenly over them. Trials without the cache get 0."""
    used = _numeric(trials, "feature_cache_hit").fillna(0.0) > 0
    ran = _numeric(trials, "feature_pass_s").fillna(0.0) * _numeric(trials, "feature_pass_here").fillna(0.0)
    share = pd.Series(0.0, index=trials.index)
    trunk = [name for name in TRUNK_COLUMNS if name in trials.columns]
    if used.any() and trunk:
        groups = trials.loc[used, trunk].astype(str).agg("|".join, axis=1)
        # A pass the driver ran (feature_share.py: Ray's object store) is in no trial's time: count it once.
        driver = _numeric(trials, "feature_pass_s").fillna(0.0) * (
            _numeric(trials, "feature_cache_object_store").fillna(0.0) > 0)
        passes = ran[used].groupby(groups).sum() + driver[used].groupby(groups).max()
        per_group = passes / groups.groupby(groups).size()
        share[used] = groups.map(per_group).to_numpy()
    return share, ran


def _add_budget_columns(table: pd.DataFrame, trials: pd.DataFrame, done: pd.Series, n_folds: int) -> None:
    """How much of its budget each config trained (in place): n_folds, n_folds_done, all_folds_ended,
    epochs_trained_min/max, stopped_early and full_budget (every fold ended, every planned epoch trained)."""
    config_ids, done_ids = trials["config_id"], trials["config_id"][done]
    epochs_done = _numeric(trials, "epochs_done")
    table["n_folds"] = n_folds
    table["n_folds_done"] = trials.loc[done, "fold"].groupby(done_ids).nunique()
    table["n_folds_done"] = table["n_folds_done"].fillna(0).astype(int)
    table["all_folds_ended"] = table["n_folds_done"] >= n_folds
    table["epochs_trained_min"] = epochs_done[done].groupby(done_ids).min()
    table["epochs_trained_max"] = epochs_done[done].groupby(done_ids).max()
    cut = (epochs_done < _numeric(trials, "epochs"))[done].groupby(done_ids).any()
    table["stopped_early"] = cut.reindex(table.index, fill_value=False).astype(bool)
    planned = _numeric(trials, "epochs").groupby(config_ids, sort=False).max()
    table["full_budget"] = (table["all_folds_ended"] & ~table["stopped_early"]
                            & (table["epochs_trained_min"] >= planned.reindex(table.index))).astype(bool)


def fold_table(trials: pd.DataFrame, *, n_folds: int | None = None) -> pd.DataFrame:
    """One row per config from one row per (config, fold) trial; see the module docstring for columns.

    `n_folds` is how many folds each config should have; by default the number of distinct folds in
    `trials` (a config with a fold not yet started then has `all_folds_ended == False`).
    """
    missing = [name for name in REQUIRED_COLUMNS if name not in trials.columns]
    if missing:
        raise SearchError(
            f"trials table lacks column(s) {missing}; it has {list(trials.columns)} "
            "(expected trials.csv as ARCHITECTURE.md section 7 lays it out)"
        )
    trials = trials.reset_index(drop=True)
    metrics = metric_columns(trials)
    if n_folds is None:
        n_folds = int(trials["fold"].nunique())
    status = trials["status"].astype(str).str.upper() if "status" in trials else None
    done = status.isin(DONE_STATUSES) if status is not None else pd.Series(True, index=trials.index)
    config_ids = trials["config_id"]
    costs = _trial_costs(trials)

    # Every figure is a groupby over config_id, of all trials or of the done ones only.
    everyone = trials.groupby(config_ids, sort=False)
    table = everyone[[name for name in CONFIG_COLUMNS if name in trials.columns]].first()
    done_ids = config_ids[done]
    _add_budget_columns(table, trials, done, n_folds)

    values = pd.DataFrame({name: _numeric(trials, name) for name in metrics}, index=trials.index)
    by_done = values[done].groupby(done_ids)
    means, stds = by_done.mean(), by_done.std(ddof=1)  # NaN-skipping; std of one value is NaN
    for metric in metrics:
        table[f"cv_{metric}_mean"] = means[metric] if metric in means else np.nan
        table[f"cv_{metric}_std"] = stds[metric] if metric in stds else np.nan
    for name in ("trainable_params", "total_params"):
        table[name] = _numeric(trials, name).groupby(config_ids, sort=False).max()
    done_costs = costs[done].groupby(done_ids)
    for name in ("steady_epoch_time_s", "gpu_seconds_per_epoch", "cpu_seconds_per_epoch", "first_epoch_time_s"):
        table[name] = done_costs[name].mean()
    table["first_epoch_time_s"] = table["first_epoch_time_s"].where(table["steady_epoch_time_s"].isna())
    table["cost_from_first_epoch"] = table["first_epoch_time_s"].notna()
    table["total_train_seconds"] = costs["train_seconds"].groupby(config_ids, sort=False).sum(min_count=1)
    table["total_gpu_seconds"] = costs["gpu_seconds"].groupby(config_ids, sort=False).sum(min_count=1)
    share, ran = _feature_pass_shares(trials)  # the cached trials' one-off feature pass, amortised
    table["feature_pass_seconds"] = share.groupby(config_ids, sort=False).sum()
    table["total_train_seconds_amortised"] = (
        table["total_train_seconds"] - ran.groupby(config_ids, sort=False).sum() + table["feature_pass_seconds"])
    table = table.reset_index(drop="config_id" in table.columns)
    if "cv_val_auc_mean" not in table:
        return table
    # Best config first: the order `report` and `train-final` read it in.
    return table.sort_values(
        "cv_val_auc_mean", ascending=False, na_position="last", kind="stable"
    ).reset_index(drop=True)
