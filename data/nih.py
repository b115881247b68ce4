"""The NIH ChestX-ray14 release: its label table, its official split lists and its PNG folders.

`Data_Entry_2017.csv` quirks handled here (see ../shared/data/SOURCES.md): the header names 9 columns but
`OriginalImage[Width,Height]` and `OriginalImagePixelSpacing[x,y]` hold unquoted commas, so rows have 11
fields; the 2017 file ends its header with a trailing comma and uses CRLF; the 2020 re-release writes ages
as plain numbers ("58") where 2017 wrote "058Y". Both may be gzipped.
"""
from __future__ import annotations

import csv
import gzip
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd

from data.demographics import age_band, normalise_sex
from data.errors import DataError

FINDINGS = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
)
NO_FINDING = "No Finding"
HEADER_START = ("Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
                "View Position")
# The 11 fields of a data row, in file order.
FIELDS = ("image", "finding_labels", "follow_up", "patient_id", "patient_age", "patient_gender", "view_position",
          "original_width", "original_height", "pixel_spacing_x_mm", "pixel_spacing_y_mm")
IMAGE_FOLDER_PATTERN = re.compile(r"images_\d{3}")


def _open_text(path: Path) -> io.TextIOBase:
    """Plain or gzipped text; newline='' lets the csv module take CRLF and LF alike."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as error:
            raise DataError(f"{path}: truncated or corrupt gzip ({error.__class__.__name__})") from error
    try:
        return io.StringIO(raw.decode("utf-8-sig"), newline="")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text; expected NIH's Data_Entry_2017 CSV") from error


def read_labels(path: Path | str) -> pd.DataFrame:
    """The canonical NIH label table: one row per image.

    Columns: image, patient_id (str), view_position, follow_up, patient_age, patient_gender,
    original_width, original_height, pixel_spacing_x_mm, pixel_spacing_y_mm, then the 14 FINDINGS as
    uint8 0/1 ("No Finding" is all zero).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"NIH label table {path} does not exist; expected Data_Entry_2017*.csv[.gz]")
    reader = csv.reader(_open_text(path))
    header = [name.strip() for name in next(reader, [])]
    if tuple(header[:len(HEADER_START)]) != HEADER_START:
        raise DataError(f"{path}: header {header[:len(HEADER_START)]} is not NIH's; expected it to start with "
                        f"{', '.join(HEADER_START)}")
    rows = []
    for line_number, row in enumerate(reader, start=2):
        while row and row[-1] == "" and len(row) > len(FIELDS):  # 2017 trailing comma
            row = row[:-1]
        if not row:
            continue
        if len(row) != len(FIELDS):
            raise DataError(f"{path}, line {line_number}: {len(row)} fields; expected {len(FIELDS)} "
                            "(the 9 header columns with Width,Height and x,y unquoted)")
        rows.append(row)
    if not rows:
        raise DataError(f"{path}: no data rows")
    table = pd.DataFrame(rows, columns=list(FIELDS))
    for column in ("image", "patient_id", "view_position", "finding_labels", "patient_gender"):
        table[column] = table[column].str.strip()
    table["patient_age"] = pd.to_numeric(table["patient_age"].str.upper().str.rstrip("Y"), errors="coerce").astype("Int64")
    for column in ("follow_up", "original_width", "original_height"):
        table[column] = pd.to_numeric(table[column], errors="coerce").astype("Int64")
    for column in ("pixel_spacing_x_mm", "pixel_spacing_y_mm"):
        table[column] = pd.to_numeric(table[column], errors="coerce")
    # Subgroup columns (data/demographics.py): sex and a decade age band (90+ grouped).
    table["sex"] = table["patient_gender"].map(normalise_sex)
    table["age_band"] = table["patient_age"].map(lambda years: "" if pd.isna(years) else age_band(years))
    findings = encode_findings(table["finding_labels"], where=str(path))
    table = pd.concat([table.drop(columns=["finding_labels"]), findings], axis=1)
    repeated = table["image"][table["image"].duplicated()]
    if len(repeated):
        raise DataError(f"{path}: image {repeated.iloc[0]} appears more than once")
    return table


def encode_findings(finding_labels: pd.Series, *, where: str) -> pd.DataFrame:
    """'A|B' / 'No Finding' -> 14 uint8 columns; unknown names raise DataError listing them."""
    split = finding_labels.str.split("|")
    known = set(FINDINGS) | {NO_FINDING}
    unknown = sorted({name for names in split for name in names if name not in known})
    if unknown:
        raise DataError(f"{where}: unknown finding labels {unknown}; accepted: {NO_FINDING!r} and {list(FINDINGS)}")
    encoded = np.zeros((len(split), len(FINDINGS)), dtype=np.uint8)
    position = {name: index for index, name in enumerate(FINDINGS)}
    for row, names in enumerate(split):
        for name in names:
            if name != NO_FINDING:
                encoded[row, position[name]] = 1
    return pd.DataFrame(encoded, columns=list(FINDINGS), index=finding_labels.index)


def read_split_list(path: Path | str) -> list[str]:
    """train_val_list.txt / test_list.txt (plain or .gz): image names, one a line, last line unterminated."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"NIH split list {path} does not exist; expected train_val_list.txt / test_list.txt[.gz]")
    names = [line.strip() for line in _open_text(path).read().splitlines()]
    names = [name for name in names if name]
    if not names:
        raise DataError(f"NIH split list {path} is empty")
    return names


def find_release_file(folder: Path, stem: str) -> Path | None:
    """`stem` or `stem.gz` in folder (e.g. test_list.txt), else None."""
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def find_label_table(folder: Path) -> Path | None:
    candidates = sorted(folder.glob("Data_Entry_2017*.csv")) + sorted(folder.glob("Data_Entry_2017*.csv.gz"))
    return candidates[0] if candidates else None


def find_images(folder: Path | str) -> dict[str, Path]:
    """Image name -> path for PNGs directly in folder or in images_001/images ... images_012/images."""
    folder = Path(folder)
    found: dict[str, Path] = {path.name: path for path in folder.glob("*.png")}
    for part in sorted(entry for entry in folder.iterdir() if entry.is_dir() and IMAGE_FOLDER_PATTERN.fullmatch(entry.name)):
        inner = part / "images" if (part / "images").is_dir() else part
        for path in inner.glob("*.png"):
            found.setdefault(path.name, path)
    images_folder = folder / "images"
    if images_folder.is_dir():
        for path in images_folder.glob("*.png"):
            found.setdefault(path.name, path)
    return found
