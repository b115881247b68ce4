"""Validation metrics computed once per epoch on the whole validation fold with scikit-learn.

Keras's AUC metric is a binned approximation and averages in labels that have no positive in
the fold; here a category enters the macro AUC only when the fold holds both of its classes,
and the report says how many categories were scored.
"""
from __future__ import annotations

import numpy as np

from trainables.losses import weighted_bce_logits_numpy, weighted_bce_numpy


def per_class_auc(y_true: np.ndarray, y_score: np.ndarray, categories: list[str]) -> dict[str, float]:
    """ROC AUC per category that has both classes in `y_true` (others are left out)."""
    from sklearn.metrics import roc_auc_score

    scores = {}
    for index, category in enumerate(categories):
        column = y_true[:, index]
        if 0 < column.sum() < len(column):
            scores[category] = float(roc_auc_score(column, y_score[:, index]))
    return scores


def validation_metrics(y_true, y_score, categories, *, beta_p, beta_n, logits=None) -> dict[str, float]:
    """`val_auc` (macro over scored categories; NaN when none), `val_auc_labels_scored`,
    `val_binary_accuracy` (threshold 0.5), `val_loss` (the training loss), `val_auc_<category>`.
    `y_score` are probabilities; with `logits` given the loss is computed from them (exact at any logit)."""
    y_true = np.asarray(y_true, dtype="float32")
    y_score = np.asarray(y_score, dtype="float64")
    per_class = per_class_auc(y_true, y_score, categories)
    metrics = {
        "val_auc": float(np.mean(list(per_class.values()))) if per_class else float("nan"),
        "val_auc_labels_scored": float(len(per_class)),
        "val_binary_accuracy": float(((y_score >= 0.5) == (y_true >= 0.5)).mean()),
        "val_loss": (weighted_bce_numpy(y_true, y_score, beta_p, beta_n) if logits is None
                     else weighted_bce_logits_numpy(y_true, logits, beta_p, beta_n)),
    }
    metrics.update({f"val_auc_{category}": value for category, value in per_class.items()})
    return metrics
