"""Patient-grouped, multi-label stratified test split and cross-validation folds.

The test part is held out first (so it does not change with the number of folds), then the rest is cut
into K folds. Both cuts are made over patients, never images, so no patient is in two parts, and both
balance every category's positive image count across parts.

Method: iterative stratification (Sechidis et al., 2011) over patients weighted by their image counts.
Categories are visited rarest first (fewest positive patients); each not-yet-placed patient positive for
the category goes, largest first, to the part that is furthest below its target count for that category
(ties: the one furthest below its target image count). The seed shuffles patients before that stable
largest-first sort, so equal patients are taken in the seed's order. Patients with no finding then
fill the parts' remaining image quotas. This is one pass over the patients: ~1 s for NIH's 30,805.

Tolerance (checked by tests/test_data_folds.py): for every category and every part, the positive image
count differs from its target (part fraction x all positive images of the category) by at most
`max(0.1 x target, 3 x the largest positive image count of one patient)`; patients are indivisible, so a
bound in patient units is the honest one for small tables (300 random tables of 20-400 patients: worst
2.3x). On the full NIH table every part's prevalence of all 14 findings is within 10% (relative) of the
overall prevalence (seeds 0-2: at most 6.1%; Hernia 2.1%). A category with fewer positive patients than
parts cannot be in every part: its positive patients go where the targets are largest (the cv side of
the test cut first; then one per fold), the other parts get none, and `assign_folds` warns naming the category; a fold without positives
has no validation AUC for that category (trials leave it out and count it).
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from data.errors import DataError

# Columns of a prepared manifest that are never labels (ARCHITECTURE.md §2).
NON_LABEL_COLUMNS = frozenset({
    "image_id", "image_path", "patient_key", "source_path", "view_position", "modality",
    "original_rows", "original_cols", "pixel_spacing_row_mm", "pixel_spacing_col_mm", "split", "fold",
    "sex", "age_band",
})
TEST_SPLIT, CV_SPLIT, TEST_FOLD = "test", "cv", -1


def assign_folds(table: pd.DataFrame, n_folds: int = 5, test_fraction: float = 0.1, seed: int = 0, *,
                 patient_col: str = "patient_key", label_cols: list[str] | None = None) -> pd.DataFrame:
    """Return a copy of `table` with `split` ("cv"/"test") and `fold` (0..n_folds-1, -1 for test).

    `label_cols` are the 0/1 category columns (default: every column not in the manifest's fixed set).
    The result depends on the seed and on the set of rows, not on their order.
    """
    _check_arguments(table, n_folds, test_fraction, patient_col)
    label_cols = _label_columns(table, patient_col, label_cols)
    patients, image_counts, positive_counts = _patient_counts(table, patient_col, label_cols)
    rng = np.random.default_rng(seed)

    in_test = np.zeros(len(patients), dtype=bool)
    if test_fraction > 0:
        in_test = _stratify(image_counts, positive_counts, [test_fraction, 1 - test_fraction], rng) == 0
    cv = np.flatnonzero(~in_test)
    patient_fold = np.full(len(patients), TEST_FOLD, dtype=np.int64)
    patient_fold[cv] = _stratify(image_counts[cv], positive_counts[cv], [1 / n_folds] * n_folds, rng)

    empty = sorted(set(range(-1 if test_fraction > 0 else 0, n_folds)) - set(patient_fold.tolist()))
    if empty:
        raise DataError(f"{len(patients)} patients leave part(s) {empty} (-1 = test) empty with n_folds={n_folds} "
                        f"and test_fraction={test_fraction}: use fewer folds or a larger test fraction")
    _warn_sparse_categories(positive_counts, label_cols, n_folds, test_fraction)
    fold_of = pd.Series(patient_fold, index=patients)
    fold = fold_of.reindex(table[patient_col].to_numpy()).to_numpy()
    result = table.copy()
    result["split"] = np.where(fold == TEST_FOLD, TEST_SPLIT, CV_SPLIT)
    result["fold"] = fold
    return result


def part_positive_counts(table: pd.DataFrame, label_cols: list[str], *,
                         patient_col: str = "patient_key") -> pd.DataFrame:
    """Patients, images and positive images per category in each part (`test`, `fold 0`, ...) and `all`."""
    if "fold" not in table.columns:
        raise DataError("no `fold` column: assign folds first (`cxrtune folds PATH`)")
    part = np.where(table["fold"] < 0, "test", "fold " + table["fold"].astype(str))
    labels = table[label_cols].astype(np.int64)
    counts = labels.groupby(part).sum()
    counts.insert(0, "images", table.groupby(part).size())
    counts.insert(0, "patients", table[patient_col].groupby(part).nunique())
    counts.loc["all"] = [table[patient_col].nunique(), len(table), *labels.sum()]
    return counts


def _check_arguments(table, n_folds, test_fraction, patient_col) -> None:
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        raise DataError(f"n_folds must be an integer >= 2, got {n_folds!r}")
    if not 0 <= test_fraction < 1:
        raise DataError(f"test_fraction must be in [0, 1), got {test_fraction!r}")
    if patient_col not in table.columns:
        raise DataError(f"patient column {patient_col!r} not in the table; columns: {list(table.columns)}")
    if table[patient_col].isna().any():
        raise DataError(f"{int(table[patient_col].isna().sum())} rows have no {patient_col!r}; "
                        "every image needs a patient to keep folds patient-disjoint")
    n_patients = table[patient_col].nunique()
    if n_patients < n_folds + (test_fraction > 0):
        raise DataError(f"{n_patients} patients cannot fill {n_folds} folds"
                        f"{' and a test part' if test_fraction > 0 else ''}: need one patient per part")


def _label_columns(table, patient_col, label_cols) -> list[str]:
    if label_cols is None:
        label_cols = [c for c in table.columns if c not in NON_LABEL_COLUMNS and c != patient_col]
    missing = [c for c in label_cols if c not in table.columns]
    if missing:
        raise DataError(f"label columns {missing} not in the table; columns: {list(table.columns)}")
    for column in label_cols:
        values = pd.unique(table[column])
        if not set(values.tolist()) <= {0, 1}:
            raise DataError(f"label column {column!r} must hold only 0/1, found {sorted(map(str, values))[:5]}")
    return list(label_cols)


def _patient_counts(table, patient_col, label_cols):
    """Sorted patient ids, images per patient (P,), positive images per patient and category (P x C)."""
    labels = table[label_cols].to_numpy(dtype=np.int64)
    codes, patients = pd.factorize(table[patient_col], sort=True)
    positive_counts = np.zeros((len(patients), len(label_cols)), dtype=np.int64)
    np.add.at(positive_counts, codes, labels)
    image_counts = np.bincount(codes, minlength=len(patients)).astype(np.int64)
    return patients, image_counts, positive_counts


def _stratify(image_counts: np.ndarray, positive_counts: np.ndarray, fractions: list[float],
              rng: np.random.Generator) -> np.ndarray:
    """Part index (0..len(fractions)-1) per patient; see the module docstring for the method."""
    n_patients, n_labels = positive_counts.shape
    fractions = np.asarray(fractions, dtype=np.float64)
    # Remaining targets in images: what each part still needs, per category and in total.
    label_need = fractions[:, None] * positive_counts.sum(axis=0)[None, :]
    image_need = fractions * image_counts.sum()
    part = np.full(n_patients, -1, dtype=np.int64)
    # A random order, then largest-first: the order among equal patients is the seed's.
    order = rng.permutation(n_patients)
    positive_patients = (positive_counts > 0).sum(axis=0)
    for label in np.argsort(positive_patients, kind="stable"):
        candidates = order[positive_counts[order, label] > 0]
        candidates = candidates[np.argsort(-positive_counts[candidates, label], kind="stable")]
        for patient in candidates:
            if part[patient] >= 0:
                continue
            need = label_need[:, label]
            best = np.flatnonzero(need == need.max())
            target = best[np.argmax(image_need[best])] if len(best) > 1 else best[0]
            part[patient] = target
            label_need[target] -= positive_counts[patient]
            image_need[target] -= image_counts[patient]
    # Patients without any positive label: fill the image quotas, largest patients first.
    rest = order[part[order] < 0]
    rest = rest[np.argsort(-image_counts[rest], kind="stable")]
    for patient in rest:
        target = int(np.argmax(image_need))
        part[patient] = target
        image_need[target] -= image_counts[patient]
    return part


def _warn_sparse_categories(positive_counts, label_cols, n_folds, test_fraction) -> None:
    n_parts = n_folds + (test_fraction > 0)
    positive_patients = (positive_counts > 0).sum(axis=0)
    sparse = [f"{name} ({count})" for name, count in zip(label_cols, positive_patients) if count < n_parts]
    if sparse:
        warnings.warn(f"categories with fewer positive patients than the {n_parts} parts cannot be in every "
                      f"part (positive patients in brackets): {', '.join(sparse)}", stacklevel=3)


def assign_prepared_folds(prepared_path, n_folds: int = 5, test_fraction: float = 0.1,
                          seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    """Assign folds to a prepared dataset in place: manifest.csv gets `split`/`fold`, summary.json `folds`.

    NIH-prepared data keeps NIH's official split (the manifest's `split` column): only its `cv` rows get
    folds and `test_fraction` is ignored (NIH data prepared without the split lists is split here). Both files are replaced atomically. Returns the manifest and
    its categories.
    """
    from data.manifest import load_prepared, write_csv_atomic, write_json_atomic

    prepared = load_prepared(prepared_path)
    manifest, summary, categories = prepared.manifest, dict(prepared.summary), prepared.categories
    # `prepare` writes NIH's official lists into `split`; without the lists the column is empty.
    given_split = manifest["split"].fillna("").astype(str) if "split" in manifest.columns else None
    keeps_official_split = summary.get("format") == "nih" and given_split is not None and (given_split != "").any()
    if keeps_official_split:
        if not set(given_split.unique()) <= {CV_SPLIT, TEST_SPLIT}:
            raise DataError(f"{prepared.root / 'manifest.csv'}: NIH's official split must mark every image "
                            f"'cv' or 'test', found {sorted(set(given_split.unique()) - {CV_SPLIT, TEST_SPLIT})}")
        cv_rows = manifest["split"] == CV_SPLIT
        folded = assign_folds(manifest[cv_rows], n_folds, 0.0, seed, label_cols=categories)
        manifest["fold"] = TEST_FOLD
        manifest.loc[cv_rows, "fold"] = folded["fold"]
        test_fraction = float((~cv_rows).mean())
    else:
        manifest = assign_folds(manifest.drop(columns=["split", "fold"], errors="ignore"), n_folds,
                                test_fraction, seed, label_cols=categories)
    summary["folds"] = {"n_folds": int(n_folds), "test_fraction": float(test_fraction), "seed": int(seed),
                        "official_test_split": bool(keeps_official_split)}
    write_csv_atomic(prepared.root / "manifest.csv", manifest)
    write_json_atomic(prepared.root / "summary.json", summary)
    return manifest, categories

