"""Calibration: expected calibration error, Brier score, per-category temperature scaling, reliability diagram.

Temperature scaling divides each category's logit by one temperature T > 0 fitted on validation
predictions (T > 1 softens an over-confident model, T < 1 sharpens an under-confident one). It is
monotone, so AUC and the order of images never change; only the probabilities (and the thresholds
chosen on them) do.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

N_BINS = 10            # equal-width probability bins for ECE and the reliability diagram
EPSILON = 1e-7         # probabilities are clipped to [EPSILON, 1 - EPSILON] before taking logits
LOG_T_BOUNDS = (-4.0, 4.0)  # temperatures between e^-4 (0.018) and e^4 (55)


def expected_calibration_error(y_true, y_prob, n_bins: int = N_BINS) -> float:
    """Sum over equal-width bins of (share of images in the bin) x |mean probability - positive rate|.

    Bins are [0, 1/n), [1/n, 2/n), ..., [(n-1)/n, 1]; empty bins contribute nothing."""
    y_true, y_prob = np.asarray(y_true, dtype=float), np.asarray(y_prob, dtype=float)
    if not len(y_true):
        return float("nan")
    bins = np.minimum((y_prob * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in np.unique(bins):
        inside = bins == b
        total += inside.mean() * abs(y_prob[inside].mean() - y_true[inside].mean())
    return float(total)


def logits(y_prob) -> np.ndarray:
    p = np.clip(np.asarray(y_prob, dtype=float), EPSILON, 1 - EPSILON)
    return np.log(p) - np.log1p(-p)


def apply_temperatures(y_prob, temperatures) -> np.ndarray:
    """N x C probabilities with each column's logit divided by its temperature."""
    from scipy.special import expit

    return expit(logits(y_prob) / np.asarray(temperatures, dtype=float)[None, :])


def fit_temperature(y_true, y_prob) -> float:
    """The T minimising the binary cross-entropy of sigmoid(logit / T); 1.0 without both classes."""
    from scipy.optimize import minimize_scalar

    y_true, z = np.asarray(y_true, dtype=float), logits(y_prob)
    if y_true.min(initial=1) == y_true.max(initial=0):
        return 1.0

    def loss(log_t: float) -> float:
        scaled = z / np.exp(log_t)
        # log(1 + e^x) - y x: the cross-entropy of sigmoid(x), written to stay finite for large |x|.
        return float(np.mean(np.logaddexp(0.0, scaled) - y_true * scaled))

    result = minimize_scalar(loss, bounds=LOG_T_BOUNDS, method="bounded")
    return float(np.exp(result.x))


def fit_temperatures(y_true, y_prob) -> np.ndarray:
    y_true, y_prob = np.asarray(y_true), np.asarray(y_prob)
    return np.array([fit_temperature(y_true[:, c], y_prob[:, c]) for c in range(y_true.shape[1])])


def calibration_rows(y_true, y_prob, categories: list[str], *, label: str) -> list[dict]:
    """ECE and Brier score per category (and their macro means), tagged `label` ('raw' or 'temperature')."""
    from sklearn.metrics import brier_score_loss

    y_true, y_prob = np.asarray(y_true, dtype=float), np.asarray(y_prob, dtype=float)
    rows = []
    for c, category in enumerate(categories):
        rows.append({"category": category, "probabilities": label,
                     "ece": expected_calibration_error(y_true[:, c], y_prob[:, c]),
                     "brier": float(brier_score_loss(y_true[:, c], y_prob[:, c], pos_label=1))
                     if len(y_true) else float("nan"),
                     "mean_probability": float(y_prob[:, c].mean()), "positive_rate": float(y_true[:, c].mean())})
    rows.append({"category": "macro", "probabilities": label,
                 "ece": float(np.mean([row["ece"] for row in rows])),
                 "brier": float(np.mean([row["brier"] for row in rows])),
                 "mean_probability": float(y_prob.mean()), "positive_rate": float(y_true.mean())})
    return rows


def reliability_diagram(y_true, curves: dict[str, np.ndarray], categories: list[str], path: Path) -> Path:
    """One panel per category: observed positive rate against mean predicted probability per bin, one
    line per entry of `curves` ({'raw': N x C, 'temperature': N x C}); the diagonal is perfect calibration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve

    y_true = np.asarray(y_true, dtype=float)
    columns = min(4, len(categories))
    rows = int(np.ceil(len(categories) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.2 * rows), squeeze=False)
    for index, axis in enumerate(axes.ravel()):
        if index >= len(categories):
            axis.axis("off")
            continue
        axis.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1)
        for name, probabilities in curves.items():
            if y_true[:, index].min(initial=1) == y_true[:, index].max(initial=0):
                continue  # one class only: no curve to draw
            observed, predicted = calibration_curve(y_true[:, index], probabilities[:, index], n_bins=N_BINS)
            ece = expected_calibration_error(y_true[:, index], probabilities[:, index])
            axis.plot(predicted, observed, marker="o", markersize=3, label=f"{name} (ECE {ece:.3f})")
        axis.set(title=categories[index], xlim=(0, 1), ylim=(0, 1), xlabel="mean predicted probability",
                 ylabel="observed positive rate")
        axis.title.set_fontsize(9)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
