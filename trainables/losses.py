"""The study's weighted binary cross-entropy (Wang et al., ChestX-ray8, 2017), computed from logits.

    L = -beta_P * sum_{y=1} ln p  -  beta_N * sum_{y=0} ln(1 - p),     p = sigmoid(z)

with beta_P = (|P| + |N|) / |P| and beta_N = (|P| + |N|) / |N| from the training labels
(`data.class_balance.beta_weights`), averaged (not summed) over the categories of an example and, by Keras,
over the examples of a batch. Scalars or one value per category both broadcast.

It takes the head's logits z (`trainables.model.logits_view`), because -ln sigmoid(z) = softplus(-z) and
-ln(1 - sigmoid(z)) = softplus(z) are exact for every z: a positive label predicted at z = -30 costs
beta_P * 30 with gradient -beta_P. From probabilities it would not be: float32 sigmoid(z) is exactly 1 for
z above ~17, and clipping p to [1e-7, 1 - 1e-7] caps the cost at 16.1 and zeroes the gradient.
Written with keras.ops so it runs on every Keras backend (the GPU benchmark uses JAX); Keras is imported
inside.
"""
from __future__ import annotations

import numpy as np

EPSILON = 1e-7  # probabilities only (weighted_bce_numpy): keeps ln() finite at a saturated 0 or 1


def weighted_bce(beta_p, beta_n):
    """A Keras loss `(y_true, logits) -> per-example loss` (mean over categories), in float32.

    `logits` are the pre-sigmoid outputs: compile `logits_view(model)`, not the probability model."""
    beta_p_values = np.asarray(beta_p, dtype="float32")
    beta_n_values = np.asarray(beta_n, dtype="float32")

    def weighted_binary_crossentropy(y_true, logits):
        from keras import ops

        z = ops.cast(logits, "float32")  # float32 under mixed precision too: the head is float32 already
        y = ops.cast(y_true, "float32")
        per_label = beta_p_values * y * ops.softplus(-z) + beta_n_values * (1.0 - y) * ops.softplus(z)
        return ops.mean(per_label, axis=-1)

    return weighted_binary_crossentropy


def weighted_bce_logits_numpy(y_true, logits, beta_p, beta_n) -> float:
    """The same loss over a whole array of logits, averaged over examples and categories (float64)."""
    z = np.asarray(logits, dtype="float64")
    y = np.asarray(y_true, dtype="float64")
    # np.logaddexp(0, t) = ln(1 + e^t) = softplus(t), without overflow.
    per_label = np.asarray(beta_p) * y * np.logaddexp(0.0, -z) + np.asarray(beta_n) * (1.0 - y) * np.logaddexp(0.0, z)
    return float(per_label.mean())


def weighted_bce_numpy(y_true, y_pred, beta_p, beta_n, *, epsilon: float = EPSILON) -> float:
    """The loss from probabilities, for callers that have no logits (a saved model's predictions): exact
    while p stays inside [epsilon, 1 - epsilon], capped at -ln(epsilon) = 16.1 per label beyond."""
    p = np.clip(np.asarray(y_pred, dtype="float64"), epsilon, 1.0 - epsilon)
    y = np.asarray(y_true, dtype="float64")
    per_label = -(np.asarray(beta_p) * y * np.log(p) + np.asarray(beta_n) * (1.0 - y) * np.log(1.0 - p))
    return float(per_label.mean())
