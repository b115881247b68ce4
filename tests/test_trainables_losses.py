"""The study's weighted BCE against a direct numpy transcription, and the validation metrics."""
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from trainables.losses import weighted_bce
from trainables.metrics import validation_metrics


def transcription(y, p, beta_p, beta_n):
    """Wang et al. 2017: L = -beta_P sum_{y=1} ln p - beta_N sum_{y=0} ln(1-p), per example / C."""
    n, c = y.shape
    losses = np.zeros(n)
    for i in range(n):
        total = 0.0
        for j in range(c):
            bp = beta_p[j] if np.ndim(beta_p) else beta_p
            bn = beta_n[j] if np.ndim(beta_n) else beta_n
            total += -bp * np.log(p[i, j]) if y[i, j] == 1 else -bn * np.log(1 - p[i, j])
        losses[i] = total / c
    return losses


@pytest.mark.parametrize("per_class", [False, True])
def test_weighted_bce_matches_the_formula(per_class):
    rng = np.random.default_rng(0)
    y = (rng.random((16, 5)) < 0.3).astype("float32")
    p = rng.uniform(0.01, 0.99, (16, 5)).astype("float32")
    beta_p = rng.uniform(1, 10, 5) if per_class else 3.7
    beta_n = rng.uniform(1, 2, 5) if per_class else 1.4
    got = np.asarray(weighted_bce(beta_p, beta_n)(y, p))
    np.testing.assert_allclose(got, transcription(y, p, beta_p, beta_n), rtol=1e-5)


def test_weighted_bce_stays_finite_at_saturated_outputs():
    y = np.array([[1.0, 0.0]], dtype="float32")
    p = np.array([[0.0, 1.0]], dtype="float32")
    assert np.isfinite(np.asarray(weighted_bce(2.0, 1.0)(y, p))).all()


def test_validation_metrics_score_only_labels_with_both_classes():
    rng = np.random.default_rng(1)
    y = np.zeros((40, 3), dtype="float32")
    y[:15, 0] = 1
    y[10:30, 1] = 1  # category 2 has no positive in this fold: left out of the macro AUC
    scores = rng.random((40, 3)).astype("float32")
    metrics = validation_metrics(y, scores, ["a", "b", "c"], beta_p=2.0, beta_n=1.0)
    expected_a, expected_b = roc_auc_score(y[:, 0], scores[:, 0]), roc_auc_score(y[:, 1], scores[:, 1])
    assert metrics["val_auc_labels_scored"] == 2.0 and "val_auc_c" not in metrics
    assert metrics["val_auc_a"] == pytest.approx(expected_a)
    assert metrics["val_auc"] == pytest.approx((expected_a + expected_b) / 2)
    assert metrics["val_binary_accuracy"] == pytest.approx(((scores >= 0.5) == (y == 1)).mean())
    assert all(isinstance(value, float) for value in metrics.values())
