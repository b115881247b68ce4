"""The prepared dataset on disk (ARCHITECTURE.md section 2) and `load_prepared` to read it back."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from data.demographics import DEMOGRAPHIC_COLUMNS
from data.errors import DataError

# Columns before the category columns, then `split`, `fold` after them.
LEADING_COLUMNS = ("image_id", "image_path", "patient_key", "source_path", "view_position", "modality",
                   "original_rows", "original_cols", "pixel_spacing_row_mm", "pixel_spacing_col_mm")
TRAILING_COLUMNS = ("split", "fold")
STRING_COLUMNS = ("image_id", "image_path", "patient_key", "source_path", "view_position", "modality", "split")
# Coarse demographics for subgroup evaluation (sex; age in decades, 90+): never raw ages or birth dates.
LEADING_COLUMNS += DEMOGRAPHIC_COLUMNS
STRING_COLUMNS += DEMOGRAPHIC_COLUMNS


def manifest_columns(categories: list[str]) -> list[str]:
    return list(LEADING_COLUMNS) + list(categories) + list(TRAILING_COLUMNS)


@dataclass(frozen=True)
class PreparedDataset:
    root: Path
    manifest: pd.DataFrame
    categories: list[str]
    summary: dict

    def image_paths(self) -> list[Path]:
        """Absolute paths of the PNGs, in manifest order."""
        return [self.root / relative for relative in self.manifest["image_path"]]

    def labels(self) -> np.ndarray:
        """uint8 N x C multi-hot matrix, columns in `categories` order."""
        return self.manifest[self.categories].to_numpy(dtype=np.uint8)


def read_manifest(path: Path) -> pd.DataFrame:
    """manifest.csv with ids kept as text (never parsed to numbers) and `fold` as nullable Int64."""
    table = pd.read_csv(path, dtype={column: str for column in STRING_COLUMNS}, keep_default_na=False,
                        na_values={"fold": [""], "original_rows": [""], "original_cols": [""],
                                   "pixel_spacing_row_mm": [""], "pixel_spacing_col_mm": [""]})
    if "fold" in table.columns:
        table["fold"] = pd.to_numeric(table["fold"], errors="coerce").astype("Int64")
    return table


def load_prepared(path: Path | str) -> PreparedDataset:
    """Read PREPARED/ (manifest.csv + summary.json); DataError names what is missing or inconsistent."""
    root = Path(path).resolve()
    manifest_path, summary_path = root / "manifest.csv", root / "summary.json"
    for required in (manifest_path, summary_path):
        if not required.is_file():
            raise DataError(f"{root} is not a prepared dataset: {required.name} is missing "
                            "(make one with `cxrtune prepare` or `cxrtune synth`)")
    try:
        summary = json.loads(summary_path.read_text())
    except json.JSONDecodeError as error:
        raise DataError(f"{summary_path} is not valid JSON ({error})") from error
    categories = list(summary.get("categories") or [])
    if not categories:
        raise DataError(f"{summary_path} lists no categories")
    manifest = read_manifest(manifest_path)
    missing = [column for column in ("image_id", "image_path", "patient_key", *categories) if column not in manifest.columns]
    if missing:
        raise DataError(f"{manifest_path} lacks column(s) {', '.join(missing)} named by summary.json")
    return PreparedDataset(root=root, manifest=manifest, categories=categories, summary=summary)


def write_text_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def write_csv_atomic(path: Path, table: pd.DataFrame) -> None:
    write_text_atomic(path, table.to_csv(index=False, lineterminator="\n"))


def write_json_atomic(path: Path, body: dict) -> None:
    write_text_atomic(path, json.dumps(body, indent=2, sort_keys=False) + "\n")
