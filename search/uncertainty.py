"""Uncertainty on every point of a front, from the configs' pooled out-of-fold predictions.

Per config (every config with saved predictions for all its folds):
- `oof_auc`: macro AUC (scikit-learn) of its pooled out-of-fold predictions; `auc_ci_low` / `auc_ci_high`:
  95% percentile bootstrap interval, resampling patients (search/evaluation/auc.py);
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


def _resampled(predictions: dict, results, n_resamples: int, seed: int):
    """(macro AUC per config on all images, resampled macro AUCs per config): every config is scored on the
    SAME patient resamples of the images they all have, so one pass gives both the intervals and, by
    differences, the paired tests (a config's bootstrap is computed once, not once per comparison)."""
    from search.evaluation.auc import macro_auc, patient_resample_counts, resampled_macro_auc
    from search.results import patient_groups

    common = sorted(set.intersection(*(set(oof.image_id.tolist()) for oof in predictions.values())))
    aligned = {}
    for config_id, oof in predictions.items():
        rows = {image: row for row, image in enumerate(oof.image_id.tolist())}
        order = np.asarray([rows[image] for image in common], dtype=int)
        aligned[config_id] = (oof.label[order], oof.probability[order])
    point = {config_id: macro_auc(*pair) for config_id, pair in aligned.items()}
    draws = {config_id: [] for config_id in aligned}
    for counts in patient_resample_counts(patient_groups(results, common), n_resamples, np.random.default_rng(seed)):
        for config_id, (labels, scores) in aligned.items():
            draws[config_id].append(resampled_macro_auc(labels, scores, counts))
    return point, {config_id: np.concatenate(parts) for config_id, parts in draws.items()}


def add_uncertainty(flagged: pd.DataFrame, results, *, n_resamples: int = 1000, seed: int = 0) -> tuple[pd.DataFrame, str]:
    """`flagged` (a fold table with `on_front`) plus UNCERTAINTY_COLUMNS, and a one-line note on what was done."""
    from search.evaluation.auc import paired_p_value
    from search.results import load_oof_predictions

    table = flagged.copy()
    for name in UNCERTAINTY_COLUMNS:
        table[name] = np.nan
    table["tied_with_better"] = False
    predictions = {}
    for config_id in table["config_id"]:
        try:
            predictions[str(config_id)] = load_oof_predictions(results, str(config_id))
        except SearchError:
            continue
    if not predictions:
        return table, "no out-of-fold predictions saved by these trials: no intervals or tie groups"
    point, draws = _resampled(predictions, results, n_resamples, seed)
    tail = (1 - 0.95) / 2 * 100
    rows = {config_id: table["config_id"].astype(str) == config_id for config_id in predictions}
    for config_id, values in draws.items():
        finite = values[~np.isnan(values)]
        low, high = np.percentile(finite, [tail, 100 - tail]) if len(finite) else (np.nan, np.nan)
        table.loc[rows[config_id], ["oof_auc", "auc_ci_low", "auc_ci_high"]] = [point[config_id], low, high]
    front = [c for c in table.loc[table["on_front"].astype(bool), "config_id"].astype(str) if c in predictions]
    if not front:
        return table, "front configs saved no out-of-fold predictions: intervals only"
    ranked = sorted(front, key=lambda c: -point[c])  # stable: ties keep the table's order
    best = ranked[0]
    for config_id in predictions:
        table.loc[rows[config_id], "p_vs_best"] = paired_p_value(draws[best] - draws[config_id]) \
            if config_id != best else 1.0
    group, leader = 1, best
    for config_id in ranked:
        if config_id != leader and not paired_p_value(draws[leader] - draws[config_id]) >= ALPHA:
            group, leader = group + 1, config_id
        table.loc[rows[config_id], ["tie_group", "tied_with_better"]] = [group, config_id != leader]
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
    except Exception as error:  # intervals are an extra: never lose a finished search's front over them
        note = f"no intervals: {type(error).__name__}: {error}"
    return flagged, objectives, note
