"""A Markdown model card for a reviewer (CLAIM / TRIPOD+AI style): what the model is for, what it was
trained on, how it was chosen, how well it works and for whom, and what it cannot be trusted with.

Counts only: no image or patient identifiers ever enter the card.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from search.evaluation.subgroups import describe_gap, flagged_gaps


def _fmt(value, digits: int = 3) -> str:
    try:
        return "n/a" if value is None or not np.isfinite(float(value)) else f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return str(value)


def _ci(row: dict, key: str) -> str:
    return f"{_fmt(row[key])} ({_fmt(row[key + '_ci_low'])}-{_fmt(row[key + '_ci_high'])})"


def _table(header: list[str], rows: list[list]) -> list[str]:
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows] + [""])


def _training_data(prepared, categories: list[str]) -> list[str]:
    manifest = prepared.manifest
    parts = manifest["split"].replace("", "unassigned").fillna("unassigned")
    present = [c for c in categories if c in manifest.columns]
    rows = []
    for part in sorted(parts.unique()):
        inside = manifest[parts == part]
        rows.append([part, len(inside), inside["patient_key"].nunique(),
                     *[int(inside[c].sum()) for c in present]])
    lines = [f"Prepared dataset: format {prepared.summary.get('format', '?')}, taxonomy "
             f"{prepared.summary.get('taxonomy', '?')}, {prepared.summary.get('image_size', '?')} px. Images and "
             "patients per part (cv: training and cross-validation; test: held out) and positives per category:", ""]
    return lines + _table(["part", "images", "patients", *present], rows)


def _search_section(sidecar: dict, search_dir: Path | None) -> list[str]:
    config = sidecar.get("config", {})
    lines = [f"Chosen config `{config.get('config_id', '?')}`: {config.get('backbone', '?')}, method "
             f"{config.get('method', '?')}, freeze {config.get('freeze', '?')}, source weights "
             f"{config.get('source_weights', '?')}, {config.get('epochs', '?')} epochs, "
             f"{config.get('image_size', '?')} px (search `{sidecar.get('search', '?')}`)."]
    table_path = search_dir / "fold_table.csv" if search_dir else None
    if table_path is None or not table_path.is_file():
        return lines + ["The search's fold table was not found beside the model: the front is not summarised.", ""]
    table = pd.read_csv(table_path, dtype={"config_id": str})
    full_budget = int(table["full_budget"].astype(bool).sum()) if "full_budget" in table else 0
    lines.append(f"The search tried {len(table)} configs ({full_budget} trained every fold for every epoch).")
    if "cv_val_auc_mean" in table:
        ranked = table.sort_values("cv_val_auc_mean", ascending=False).reset_index(drop=True)
        place = ranked.index[ranked["config_id"] == config.get("config_id")]
        if len(place):
            row = ranked.iloc[int(place[0])]
            lines.append(f"The chosen config ranks {int(place[0]) + 1} of {len(ranked)} by cross-validated AUC "
                         f"({_fmt(row['cv_val_auc_mean'])} ± {_fmt(row.get('cv_val_auc_std'))}).")
    pareto_path = search_dir / "pareto.csv"
    if pareto_path.is_file():
        front = pd.read_csv(pareto_path, dtype={"config_id": str})
        on_front = front[front["on_front"].astype(bool)]
        chosen_on = config.get("config_id") in set(on_front["config_id"])
        lines.append(f"Pareto front (pareto.csv): {len(on_front)} of {len(front)} configs; the chosen config is "
                     f"{'on' if chosen_on else 'not on'} it.")
    return lines + [""]


def model_card_text(*, sidecar: dict, evaluation, prepared, search_dir: Path | None) -> str:
    categories = evaluation.categories
    settings = evaluation.settings
    lines = [f"# Model card: {sidecar.get('backbone', 'model')} `{sidecar.get('config', {}).get('config_id', '')}`",
             "", "## Intended use", "",
             f"Multi-label triage support on frontal chest radiographs: one probability per category "
             f"({', '.join(sidecar.get('categories', []))}). A second reader for a clinician, not a diagnosis; not "
             "for paediatric, lateral or non-radiograph images, nor for populations unlike the training data below.",
             ""]
    if evaluation.external:  # another source: its counts describe the external set, not the training data
        lines += ["## External data", "", "Training data: see the model card of the internal evaluation.", ""]
        lines += _training_data(prepared, prepared.categories)
    else:
        lines += ["## Training data", ""] + _training_data(prepared, list(sidecar.get("categories", [])))
    lines += ["## How it was chosen", ""] + _search_section(sidecar, search_dir)
    lines += ["## Discrimination", "",
              f"Evaluated on {settings['evaluated_images']} images of {settings['evaluated_patients']} patients "
              f"(split `{settings.get('split', '?')}` of {settings.get('data', '?')}). 95% intervals: bootstrap over "
              f"patients, {settings['n_bootstrap']} resamples. The macro average counts categories with at least "
              f"{settings['min_positives']} positives.", ""]
    lines += _table(["category", "positives", "AUC (95% CI)", "AP (95% CI)", "status"],
                    [[r["category"], r["positives"], _ci(r, "auc"), _ci(r, "ap"), r["status"]]
                     for r in evaluation.discrimination])
    lines += ["## Calibration", "", "Expected calibration error (10 equal-width bins) and Brier score; "
              "see reliability.png." + (f" Temperatures: {json.dumps({k: round(v, 3) for k, v in evaluation.temperatures.items()})}."
                                         if evaluation.temperatures else ""), ""]
    lines += _table(["category", "probabilities", "ECE", "Brier"],
                    [[r["category"], r["probabilities"], _fmt(r["ece"]), _fmt(r["brier"])] for r in evaluation.calibration])
    lines += ["## Operating points", "", "Thresholds chosen on validation predictions, figures on the evaluated "
              "data (95% CI).", ""]
    lines += _table(["category", "point", "threshold", "sensitivity", "specificity", "PPV", "NPV"],
                    [[r["category"], r["operating_point"], _fmt(r["threshold"]), _ci(r, "sensitivity"),
                      _ci(r, "specificity"), _ci(r, "ppv"), _ci(r, "npv")] for r in evaluation.operating_points])
    lines += _subgroup_section(evaluation)
    if evaluation.external:
        lines += ["## External validation", ""]
        lines += _table(["category", "mapped to", "internal AUC", "external AUC (95% CI)", "drop"],
                        [[r["category"], r["mapped_to"], _fmt(r["internal_auc"]),
                          f"{_fmt(r['external_auc'])} ({_fmt(r['external_auc_ci_low'])}-{_fmt(r['external_auc_ci_high'])})",
                          _fmt(r["drop"])] for r in evaluation.external])
    lines += ["## Limitations", ""] + [f"- {note}" for note in evaluation.notes] + [
        "- Figures hold for data like the evaluated set; a new site, scanner or population needs its own evaluation.",
        "- Categories with few positives have wide intervals or none; they are listed, not hidden.",
        "- Subgroups without recorded sex, age or view are not evaluated for that attribute.", ""]
    lines += ["## Reproduce", "", "```json", json.dumps({"config": sidecar.get("config", {}),
                                                        "evaluation": settings}, indent=2, default=str), "```", ""]
    return "\n".join(lines)


def _subgroup_section(evaluation) -> list[str]:
    lines = ["## Subgroups", ""]
    if not evaluation.subgroups:
        return lines + ["The evaluated data records no sex, age band or view position with two or more groups.", ""]
    gaps = flagged_gaps(evaluation.subgroups)
    lines.append(f"Each group against the rest of the evaluated images; a gap is flagged when the group's AUC is lower "
                 f"by more than {evaluation.settings['gap']} and the gap's 95% interval excludes zero. "
                 f"Flagged: {len(gaps)}.")
    lines += [""] + [f"- **{describe_gap(row)}**" for row in gaps] + [""]
    lines += _table(["attribute", "group", "category", "images", "positives", "AUC (95% CI)", "gap (95% CI)", "status"],
                    [[r["attribute"], r["group"], r["category"], r["images"], r["positives"], _ci(r, "auc"),
                      f"{_fmt(r['gap'])} ({_fmt(r['gap_ci_low'])} to {_fmt(r['gap_ci_high'])})", r["status"]]
                     for r in evaluation.subgroups])
    return lines


def write_model_card(path: Path, **parts) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(model_card_text(**parts))
    return path
