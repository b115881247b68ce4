"""`cxrtune evaluate`: a clinical evaluation of a train-final model on a prepared dataset.

Validation predictions decide everything that is chosen (temperatures, thresholds): the search's
out-of-fold predictions when given (`val_predictions`: a DataFrame or CSV with `image_id` and one
probability column per category), else the model's predictions on one cv fold of the data
(`val_fold`). A train-final model was trained on every cv row, so that fallback is optimistic and
the evaluation says so. On external data (a `mapping` to another taxonomy) nothing is fitted: the
thresholds and temperatures saved with the model are applied, and internal vs external AUC compared.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from search.errors import SearchError
from search.evaluation.operating_points import DEFAULT_SPECIFICITIES
from search.evaluation.subgroups import DEFAULT_GAP

SPLITS = ("test", "all")
PREDICT_BATCH = 16  # images per forward pass


@dataclass
class EvaluationOutcome:
    evaluation: object  # search.evaluation.figures.Evaluation
    out_dir: Path
    paths: dict
    model_card: Path

    def summary_lines(self) -> list[str]:
        from search.evaluation.subgroups import describe_gap, flagged_gaps

        ev = self.evaluation
        lines = [f"evaluated {ev.settings['evaluated_images']} images ({ev.settings['evaluated_patients']} patients); "
                 f"95% intervals from {ev.settings['n_bootstrap']} patient resamples"]
        for row in ev.discrimination:
            lines.append(f"  {row['category']:<32} AUC {row['auc']:.3f} ({row['auc_ci_low']:.3f}-{row['auc_ci_high']:.3f})"
                         f"  AP {row['ap']:.3f}  positives {row['positives']}"
                         + ("" if row["status"] == "ok" else f"  [{row['status']}]"))
        macro_ece = [row for row in ev.calibration if row["category"] == "macro"]
        lines.append("calibration (macro): " + ", ".join(f"{row['probabilities']} ECE {row['ece']:.3f} Brier "
                                                        f"{row['brier']:.3f}" for row in macro_ece))
        gaps = flagged_gaps(ev.subgroups)
        lines.append(f"subgroup gaps flagged: {len(gaps)}")
        lines += [f"  {describe_gap(row)}" for row in gaps]
        lines += [f"note: {note}" for note in ev.notes]
        lines.append(f"written: {self.out_dir} (model card {self.model_card.name})")
        return lines


def read_sidecar(model_path) -> tuple[Path, dict]:
    model_path = Path(model_path)
    sidecar_path = model_path.with_suffix(".json")
    if not model_path.is_file() or not sidecar_path.is_file():
        raise SearchError(f"MODEL {model_path}: expected a train-final model.keras with model.json beside it")
    try:
        return sidecar_path, json.loads(sidecar_path.read_text())
    except json.JSONDecodeError as error:
        raise SearchError(f"{sidecar_path} is not valid JSON: {error}") from None


def check_options(*, split, specificities, gap, n_bootstrap, min_positives) -> None:
    if split not in SPLITS:
        raise SearchError(f"--split {split!r}: accepted {', '.join(SPLITS)}")
    if not specificities or not all(0 < s < 1 for s in specificities):
        raise SearchError(f"--specificity {specificities}: each must be between 0 and 1 (e.g. 0.9,0.95)")
    if not 0 < gap < 1:
        raise SearchError(f"--gap {gap}: an AUC difference between 0 and 1 (e.g. 0.05)")
    if n_bootstrap < 10 or min_positives < 1:
        raise SearchError(f"--bootstrap {n_bootstrap} / --min-positives {min_positives}: need >= 10 and >= 1")


def evaluate_model(model_path, data_path, *, split: str = "test", out_dir=None, val_predictions=None,
                   val_fold: int = 0, specificities=DEFAULT_SPECIFICITIES, temperature: bool = False,
                   gap: float = DEFAULT_GAP, n_bootstrap: int = 1000, min_positives: int = 10, mapping=None,
                   seed: int = 0, save_to_model: bool = True, search_dir=None) -> EvaluationOutcome:
    """Evaluate, write OUT (default MODEL_DIR/evaluation), update model.json; see the module docstring."""
    from data.manifest import load_prepared
    from search.evaluation.figures import evaluate_predictions, write_evaluation
    from search.evaluation.external import external_rows, mapped_labels
    from search.evaluation.model_card import write_model_card

    check_options(split=split, specificities=specificities, gap=gap, n_bootstrap=n_bootstrap,
                  min_positives=min_positives)
    sidecar_path, sidecar = read_sidecar(model_path)
    prepared = load_prepared(data_path)
    model_categories = list(sidecar["categories"])
    data_taxonomy = prepared.summary.get("taxonomy")
    pairs = category_pairs(sidecar, prepared, mapping)
    categories = list(pairs)
    manifest = prepared.manifest
    evaluated = np.ones(len(manifest), bool) if split == "all" else (manifest["split"] == "test").to_numpy()
    if not evaluated.any():
        raise SearchError(f"--data {prepared.root} has no test rows (split == 'test'); assign folds with a test "
                          "fraction (`cxrtune folds`) or pass --split all")
    validation_rows, val_frame, notes = _validation_plan(prepared, sidecar, val_predictions, val_fold,
                                                         external=mapping is not None, categories=categories)
    probabilities = _predict_rows(model_path, sidecar, prepared, np.flatnonzero(evaluated | validation_rows))
    column = [model_categories.index(c) for c in categories]
    labels = mapped_labels(prepared.labels(), prepared.categories, pairs)
    y_prob = probabilities[evaluated][:, column]
    val_true = val_prob = None
    if validation_rows.any():
        val_true, val_prob = labels[validation_rows], probabilities[validation_rows][:, column]
    elif val_frame is not None:
        val_true, val_prob = val_frame
    saved = sidecar.get("clinical", {})
    evaluation = evaluate_predictions(
        labels[evaluated], y_prob, categories, manifest[evaluated].reset_index(drop=True), val_true=val_true,
        val_prob=val_prob, thresholds=saved.get("thresholds") if mapping is not None else None,
        temperatures=saved.get("temperatures") if mapping is not None else None,
        fit_temperature=temperature and mapping is None, specificities=specificities, gap=gap,
        n_bootstrap=n_bootstrap, seed=seed, min_positives=min_positives)
    evaluation.notes = notes + evaluation.notes
    evaluation.settings.update(split=split, data=str(prepared.root), data_taxonomy=data_taxonomy,
                               mapping=None if mapping is None else str(mapping), validation=notes[:1])
    if mapping is not None:
        evaluation.external = external_rows(evaluation.discrimination, sidecar.get("test_metrics", {}), pairs)
    out_dir = Path(out_dir) if out_dir else Path(model_path).parent / "evaluation"
    curves = {"raw": y_prob}
    if evaluation.temperatures:
        from search.evaluation.calibration import apply_temperatures

        curves["temperature"] = apply_temperatures(y_prob, [evaluation.temperatures[c] for c in categories])
    paths = write_evaluation(evaluation, out_dir, labels[evaluated], curves)
    if save_to_model and mapping is None:
        sidecar["clinical"] = {"thresholds": evaluation.thresholds, "temperatures": evaluation.temperatures,
                               "validation": notes[0] if notes else "", "evaluation": str(out_dir)}
        sidecar_path.write_text(json.dumps(sidecar, indent=2, default=float) + "\n")
    card = write_model_card(out_dir / "model_card.md", sidecar=sidecar, evaluation=evaluation, prepared=prepared,
                            search_dir=search_dir or _guess_search_dir(Path(model_path), sidecar))
    return EvaluationOutcome(evaluation, out_dir, paths, card)


def category_pairs(sidecar: dict, prepared, mapping) -> dict[str, list[str]]:
    """{model category: [data categories]}: the mapping's, else each category to itself."""
    from search.evaluation.external import check_mapping, load_mapping

    model_categories = list(sidecar["categories"])
    if mapping is not None:
        return check_mapping(load_mapping(mapping), model_categories, prepared.categories,
                             model_taxonomy=sidecar.get("taxonomy"), data_taxonomy=prepared.summary.get("taxonomy"))
    missing = [c for c in model_categories if c not in prepared.categories]
    if missing:
        raise SearchError(f"--data {prepared.root} lacks the model's categories {', '.join(missing)}; "
                          "for data with another taxonomy pass --mapping FILE (or study-nih / nih-study)")
    return {c: [c] for c in model_categories}


def _validation_plan(prepared, sidecar, val_predictions, val_fold, *, external, categories):
    """(mask of manifest rows to predict for validation, (labels, probabilities) from a file, notes)."""
    manifest = prepared.manifest
    none = np.zeros(len(manifest), bool)
    if external:
        return none, None, ["external data: thresholds and temperatures are the model's saved ones; none fitted here"]
    if val_predictions is not None:
        frame = val_predictions if isinstance(val_predictions, pd.DataFrame) else _read_predictions(val_predictions)
        missing = [c for c in ["image_id", *categories] if c not in frame.columns]
        if missing:
            raise SearchError(f"validation predictions lack column(s) {', '.join(missing)}; expected image_id and "
                              "one probability column per category")
        position = pd.Series(np.arange(len(manifest)), index=manifest["image_id"].astype(str))
        ids = frame["image_id"].astype(str)
        unknown = ids[~ids.isin(position.index)]
        if len(unknown):
            raise SearchError(f"validation predictions name {len(unknown)} image_id(s) not in --data "
                              f"(first: {unknown.iloc[0]})")
        rows = position[ids].to_numpy()
        labels = prepared.labels()[rows][:, [prepared.categories.index(c) for c in categories]].astype(float)
        return none, (labels, frame[categories].to_numpy(float)), [
            f"thresholds and temperatures chosen on {len(frame)} given validation predictions (out-of-fold)"]
    rows = ((manifest["split"] == "cv") & (manifest["fold"] == val_fold)).fillna(False).to_numpy(bool)
    if not rows.any():
        raise SearchError(f"--data {prepared.root} has no cv rows in fold {val_fold} to choose thresholds on; "
                          "pass --val-predictions CSV or assign folds (`cxrtune folds`)")
    note = f"thresholds and temperatures chosen on cv fold {val_fold} of the data ({int(rows.sum())} images)"
    if sidecar.get("search"):
        note += ("; a train-final model was trained on these images, so the operating points and temperatures "
                 "are optimistic: prefer the search's out-of-fold predictions (--val-predictions)")
    return rows, None, [note]


def _read_predictions(path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise SearchError(f"--val-predictions {path}: no such file (a CSV with image_id and per-category columns)")
    return pd.read_csv(path, dtype={"image_id": str})


def _predict_rows(model_path, sidecar: dict, prepared, rows: np.ndarray) -> np.ndarray:
    """N x C probabilities (model order) for the manifest rows listed (NaN elsewhere)."""
    from data.pipeline import make_dataset
    from search.predict import load_final_model

    model, _ = load_final_model(model_path)
    paths = [prepared.image_paths()[i] for i in rows]
    n_categories = len(sidecar["categories"])
    dataset = make_dataset(paths, np.zeros((len(paths), n_categories), np.float32),
                           image_size=int(sidecar["image_size"]), batch_size=PREDICT_BATCH,
                           preprocessing=sidecar["preprocessing"], training=False, seed=0)
    probabilities = np.full((len(prepared.manifest), n_categories), np.nan)
    probabilities[rows] = np.asarray(model.predict(dataset, verbose=0), dtype=float)
    return probabilities


def _guess_search_dir(model_path: Path, sidecar: dict) -> Path | None:
    """OUT/NAME for a model saved at its default place, OUT/NAME/final/CONFIG_ID/model.keras."""
    candidate = model_path.resolve().parent.parent.parent
    return candidate if (candidate / "fold_table.csv").is_file() else None
