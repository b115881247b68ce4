"""Operating points: thresholds chosen on validation predictions, reported on the evaluated data.

A call is positive when the probability is at or above the threshold. Per category:
`specificity_0.90` is the lowest threshold whose validation specificity is at least 0.90 (the most
sensitive such threshold); `youden` maximises sensitivity + specificity - 1 on validation. The
thresholds are fixed before the evaluated data is seen; only their figures come from it.
"""
from __future__ import annotations

import numpy as np

from search.evaluation.clinical_metrics import confusion_rates, interval, patient_resample_counts

DEFAULT_SPECIFICITIES = (0.90, 0.95)


def point_name(specificity: float) -> str:
    return f"specificity_{specificity:.2f}"


def choose_thresholds(y_true, y_prob, categories: list[str],
                      specificities=DEFAULT_SPECIFICITIES) -> dict[str, dict[str, float]]:
    """{category: {point name: threshold}}; a category without both classes in validation gets none."""
    from sklearn.metrics import roc_curve

    y_true, y_prob = np.asarray(y_true, dtype=float), np.asarray(y_prob, dtype=float)
    chosen: dict[str, dict[str, float]] = {}
    for c, category in enumerate(categories):
        if y_true[:, c].min(initial=1) == y_true[:, c].max(initial=0):
            continue
        fpr, tpr, thresholds = roc_curve(y_true[:, c], y_prob[:, c], drop_intermediate=False)
        # roc_curve's first threshold is +inf (call nothing positive): 1.0 + a hair does the same for probabilities.
        thresholds = np.minimum(thresholds, np.nextafter(1.0, 2.0))
        points = {"youden": float(thresholds[int(np.argmax(tpr - fpr))])}
        for specificity in specificities:
            allowed = np.flatnonzero(1.0 - fpr >= specificity - 1e-12)
            points[point_name(specificity)] = float(thresholds[allowed[-1]])  # lowest threshold allowed
        chosen[category] = points
    return chosen


def operating_point_rows(y_true, y_prob, categories: list[str], thresholds: dict, patients, *,
                         n_resamples: int = 1000, seed: int = 0) -> list[dict]:
    """Sensitivity, specificity, PPV and NPV (with patient-bootstrap intervals) of each saved threshold."""
    y_true, y_prob = np.asarray(y_true, dtype=float), np.asarray(y_prob, dtype=float)
    plan = [(c, category, name, threshold) for c, category in enumerate(categories)
            for name, threshold in thresholds.get(category, {}).items()]
    if not plan:
        return []
    full = np.ones((1, len(y_true)), dtype=np.int32)
    boots: list[dict[str, list[np.ndarray]]] = [{} for _ in plan]
    for counts in patient_resample_counts(patients, n_resamples=n_resamples, seed=seed):
        for index, (c, _, _, threshold) in enumerate(plan):
            for metric, values in confusion_rates(y_true[:, c], y_prob[:, c] >= threshold, counts).items():
                boots[index].setdefault(metric, []).append(values)
    rows = []
    for index, (c, category, name, threshold) in enumerate(plan):
        n_pos = int(y_true[:, c].sum())
        row = {"category": category, "operating_point": name, "threshold": threshold,
               "positives": n_pos, "negatives": len(y_true) - n_pos}
        for metric, value in confusion_rates(y_true[:, c], y_prob[:, c] >= threshold, full).items():
            row[metric] = float(value[0])
            resampled = np.concatenate(boots[index].get(metric, [np.array([])]))
            row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = interval(resampled)
        rows.append(row)
    return rows


def calls(probabilities: np.ndarray, categories: list[str], thresholds: dict, point: str) -> dict[str, np.ndarray]:
    """{category: 0/1 calls} at the named operating point, for the categories that have it."""
    return {category: (np.asarray(probabilities)[:, c] >= thresholds[category][point]).astype(int)
            for c, category in enumerate(categories) if point in thresholds.get(category, {})}
