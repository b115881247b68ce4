"""The study's class weights for weighted binary cross-entropy, from a fold's training labels.

Following Wang et al. (ChestX-ray8, 2017), on which the reference study builds: over the whole N x C label
matrix of the training part, with |P| its ones and |N| its zeros,

    beta_P = (|P| + |N|) / |P|        beta_N = (|P| + |N|) / |N|

so the loss is  -beta_P * y * log(p) - beta_N * (1 - y) * log(1 - p), averaged over the matrix's entries
(trainables/losses.py: the mean over categories, then over examples; computed from logits). Ones are rare in
chest X-ray labels, so beta_P is large and beta_N is close to 1. `per_category=True` gives the same ratios
counted per column instead (one pair per category), for categories whose prevalences differ widely.
"""
from __future__ import annotations

import numpy as np

from data.errors import DataError


def beta_weights(labels, *, per_category: bool = False):
    """(beta_p, beta_n) for an N x C 0/1 label matrix (array-like; a 1-D vector is one category).

    Returns two floats, or with `per_category=True` two float64 arrays of shape (C,). A column with no
    positives (or no negatives) gets weight 1.0 on the missing side: no loss term of that kind exists, so
    any finite value is exact, and 1.0 keeps the weights finite.
    """
    matrix = np.asarray(labels)
    if matrix.ndim == 1:
        matrix = matrix[:, None]
    if matrix.ndim != 2 or matrix.shape[0] == 0:
        raise DataError(f"labels must be a non-empty N x C matrix, got shape {matrix.shape}")
    if not np.isin(matrix, (0, 1)).all():
        raise DataError("labels must hold only 0/1 (NaN or soft labels are not counted); "
                        f"found values {np.unique(matrix)[:5].tolist()}")
    axis = 0 if per_category else None
    positives = np.count_nonzero(matrix == 1, axis=axis)
    negatives = np.count_nonzero(matrix == 0, axis=axis)
    if not per_category and (positives == 0 or negatives == 0):
        raise DataError(f"labels have {positives} ones and {negatives} zeros: the study's weights need both")
    total = positives + negatives
    beta_p = np.where(positives > 0, total / np.maximum(positives, 1), 1.0)
    beta_n = np.where(negatives > 0, total / np.maximum(negatives, 1), 1.0)
    if per_category:
        return beta_p.astype(np.float64), beta_n.astype(np.float64)
    return float(beta_p), float(beta_n)
