"""The study's weighted binary cross-entropy (Wang et al., ChestX-ray8, 2017).

    L = -beta_P * sum_{y=1} ln p  -  beta_N * sum_{y=0} ln(1 - p)

with beta_P = (|P| + |N|) / |P| and beta_N = (|P| + |N|) / |N| from the training labels
(`data.class_balance.beta_weights`). Scalars or one value per category both broadcast. Written with
keras.ops so it runs on every Keras backend (the GPU benchmark uses JAX); Keras is imported inside.
"""
from __future__ import annotations

import numpy as np

EPSILON = 1e-7  # keeps ln() finite when a sigmoid saturates to exactly 0 or 1


def weighted_bce(beta_p, beta_n, *, epsilon: float = EPSILON):
    """A Keras loss `(y_true, y_pred) -> per-example loss` (mean over categories)."""
    beta_p_values = np.asarray(beta_p, dtype="float32")
    beta_n_values = np.asarray(beta_n, dtype="float32")

    def weighted_binary_crossentropy(y_true, y_pred):
        from keras import ops

        y_pred = ops.cast(y_pred, "float32")
        y_true = ops.cast(y_true, "float32")
        p = ops.clip(y_pred, epsilon, 1.0 - epsilon)
        per_label = -(beta_p_values * y_true * ops.log(p)
                      + beta_n_values * (1.0 - y_true) * ops.log(1.0 - p))
        return ops.mean(per_label, axis=-1)

    return weighted_binary_crossentropy


def weighted_bce_numpy(y_true, y_pred, beta_p, beta_n, *, epsilon: float = EPSILON) -> float:
    """The same loss over a whole array, averaged over examples (validation loss without a graph)."""
    p = np.clip(np.asarray(y_pred, dtype="float64"), epsilon, 1.0 - epsilon)
    y = np.asarray(y_true, dtype="float64")
    per_label = -(np.asarray(beta_p) * y * np.log(p) + np.asarray(beta_n) * (1.0 - y) * np.log(1.0 - p))
    return float(per_label.mean())
