"""Figures a clinical reviewer asks for, with intervals from a bootstrap resampled by patient.

A patient's images are not independent (same anatomy, same disease, follow-ups), so the bootstrap
draws patients with replacement and takes all of a drawn patient's images, as often as the patient
was drawn. Each resample is represented by how often it drew each image (a resamples x images count
matrix), so every figure is a weighted statistic over the images: AUC through
`search.evaluation.auc.weighted_auc`, average precision and the confusion-matrix figures here. Every
figure computed from the same seed sees the same resamples, which makes paired differences (a
subgroup's gap) honest.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np

from search.evaluation.auc import weighted_auc

CONFIDENCE = 0.95


def patient_resample_counts(patients, *, n_resamples: int, seed: int,
                            chunk_elements: int = 4_000_000) -> Iterator[np.ndarray]:
    """Chunks (R_chunk x N int32) of how often each image is drawn when patients are resampled.

    `patients`: one key per image (N). A patient drawn twice counts all of its images twice. Chunked so
    that an NIH-sized test part (25,596 images x 1,000 resamples) stays within ~100 MB at a time."""
    _, codes = np.unique(np.asarray(patients).astype(str), return_inverse=True)
    n_patients, n_images = int(codes.max()) + 1 if len(codes) else 0, len(codes)
    rng = np.random.default_rng(seed)
    per_chunk = max(1, chunk_elements // max(1, n_images))
    for start in range(0, n_resamples, per_chunk):
        size = min(per_chunk, n_resamples - start)
        draws = rng.integers(0, n_patients, size=(size, n_patients))
        offsets = draws + n_patients * np.arange(size)[:, None]
        per_patient = np.bincount(offsets.ravel(), minlength=size * n_patients).reshape(size, n_patients)
        yield per_patient[:, codes].astype(np.int32)


def weighted_average_precision(y_true: np.ndarray, y_score: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Average precision of one category for each row of `counts` (R x N image weights).

    As scikit-learn's `average_precision_score(y_true, y_score, sample_weight=row)`: the sum over
    distinct score thresholds (highest first) of the recall gained times the precision there."""
    counts = np.atleast_2d(counts)
    order = np.argsort(-np.asarray(y_score, dtype=float), kind="stable")
    scores, positive = np.asarray(y_score, dtype=float)[order], np.asarray(y_true)[order].astype(bool)
    weights = counts.T[order].astype(float)  # images (score order) x resamples
    true_pos = weights * positive[:, None]
    false_pos = weights - true_pos
    starts = np.flatnonzero(np.r_[True, scores[1:] != scores[:-1]])  # tied scores are one threshold
    true_pos, false_pos = np.add.reduceat(true_pos, starts, axis=0), np.add.reduceat(false_pos, starts, axis=0)
    cum_tp, cum_fp = np.cumsum(true_pos, axis=0), np.cumsum(false_pos, axis=0)
    n_pos = cum_tp[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(cum_tp + cum_fp > 0, cum_tp / (cum_tp + cum_fp), 0.0)
        ap = (true_pos * precision).sum(axis=0) / n_pos
    ap[n_pos == 0] = np.nan
    return ap


def confusion_rates(y_true: np.ndarray, calls: np.ndarray, counts: np.ndarray) -> dict[str, np.ndarray]:
    """Sensitivity, specificity, PPV and NPV of 0/1 calls for each row of `counts` (NaN when undefined)."""
    positive, called = np.asarray(y_true).astype(bool), np.asarray(calls).astype(bool)
    weights = np.atleast_2d(counts).astype(float)
    tp, fp = weights @ (positive & called), weights @ (~positive & called)
    fn, tn = weights @ (positive & ~called), weights @ (~positive & ~called)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"sensitivity": tp / (tp + fn), "specificity": tn / (tn + fp),
                "ppv": tp / (tp + fp), "npv": tn / (tn + fn)}


def interval(resampled: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile interval of the finite resampled values; NaNs when none is finite."""
    values = np.asarray(resampled, dtype=float)
    values = values[np.isfinite(values)]
    if not len(values):
        return float("nan"), float("nan")
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def category_status(n_positive: int, n_negative: int, min_positives: int) -> str:
    """'ok', or why a category's figures are missing or too uncertain to enter the macro average."""
    if n_positive == 0:
        return "no positives"
    if n_negative == 0:
        return "no negatives"
    if n_positive < min_positives:
        return f"too few positives ({n_positive} < {min_positives})"
    return "ok"


def discrimination(y_true, y_score, categories: list[str], patients, *, n_resamples: int = 1000, seed: int = 0,
                   min_positives: int = 10) -> list[dict]:
    """One row per category and a `macro` row: images, patients, positives, status, AUC and AP with
    patient-bootstrap intervals. The macro averages the categories whose status is 'ok'."""
    y_true, y_score = np.asarray(y_true, dtype=float), np.asarray(y_score, dtype=float)
    n_categories = len(categories)
    full = np.ones((1, len(y_true)), dtype=np.int32)
    auc_boot, ap_boot = [], []
    for counts in patient_resample_counts(patients, n_resamples=n_resamples, seed=seed):
        auc_boot.append(np.stack([weighted_auc(y_true[:, c], y_score[:, c], counts) for c in range(n_categories)], 1))
        ap_boot.append(np.stack([weighted_average_precision(y_true[:, c], y_score[:, c], counts)
                                 for c in range(n_categories)], 1))
    auc_boot = np.concatenate(auc_boot) if auc_boot else np.full((0, n_categories), np.nan)
    ap_boot = np.concatenate(ap_boot) if ap_boot else np.full((0, n_categories), np.nan)
    rows, n_patients = [], len(np.unique(np.asarray(patients).astype(str)))
    for c, category in enumerate(categories):
        n_pos = int(y_true[:, c].sum())
        row = {"category": category, "images": len(y_true), "patients": n_patients, "positives": n_pos,
               "status": category_status(n_pos, len(y_true) - n_pos, min_positives),
               "auc": float(weighted_auc(y_true[:, c], y_score[:, c], full)[0]),
               "ap": float(weighted_average_precision(y_true[:, c], y_score[:, c], full)[0])}
        row["auc_ci_low"], row["auc_ci_high"] = interval(auc_boot[:, c])
        row["ap_ci_low"], row["ap_ci_high"] = interval(ap_boot[:, c])
        rows.append(row)
    included = [c for c, row in enumerate(rows) if row["status"] == "ok"]
    macro = {"category": "macro", "images": len(y_true), "patients": n_patients,
             "positives": int(sum(rows[c]["positives"] for c in included)),
             "status": f"mean of {len(included)} of {n_categories} categories"}
    for name, boot in (("auc", auc_boot), ("ap", ap_boot)):
        macro[name] = float(np.mean([rows[c][name] for c in included])) if included else float("nan")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a resample may lack every included category
            per_resample = np.nanmean(boot[:, included], axis=1) if included else np.full(len(boot), np.nan)
        macro[f"{name}_ci_low"], macro[f"{name}_ci_high"] = interval(per_resample)
    return rows + [macro]

