"""Conversion records -> the prepared folder's files: manifest, rejects, duplicates, summary, taxonomy.

Duplicates are decided here, after all files are converted, in sorted source-path order, so the file
kept is the same whatever order the parallel workers finished in.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from data.batch_conversion import ConversionSettings, convert_one
from data.demographics import DEMOGRAPHIC_COLUMNS
from data.dicom_header import OTHER_VALUE, VIEW_POSITION_TERMS, clean_code_string
from data.labels import Taxonomy, drop_least_category, drop_rare_categories
from data.manifest import manifest_columns, write_csv_atomic, write_json_atomic, write_text_atomic
from data.privacy import patient_key


def finish_prepared(out_dir: Path, *, tasks, records: dict[str, dict], settings: ConversionSettings,
                    early_rejects: dict[str, str], label_rows: pd.DataFrame, categories: list[str],
                    taxonomy: Taxonomy, dataset_format: str, min_category_images: int,
                    extra: dict[str, Any], drop_least_class: bool = False) -> dict[str, Any]:
    """Write manifest.csv, rejects.csv, duplicates.csv, taxonomy.yaml and summary.json; returns the summary."""
    task_of = {task.source_path: task for task in tasks}
    accepted, rejects, duplicates, id_conflicts = _triage(records, sorted(task_of), early_rejects)
    images_dir = out_dir / "images"
    for index, record in enumerate(accepted):
        # A PNG can be missing (deleted by hand, or removed as a duplicate's in an earlier run) or be a
        # conflicting file's: convert the kept file again in those cases only.
        if record["image_id"] in id_conflicts or not (out_dir / record["image_path"]).is_file():
            accepted[index] = convert_one(task_of[record["source_path"]], settings, str(images_dir))

    manifest = _manifest(accepted, label_rows, categories, settings, dataset_format)
    kept, dropped = drop_rare_categories(manifest[categories], min_category_images) if min_category_images \
        else (categories, {})
    least = {}
    if drop_least_class:  # the study's: the category with the fewest accepted images goes (9 -> 8, NIH 14 -> 13)
        kept, least = drop_least_category(manifest[kept])
        dropped = {**dropped, **least}
    manifest = manifest[manifest_columns(kept)]
    _remove_unlisted_images(images_dir, set(manifest["image_path"]))

    rejects_table = pd.DataFrame(sorted(rejects.items()), columns=["source_path", "reason"])
    duplicates_table = pd.DataFrame(sorted(duplicates.items()), columns=["source_path", "duplicate_of"])
    input_count = len(task_of) + len(early_rejects)
    summary = {
        "format": dataset_format,
        "counts": {"input": input_count, "accepted": len(manifest), "rejected": len(rejects_table),
                   "duplicate": len(duplicates_table)},
        "categories": kept,
        "dropped_categories": dropped,
        "least_class_dropped": next(iter(least), None),
        "category_counts": {name: int(manifest[name].sum()) for name in kept},
        "rejection_reasons": _reason_counts(rejects_table),
        # Header values that were not DICOM defined terms, written as "other" (never as they were).
        "header_values_replaced": {column: int((manifest[column] == OTHER_VALUE).sum())
                                   for column in ("view_position", "modality")},
        "patients": int(manifest["patient_key"].nunique()),
        "image_size": settings.image_size,
        "bit_depth": settings.bit_depth,
        "taxonomy": taxonomy.name,
        "allowed_modalities": list(settings.allowed_modalities) if settings.allowed_modalities else None,
        "min_side_px": settings.min_side_px,
        "max_aspect_ratio": settings.max_aspect_ratio,
        **extra,
    }
    if sum(summary["counts"][key] for key in ("accepted", "rejected", "duplicate")) != input_count:
        raise RuntimeError(f"bookkeeping error: {summary['counts']} do not add up")  # a bug, not user input
    write_csv_atomic(out_dir / "manifest.csv", manifest)
    write_csv_atomic(out_dir / "rejects.csv", rejects_table)
    write_csv_atomic(out_dir / "duplicates.csv", duplicates_table)
    write_text_atomic(out_dir / "taxonomy.yaml", taxonomy.to_yaml())
    write_json_atomic(out_dir / "summary.json", summary)
    return summary


def _triage(records: dict[str, dict], sources: list[str], early_rejects: dict[str, str]):
    """(accepted records, rejects {source: reason}, duplicates {source: image id kept}, conflicting image ids),
    deciding in the order of `sources`: the first file with given pixels is kept, later ones are duplicates;
    a later file with a used image id but other pixels is rejected."""
    rejects = dict(early_rejects)
    duplicates: dict[str, str] = {}
    accepted: list[dict[str, Any]] = []
    owner_of_hash: dict[str, str] = {}
    owner_of_id: dict[str, dict[str, Any]] = {}
    id_conflicts: set[str] = set()
    for source in sources:
        record = records[source]
        if record["status"] == "rejected":
            rejects[source] = record["reason"]
        elif record["content_hash"] in owner_of_hash:
            duplicates[source] = owner_of_hash[record["content_hash"]]
        elif record["image_id"] in owner_of_id:
            first = owner_of_id[record["image_id"]]
            rejects[source] = f"image id {record['image_id']} also used by {first['source_path']} with different pixels"
            id_conflicts.add(record["image_id"])
        else:
            owner_of_hash[record["content_hash"]] = record["image_id"]
            owner_of_id[record["image_id"]] = record
            accepted.append(record)
    return accepted, rejects, duplicates, id_conflicts


def _manifest(accepted, label_rows: pd.DataFrame, categories, settings, dataset_format) -> pd.DataFrame:
    rows = []
    for record in accepted:
        labels = label_rows.loc[record["source_path"]]
        given_id = str(labels.get("patient_id", "") or "").strip()
        key = patient_key(given_id, settings.salt) if given_id else record.get("patient_key", "")
        # No patient id anywhere: the image is its own patient, so it can never leak across folds with
        # another image of an unknown patient grouped by accident.
        key = key or patient_key(f"image:{record['image_id']}", settings.salt)
        row = {"image_id": record["image_id"], "image_path": record["image_path"], "patient_key": key,
               "source_path": record["source_path"], "view_position": record.get("view_position") or "",
               "modality": record.get("modality") or "", "original_rows": record["original_rows"],
               "original_cols": record["original_cols"], "pixel_spacing_row_mm": record.get("pixel_spacing_row_mm"),
               "pixel_spacing_col_mm": record.get("pixel_spacing_col_mm"), "split": "", "fold": pd.NA}
        # DICOM header facts (record) or the NIH table's columns (labels): sex and age band only.
        row.update({column: record.get(column) or labels.get(column) or "" for column in DEMOGRAPHIC_COLUMNS})
        if dataset_format == "nih":
            row.update(_nih_facts(labels, record))
        row.update({category: int(labels[category]) for category in categories})
        rows.append(row)
    table = pd.DataFrame(rows, columns=manifest_columns(categories))
    table["fold"] = table["fold"].astype("Int64")
    for column in ("original_rows", "original_cols"):
        table[column] = table[column].astype("Int64")
    return table


def _nih_facts(labels: pd.Series, record: dict[str, Any]) -> dict[str, Any]:
    """View, split and the PNG's own pixel spacing (NIH's spacing is the original DICOM's, before the
    release resized every image to 1024 x 1024: scale it per axis)."""
    rows, cols = record["original_rows"], record["original_cols"]
    spacing_row = labels["pixel_spacing_y_mm"] * labels["original_height"] / rows if rows else None
    spacing_col = labels["pixel_spacing_x_mm"] * labels["original_width"] / cols if cols else None
    return {"view_position": clean_code_string(labels["view_position"], VIEW_POSITION_TERMS), "modality": "", "split": labels["split"],
            "fold": labels["fold"], "pixel_spacing_row_mm": None if pd.isna(spacing_row) else round(float(spacing_row), 6),
            "pixel_spacing_col_mm": None if pd.isna(spacing_col) else round(float(spacing_col), 6)}


def _reason_counts(rejects_table: pd.DataFrame) -> dict[str, int]:
    """Rejections grouped by the reason's first words (before any parenthesis or file-specific detail)."""
    kinds = rejects_table["reason"].str.split(r" \(|;", regex=True).str[0]
    return {str(kind): int(count) for kind, count in kinds.value_counts().sort_index().items()}


def _remove_unlisted_images(images_dir: Path, listed: set[str]) -> None:
    """Drop PNGs of duplicates, of earlier settings and leftovers of killed writes: images/ == manifest."""
    for path in images_dir.iterdir():
        if f"images/{path.name}" not in listed and path.is_file():
            path.unlink()
