"""Test-set figures of a final model: per-class AUC, macro AUC with a bootstrap interval, accuracy.

The interval is the percentile bootstrap over test images (resampled with replacement, seeded):
each resample's macro AUC averages the categories that have both classes in that resample, as the
trials' `val_auc` does. AUC comes from the Mann-Whitney U statistic (ties count one half), which
equals scikit-learn's `roc_auc_score`; a resample is scored from how often it drew each image, so
the images are sorted once per category, not once per resample.
"""
from __future__ import annotations

import numpy as np


def rank_auc(y_true: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    """ROC AUC of each row (R x N 0/1 labels, R x N scores); NaN where a row lacks a class."""
    from scipy.stats import rankdata

    y_true = np.atleast_2d(y_true).astype(bool)
    ranks = rankdata(np.atleast_2d(y_score), axis=1)  # ties get their average rank
    n_pos = y_true.sum(axis=1).astype(float)
    n_neg = y_true.shape[1] - n_pos
    u_statistic = (ranks * y_true).sum(axis=1) - n_pos * (n_pos + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = u_statistic / (n_pos * n_neg)
    auc[(n_pos == 0) | (n_neg == 0)] = np.nan
    return auc


def weighted_auc(y_true: np.ndarray, y_score: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """ROC AUC of one category for each row of `counts` (R x N: how often each image was drawn).

    Equal to `rank_auc` on the resampled images, without sorting each resample: the images are
    sorted once, tied scores grouped, and each resample's Mann-Whitney U is a weighted sum over the
    groups (a positive beats the negatives below its group and ties with half of its own group's)."""
    order = np.argsort(y_score, kind="stable")
    scores, positive = y_score[order], y_true[order].astype(bool)
    # Images x resamples, images in score order: the reductions below then run over contiguous rows.
    weights = counts.T[order].astype(float)
    pos_groups = weights * positive[:, None]
    neg_groups = weights - pos_groups
    starts = np.flatnonzero(np.r_[True, scores[1:] != scores[:-1]])  # first image of each tie group
    if len(starts) < len(scores):
        pos_groups = np.add.reduceat(pos_groups, starts, axis=0)
        neg_groups = np.add.reduceat(neg_groups, starts, axis=0)
    neg_below = np.cumsum(neg_groups, axis=0) - neg_groups
    u_statistic = (pos_groups * (neg_below + 0.5 * neg_groups)).sum(axis=0)
    n_pos, n_neg = pos_groups.sum(axis=0), neg_groups.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = u_statistic / (n_pos * n_neg)
    auc[(n_pos == 0) | (n_neg == 0)] = np.nan
    return auc


def bootstrap_macro_auc(y_true: np.ndarray, y_score: np.ndarray, *, n_resamples: int = 1000,
                        seed: int = 0, chunk_elements: int = 4_000_000) -> np.ndarray:
    """Macro AUC of each bootstrap resample of the rows (NaN when no category has both classes).

    Resamples are drawn and scored in chunks of at most `chunk_elements` draws (~32 MB per array),
    so an NIH-sized test part (25,596 images) needs no more memory than a small one."""
    rng = np.random.default_rng(seed)
    n_images = len(y_true)
    per_chunk = max(1, chunk_elements // max(1, n_images))
    macro = []
    for start in range(0, n_resamples, per_chunk):
        size = min(per_chunk, n_resamples - start)
        rows = rng.integers(0, n_images, size=(size, n_images))
        # How often each image is drawn in each resample: one bincount over offset row indices.
        counts = np.bincount((rows + n_images * np.arange(size)[:, None]).ravel(),
                             minlength=size * n_images).reshape(size, n_images)
        per_class = np.stack([weighted_auc(y_true[:, index], y_score[:, index], counts)
                              for index in range(y_true.shape[1])], axis=1)  # resamples x categories
        scored = ~np.isnan(per_class)
        with np.errstate(invalid="ignore"):
            macro.append(np.where(scored.any(axis=1), np.nansum(per_class, axis=1) / scored.sum(axis=1), np.nan))
    return np.concatenate(macro)


def score_test_set(y_true, y_score, categories: list[str], *, n_resamples: int = 1000, seed: int = 0,
                 confidence: float = 0.95) -> dict[str, float]:
    """`test_auc` (macro over categories with both classes), `test_auc_ci_low/high`,
    `test_auc_labels_scored`, `test_binary_accuracy` (threshold 0.5), `test_auc_<category>`."""
    y_true = np.asarray(y_true, dtype=float)
    y_score = np.asarray(y_score, dtype=float)
    per_class = rank_auc(y_true.T, y_score.T)
    scored = {category: float(value) for category, value in zip(categories, per_class) if not np.isnan(value)}
    metrics = {
        "test_auc": float(np.mean(list(scored.values()))) if scored else float("nan"),
        "test_auc_labels_scored": float(len(scored)),
        "test_binary_accuracy": float(((y_score >= 0.5) == (y_true >= 0.5)).mean()),
        "test_images": float(len(y_true)),
    }
    resampled = bootstrap_macro_auc(y_true, y_score, n_resamples=n_resamples, seed=seed)
    resampled = resampled[~np.isnan(resampled)]
    tail = (1 - confidence) / 2 * 100
    low, high = (np.percentile(resampled, [tail, 100 - tail]) if len(resampled) else (np.nan, np.nan))
    metrics.update({"test_auc_ci_low": float(low), "test_auc_ci_high": float(high)})
    metrics.update({f"test_auc_{category}": value for category, value in scored.items()})
    return metrics


# ----- Out-of-fold uncertainty: resampling by patient, paired between configs -----
# A patient contributes several radiographs whose predictions are correlated; resampling images would
# treat them as independent and make intervals too narrow. So a resample draws PATIENTS with replacement
# and takes every image of each patient drawn, as often as it was drawn.


def macro_auc(y_true, y_score) -> float:
    """Macro ROC AUC (scikit-learn) over the categories with both classes; NaN when none has."""
    from sklearn.metrics import roc_auc_score

    y_true, y_score = np.asarray(y_true), np.asarray(y_score, dtype=float)
    scored = [roc_auc_score(y_true[:, k], y_score[:, k]) for k in range(y_true.shape[1])
              if 0 < y_true[:, k].sum() < len(y_true)]
    return float(np.mean(scored)) if scored else float("nan")


def patient_resample_counts(patients, n_resamples: int, rng, chunk_elements: int = 4_000_000):
    """Yield (R x N) arrays: how often each image is drawn when the patients are resampled with replacement
    (every image of a patient drawn k times counts k times), in chunks of at most `chunk_elements` cells."""
    codes, n_patients = np.unique(np.asarray(patients), return_inverse=True)[1], len(np.unique(patients))
    per_chunk = max(1, chunk_elements // max(1, len(codes)))
    for start in range(0, n_resamples, per_chunk):
        size = min(per_chunk, n_resamples - start)
        drawn = rng.integers(0, n_patients, size=(size, n_patients))
        per_patient = np.bincount((drawn + n_patients * np.arange(size)[:, None]).ravel(),
                                  minlength=size * n_patients).reshape(size, n_patients)
        yield per_patient[:, codes]


def resampled_macro_auc(y_true, y_score, counts) -> np.ndarray:
    """Macro AUC of each resample (rows of `counts`), averaging the categories with both classes in it.
    `weighted_auc` is tested equal to scikit-learn's roc_auc_score with the counts as sample weights."""
    per_class = np.stack([weighted_auc(y_true[:, k], y_score[:, k], counts) for k in range(y_true.shape[1])], axis=1)
    scored = ~np.isnan(per_class)
    with np.errstate(invalid="ignore"):
        return np.where(scored.any(axis=1), np.nansum(per_class, axis=1) / scored.sum(axis=1), np.nan)


def patient_bootstrap_interval(y_true, y_score, patients, *, n_resamples: int = 1000, seed: int = 0,
                               confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the macro AUC, resampling patients."""
    y_true, y_score = np.asarray(y_true), np.asarray(y_score, dtype=float)
    rng = np.random.default_rng(seed)
    values = np.concatenate([resampled_macro_auc(y_true, y_score, counts)
                             for counts in patient_resample_counts(patients, n_resamples, rng)])
    values = values[~np.isnan(values)]
    if not len(values):
        return float("nan"), float("nan")
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def paired_bootstrap_test(y_true, score_a, score_b, patients, *, n_resamples: int = 1000,
                          seed: int = 0) -> tuple[float, float]:
    """(macro AUC of a minus b, two-sided p) from a paired patient bootstrap: both configs are scored on the
    SAME resamples, so what the two share (the images drawn) cancels out of their difference.
    p = 2 x the share of resamples whose difference falls on the other side of 0 from most of them (at most 1)."""
    y_true = np.asarray(y_true)
    score_a, score_b = np.asarray(score_a, dtype=float), np.asarray(score_b, dtype=float)
    rng = np.random.default_rng(seed)
    deltas = np.concatenate([resampled_macro_auc(y_true, score_a, counts) - resampled_macro_auc(y_true, score_b, counts)
                             for counts in patient_resample_counts(patients, n_resamples, rng)])
    return macro_auc(y_true, score_a) - macro_auc(y_true, score_b), paired_p_value(deltas)


def paired_p_value(deltas) -> float:
    """Two-sided p from paired bootstrap differences: 2 x the share on the minority side of 0 (at most 1)."""
    deltas = np.asarray(deltas, dtype=float)
    deltas = deltas[~np.isnan(deltas)]
    if not len(deltas):
        return float("nan")
    return float(min(1.0, 2 * min(np.mean(deltas <= 0), np.mean(deltas >= 0))))
