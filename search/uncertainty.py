"""Uncertainty on every point of a front, from the configs' pooled out-of-fold predictions.

Per config (every config with saved predictions for all its folds):
- `oof_auc`: macro AUC (scikit-learn) of its pooled out-of-fold predictions; `auc_ci_low` / `auc_ci_high`:
  95% percentile bootstrap interval, resampling patients (search/evaluation.py);
- `p_vs_best`: two-sided p of a paired patient bootstrap of its macro AUC against the front's highest-AUC
  config (both scored on the same resamples of the images they share);
- front configs only: `tie_group` (1 = the best config's group) and `tied_with_better`: walking the front
  from the highest out-of-fold AUC down, a config joins the group of the last group leader when the paired
  test does not separate them (p >= ALPHA); otherwise it leads a new group. A config tied with a better-AUC
  config is no evidence of a trade-off: the front's extra cost there buys nothing measurable.
Why a paired bootstrap and not DeLong: the macro AUC averages per-category AUCs, and radiographs of one
patient are not independent; resampling patients handles both without a covariance formula per category.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from search.errors import SearchError

ALPHA = 0.05
UNCERTAINTY_COLUMNS = ("oof_auc", "auc_ci_low", "auc_ci_high", "p_vs_best", "tie_group", "tied_with_better")


def _aligned(first, second):
    """Row indices of the image ids both out-of-fold sets have, in one order."""
    common, a_rows, b_rows = np.intersect1d(first.image_id, second.image_id, return_indices=True)
    return common, a_rows, b_rows


def add_uncertainty(flagged: pd.DataFrame, results, *, n_resamples: int = 1000, seed: int = 0) -> tuple[pd.DataFrame, str]:
    """`flagged` (a fold table with `on_front`) plus UNCERTAINTY_COLUMNS, and a one-line note on what was done."""
    from search.evaluation import macro_auc, paired_bootstrap_test, patient_bootstrap_interval
    from search.results import load_oof_predictions, patient_groups

    table = flagged.copy()
    for name in UNCERTAINTY_COLUMNS:
        table[name] = np.nan
    table["tied_with_better"] = False
    predictions = {}
    for config_id in table["config_id"]:
        try:
            predictions[config_id] = load_oof_predictions(results, str(config_id))
        except SearchError:
            continue
    if not predictions:
        return table, "no out-of-fold predictions saved by these trials: no intervals or tie groups"
    index = table.set_index("config_id").index
    for config_id, oof in predictions.items():
        patients = patient_groups(results, oof.image_id)
        low, high = patient_bootstrap_interval(oof.label, oof.probability, patients, n_resamples=n_resamples, seed=seed)
        row = index.get_loc(config_id)
        table.iloc[row, table.columns.get_loc("oof_auc")] = macro_auc(oof.label, oof.probability)
        table.iloc[row, table.columns.get_loc("auc_ci_low")] = low
        table.iloc[row, table.columns.get_loc("auc_ci_high")] = high
    front = table[table["on_front"].astype(bool) & table["config_id"].isin(list(predictions))]
    if front.empty:
        return table, "front configs saved no out-of-fold predictions: intervals only"
    ranked = front.sort_values("oof_auc", ascending=False, kind="stable")["config_id"].tolist()

    def paired_p(better: str, other: str) -> float:
        a, b = predictions[better], predictions[other]
        common, a_rows, b_rows = _aligned(a, b)
        if not len(common):
            return np.nan
        return paired_bootstrap_test(a.label[a_rows], a.probability[a_rows], b.probability[b_rows],
                                     patient_groups(results, common), n_resamples=n_resamples, seed=seed)[1]

    best = ranked[0]
    for config_id in predictions:
        table.loc[table["config_id"] == config_id, "p_vs_best"] = 1.0 if config_id == best else paired_p(best, config_id)
    group, leader = 1, best
    for config_id in ranked:
        if config_id != leader:
            p_value = paired_p(leader, config_id)
            if not p_value >= ALPHA:
                group, leader = group + 1, config_id
        mask = table["config_id"] == config_id
        table.loc[mask, "tie_group"] = group
        table.loc[mask, "tied_with_better"] = config_id != leader
    return table, (f"intervals: 95% patient bootstrap of the pooled out-of-fold macro AUC ({n_resamples} resamples); "
                   f"ties: paired patient bootstrap, p >= {ALPHA}")


def front_with_uncertainty(search_dir, table: pd.DataFrame, objectives: dict[str, str], *,
                           n_resamples: int = 1000) -> tuple[pd.DataFrame, dict[str, str], str | None]:
    """(flagged table, objectives, note) of the full-budget front with intervals where predictions exist:
    what the end of a search exports (a failure to read predictions leaves the front without intervals)."""
    from search.pareto import front_over_full_budget
    from search.results import load_search

    flagged = front_over_full_budget(table, objectives)
    try:
        flagged, note = add_uncertainty(flagged, load_search(search_dir), n_resamples=n_resamples)
    except (SearchError, OSError, ValueError) as error:
        note = f"no intervals: {error}"
    return flagged, objectives, note
