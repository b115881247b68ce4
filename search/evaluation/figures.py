"""From predictions to a clinical evaluation: discrimination, calibration, operating points, subgroups.

`evaluate_predictions` is the arrays-in core of `cxrtune evaluate` (no model, no TensorFlow):
temperatures (optional) and thresholds are fitted on the validation predictions only, then every
figure is computed on the evaluated predictions. `write_evaluation` writes the tables, the
reliability diagram and metrics.json.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from search.evaluation.calibration import (LOG_T_BOUNDS, apply_temperatures, calibration_rows, fit_temperatures,
                                           reliability_diagram)
from search.evaluation.clinical_metrics import discrimination
from search.evaluation.operating_points import DEFAULT_SPECIFICITIES, choose_thresholds, operating_point_rows
from search.evaluation.subgroups import DEFAULT_GAP, flagged_gaps, subgroup_rows

LOWEST_T, HIGHEST_T = float(np.exp(LOG_T_BOUNDS[0])), float(np.exp(LOG_T_BOUNDS[1]))


@dataclass
class Evaluation:
    categories: list[str]
    discrimination: list[dict]
    calibration: list[dict]
    operating_points: list[dict]
    subgroups: list[dict]
    thresholds: dict[str, dict[str, float]]
    temperatures: dict[str, float] | None
    settings: dict
    notes: list[str] = field(default_factory=list)
    external: list[dict] = field(default_factory=list)

    def macro(self) -> dict:
        return next(row for row in self.discrimination if row["category"] == "macro")

    def flat_metrics(self, prefix: str = "clinical_") -> dict[str, float]:
        """Plain float metrics for MLflow (NaN left out)."""
        metrics = {}
        for row in self.discrimination:
            for key in ("auc", "auc_ci_low", "auc_ci_high", "ap", "ap_ci_low", "ap_ci_high"):
                metrics[f"{prefix}{key}_{row['category']}"] = row[key]
            metrics[f"{prefix}positives_{row['category']}"] = float(row["positives"])
        for row in self.calibration:
            metrics[f"{prefix}ece_{row['probabilities']}_{row['category']}"] = row["ece"]
            metrics[f"{prefix}brier_{row['probabilities']}_{row['category']}"] = row["brier"]
        for row in self.operating_points:
            for key in ("sensitivity", "specificity", "ppv", "npv"):
                metrics[f"{prefix}{key}_{row['operating_point']}_{row['category']}"] = row[key]
        metrics[f"{prefix}subgroup_gaps_flagged"] = float(len(flagged_gaps(self.subgroups)))
        return {key: float(value) for key, value in metrics.items() if math.isfinite(float(value))}


def evaluate_predictions(y_true, y_prob, categories: list[str], manifest: pd.DataFrame, *, val_true=None,
                         val_prob=None, thresholds: dict | None = None, temperatures: dict | None = None,
                         fit_temperature: bool = False, specificities=DEFAULT_SPECIFICITIES, gap: float = DEFAULT_GAP,
                         n_bootstrap: int = 1000, seed: int = 0, min_positives: int = 10) -> Evaluation:
    """Every figure of the evaluated rows (`manifest` gives patient_key and the subgroup columns).

    Temperatures and thresholds come from the validation predictions when given (fitted here), else
    from `temperatures` / `thresholds` (saved with the model, e.g. for external data)."""
    y_true, y_prob = np.asarray(y_true, dtype=float), np.asarray(y_prob, dtype=float)
    patients = manifest["patient_key"].astype(str).to_numpy()
    notes: list[str] = []
    has_validation = val_true is not None and len(val_true) > 0
    if fit_temperature:
        if not has_validation:
            raise ValueError("temperature scaling needs validation predictions")
        temperatures = dict(zip(categories, map(float, fit_temperatures(val_true, val_prob))))
        at_bound = [c for c, t in temperatures.items() if not 1.01 * LOWEST_T < t < 0.99 * HIGHEST_T]
        if at_bound:
            notes.append(f"temperature at its search bound for {', '.join(at_bound)} (validation predictions "
                         "perfectly separated or saturated): those calibrated probabilities are not to be trusted")
    scale = np.array([(temperatures or {}).get(category, 1.0) for category in categories])
    calibrated = apply_temperatures(y_prob, scale) if temperatures else y_prob
    if has_validation:
        validation = apply_temperatures(val_prob, scale) if temperatures else np.asarray(val_prob, dtype=float)
        thresholds = choose_thresholds(val_true, validation, categories, specificities)
    thresholds = thresholds or {}
    without = [category for category in categories if category not in thresholds]
    if without:
        notes.append(f"no operating points for {', '.join(without)} (no validation predictions with both classes)")
    calibration = calibration_rows(y_true, y_prob, categories, label="raw")
    if temperatures:
        calibration += calibration_rows(y_true, calibrated, categories, label="temperature")
    settings = {"n_bootstrap": n_bootstrap, "seed": seed, "gap": gap, "min_positives": min_positives,
                "specificities": list(specificities), "temperature_scaling": bool(temperatures),
                "evaluated_images": len(y_true), "evaluated_patients": int(len(set(patients)))}
    return Evaluation(
        categories=list(categories),
        discrimination=discrimination(y_true, calibrated, categories, patients, n_resamples=n_bootstrap, seed=seed,
                                      min_positives=min_positives),
        calibration=calibration,
        operating_points=operating_point_rows(y_true, calibrated, categories, thresholds, patients,
                                              n_resamples=n_bootstrap, seed=seed),
        subgroups=subgroup_rows(y_true, calibrated, categories, manifest, patients, gap=gap, n_resamples=n_bootstrap,
                                seed=seed, min_positives=min_positives),
        thresholds=thresholds, temperatures=temperatures, settings=settings, notes=notes)


def write_evaluation(evaluation: Evaluation, out_dir: Path, y_true, curves: dict[str, np.ndarray]) -> dict[str, Path]:
    """discrimination.csv, calibration.csv, operating_points.csv, subgroups.csv, external.csv (when
    mapped), reliability.png and metrics.json (everything, NaN as null) under out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in ("discrimination", "calibration", "operating_points", "subgroups", "external"):
        rows = getattr(evaluation, name)
        if rows or name != "external":
            paths[name] = out_dir / f"{name}.csv"
            pd.DataFrame(rows).to_csv(paths[name], index=False, lineterminator="\n")
    paths["reliability"] = reliability_diagram(y_true, curves, evaluation.categories, out_dir / "reliability.png")
    body = {key: getattr(evaluation, key) for key in ("categories", "settings", "notes", "thresholds", "temperatures",
                                                      "discrimination", "calibration", "operating_points",
                                                      "subgroups", "external")}
    paths["metrics"] = out_dir / "metrics.json"
    paths["metrics"].write_text(json.dumps(_nan_to_none(body), indent=2) + "\n")
    return paths


def _nan_to_none(value):
    if isinstance(value, dict):
        return {key: _nan_to_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(item) for item in value]
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    return value


def log_evaluation(tracking_uri: str, run_id: str, evaluation: Evaluation, paths: dict, model_card: Path,
                   sidecar_path: Path | None = None) -> None:
    """Figures as metrics, the files under `evaluation/`, the card as `model_card.md` and the updated
    model.json (thresholds, temperatures) under `model/`, all in one existing MLflow run."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    metrics = [Metric(key, value, 0, 0) for key, value in evaluation.flat_metrics().items()]
    for start in range(0, len(metrics), 1000):  # log_batch takes at most 1000 metrics per call
        client.log_batch(run_id, metrics=metrics[start:start + 1000])
    for path in paths.values():
        client.log_artifact(run_id, str(path), artifact_path="evaluation")
    client.log_artifact(run_id, str(model_card))
    if sidecar_path is not None:
        client.log_artifact(run_id, str(sidecar_path), artifact_path="model")
