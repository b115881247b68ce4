"""Subgroup figures (sex, age band, view position) and the AUC gaps worth a reviewer's attention.

For each attribute the prepared data has, each group is compared with the rest of the evaluated
images (women with everyone else, 70-79 with every other age band, AP with the other views). The
gap is AUC(group) - AUC(rest) per category; its interval comes from the same patient resamples for
both sides (a paired bootstrap), so noise shows as a wide interval that crosses zero. A gap is
flagged when the group is worse by more than `gap` AND the whole interval lies below zero; a gap
that noise can explain is reported, not flagged.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from search.evaluation.clinical_metrics import category_status, interval, patient_resample_counts
from search.evaluation.auc import weighted_auc

ATTRIBUTES = ("sex", "age_band", "view_position")
DEFAULT_GAP = 0.05


def subgroup_rows(y_true, y_score, categories: list[str], manifest: pd.DataFrame, patients, *,
                  gap: float = DEFAULT_GAP, n_resamples: int = 1000, seed: int = 0,
                  min_positives: int = 10) -> list[dict]:
    """One row per (attribute, group, category) for the attributes with two or more known groups."""
    y_true, y_score = np.asarray(y_true, dtype=float), np.asarray(y_score, dtype=float)
    rows = []
    for attribute in ATTRIBUTES:
        if attribute not in manifest.columns:
            continue
        values = manifest[attribute].fillna("").astype(str).str.strip().to_numpy()
        groups = sorted(set(values) - {""})
        if len(groups) < 2:
            continue
        for group in groups:
            rows += _group_rows(y_true, y_score, categories, values == group, patients, attribute=attribute,
                                group=group, gap=gap, n_resamples=n_resamples, seed=seed,
                                min_positives=min_positives)
    return rows


def _group_rows(y_true, y_score, categories, inside, patients, *, attribute, group, gap, n_resamples, seed,
                min_positives) -> list[dict]:
    full = np.ones((1, len(y_true)), dtype=np.int32)
    boot_in, boot_out = [], []
    for counts in patient_resample_counts(patients, n_resamples=n_resamples, seed=seed):
        boot_in.append(np.stack([weighted_auc(y_true[:, c], y_score[:, c], counts * inside)
                                 for c in range(len(categories))], 1))
        boot_out.append(np.stack([weighted_auc(y_true[:, c], y_score[:, c], counts * ~inside)
                                  for c in range(len(categories))], 1))
    boot_in, boot_out = np.concatenate(boot_in), np.concatenate(boot_out)
    rows = []
    for c, category in enumerate(categories):
        n_pos_in = int(y_true[inside, c].sum())
        n_pos_out = int(y_true[~inside, c].sum())
        status_in = category_status(n_pos_in, int(inside.sum()) - n_pos_in, min_positives)
        status_out = category_status(n_pos_out, int((~inside).sum()) - n_pos_out, min_positives)
        auc_in = float(weighted_auc(y_true[:, c], y_score[:, c], full * inside)[0])
        auc_out = float(weighted_auc(y_true[:, c], y_score[:, c], full * ~inside)[0])
        gap_low, gap_high = interval(boot_in[:, c] - boot_out[:, c])
        difference = auc_in - auc_out
        both_ok = status_in == "ok" and status_out == "ok"
        row = {"attribute": attribute, "group": group, "category": category, "images": int(inside.sum()),
               "positives": n_pos_in, "status": status_in if status_in != "ok" else
               ("rest: " + status_out if status_out != "ok" else "ok"),
               "auc": auc_in, "auc_rest": auc_out, "gap": difference, "gap_ci_low": gap_low, "gap_ci_high": gap_high,
               "flagged": bool(both_ok and difference < -gap and gap_high < 0)}
        row["auc_ci_low"], row["auc_ci_high"] = interval(boot_in[:, c])
        rows.append(row)
    return rows


def flagged_gaps(rows: list[dict]) -> list[dict]:
    return [row for row in rows if row["flagged"]]


def describe_gap(row: dict) -> str:
    return (f"{row['attribute']} {row['group']}, {row['category']}: AUC {row['auc']:.3f} vs {row['auc_rest']:.3f} "
            f"for the rest (gap {row['gap']:+.3f}, 95% CI {row['gap_ci_low']:+.3f} to {row['gap_ci_high']:+.3f})")
