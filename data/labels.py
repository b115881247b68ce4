"""Taxonomies (sub-category names -> categories) and a hospital's labels CSV -> multi-hot columns.

A taxonomy YAML (see ARCHITECTURE.md section 1) names the categories a model predicts and, for each, the
sub-category names a labels CSV may use. Names listed under `normal` mean "no finding" and get no output
column (NIH's "No Finding"); a taxonomy may instead make normal a category of its own (the study's does).
Sub-category names match case- and separator-insensitively: "Obvious-Hilar", "obvious hilar" and
"obvious_hilar" are one name (`normalise_name`).
"""
from __future__ import annotations

import csv
import io
import os
import posixpath
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from data.errors import DataError

LABEL_SEPARATOR = "|"
HOSPITAL_REQUIRED_COLUMNS = ("image", "labels")
HOSPITAL_OPTIONAL_COLUMNS = ("patient_id",)
_SEPARATORS = re.compile(r"[\s_\-]+")


def normalise_name(name: str) -> str:
    """The form names are compared in: lower case, runs of spaces, '_' and '-' as one '_', no ends."""
    return _SEPARATORS.sub("_", str(name).strip().lower()).strip("_")


@dataclass(frozen=True)
class Taxonomy:
    name: str
    normal: tuple[str, ...]
    categories: dict[str, tuple[str, ...]]  # category -> its sub-category names, in file order

    def category_of(self) -> dict[str, str | None]:
        """Each known sub-category name, normalised (`normalise_name`) -> its category (None for the
        normal names)."""
        mapping: dict[str, str | None] = {normalise_name(name): None for name in self.normal}
        for category, subcategories in self.categories.items():
            mapping.update({normalise_name(name): category for name in subcategories})
        return mapping

    def to_yaml(self) -> str:
        import yaml

        body = {"name": self.name, "normal": list(self.normal),
                "categories": {category: list(names) for category, names in self.categories.items()}}
        return yaml.safe_dump(body, sort_keys=False)


def builtin_taxonomies() -> list[str]:
    folder = resources.files("data") / "taxonomies"
    return sorted(entry.name.removesuffix(".yaml") for entry in folder.iterdir() if entry.name.endswith(".yaml"))


def load_taxonomy(name_or_path: str | Path) -> Taxonomy:
    """A built-in taxonomy by name ("study", "nih") or a YAML file by path.

    A built-in name always means the built-in, whatever the current folder holds; a path is a path only
    when it looks like one (ends in .yaml/.yml or contains a folder separator), so a file called `study`
    in the working directory can neither replace nor break the built-in.
    """
    import yaml

    text_name = str(name_or_path)
    if looks_like_path(text_name):
        candidate = Path(text_name)
        if not candidate.is_file():
            raise DataError(f"taxonomy file {candidate} does not exist; give a YAML path or one of {builtin_taxonomies()}")
        text, where = candidate.read_text(), str(candidate)
    elif text_name in builtin_taxonomies():
        text = (resources.files("data") / "taxonomies" / f"{text_name}.yaml").read_text()
        where = f"built-in taxonomy {text_name}"
    else:
        raise DataError(f"unknown taxonomy {text_name!r}; accepted: a YAML path (ending in .yaml/.yml or "
                        f"containing '/') or one of {builtin_taxonomies()}")
    try:
        body = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise DataError(f"{where}: not valid YAML ({error.__class__.__name__})") from error
    return _taxonomy_from_dict(body, where)


def looks_like_path(text: str) -> bool:
    """A taxonomy argument names a file when it ends in .yaml/.yml or contains a folder separator."""
    return text.lower().endswith((".yaml", ".yml")) or "/" in text or (os.sep != "/" and os.sep in text)


def _taxonomy_from_dict(body, where: str) -> Taxonomy:
    if not isinstance(body, dict) or not isinstance(body.get("categories"), dict) or not body["categories"]:
        raise DataError(f"{where}: expected a mapping with 'name', 'normal' (list) and 'categories' "
                        "(category: [sub-category, ...])")
    normal = body.get("normal") or []
    if isinstance(normal, str):
        normal = [normal]
    categories: dict[str, tuple[str, ...]] = {}
    seen: dict[str, str] = {normalise_name(name): "normal" for name in map(str, normal)}
    for category, names in body["categories"].items():
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not names:
            raise DataError(f"{where}: category {category!r} needs a non-empty list of sub-category names")
        for name in map(str, names):
            key = normalise_name(name)  # "Obvious hilar" and "obvious_hilar" are one name
            if key in seen:
                raise DataError(f"{where}: sub-category {name!r} is listed under both {seen[key]!r} and {category!r}"
                                " (names are compared ignoring case, spaces, '_' and '-')")
            seen[key] = str(category)
        categories[str(category)] = tuple(map(str, names))
    return Taxonomy(name=str(body.get("name") or Path(where).stem), normal=tuple(map(str, normal)), categories=categories)


def split_label_names(text) -> list[str]:
    """'a|b' -> ['a', 'b']; blank or NaN -> [] (an image with no label text at all)."""
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return []
    return [part.strip() for part in str(text).split(LABEL_SEPARATOR) if part.strip()]


def encode_labels(label_texts: pd.Series, taxonomy: Taxonomy, *, where: str) -> pd.DataFrame:
    """Multi-hot uint8 columns, one per taxonomy category (in taxonomy order), aligned to label_texts.

    Names match case- and separator-insensitively. Raises DataError listing every label name the taxonomy
    does not cover, and rows with no label at all (write the taxonomy's normal name, e.g. 'normal', for an
    image without findings).
    """
    mapping = taxonomy.category_of()
    split = label_texts.map(lambda text: [normalise_name(name) for name in split_label_names(text)])
    unknown = sorted({name for names in label_texts.map(split_label_names) for name in names
                      if normalise_name(name) not in mapping})
    if unknown:
        raise DataError(f"{where}: label names not in taxonomy {taxonomy.name!r}: {', '.join(unknown)}; "
                        f"accepted: {', '.join(sorted(mapping))} (case, spaces, '_' and '-' do not matter)")
    empty = [index for index, names in split.items() if not names]
    if empty:
        first = f"line {empty[0]}" if label_texts.index.name == "line" else f"row {empty[0]}"
        normal = taxonomy.normal[0] if taxonomy.normal else next(
            (names[0] for category, names in taxonomy.categories.items() if normalise_name(category) == "normal"),
            "a sub-category")
        raise DataError(f"{where}: {len(empty)} row(s) have no labels (first: {first}); "
                        f"write {normal!r} for no finding")
    columns = list(taxonomy.categories)
    encoded = np.zeros((len(split), len(columns)), dtype=np.uint8)
    position = {category: index for index, category in enumerate(columns)}
    for row, names in enumerate(split):
        for name in names:
            if mapping[name] is not None:
                encoded[row, position[mapping[name]]] = 1
    return pd.DataFrame(encoded, columns=columns, index=label_texts.index)


def drop_rare_categories(labels: pd.DataFrame, min_images: int) -> tuple[list[str], dict[str, int]]:
    """(kept categories in order, {dropped category: its image count}) for categories under min_images.

    Images are kept: an image whose only finding is in a dropped category is still a true negative for
    every kept category.
    """
    counts = labels.sum(axis=0).astype(int)
    dropped = {category: int(count) for category, count in counts.items() if count < min_images}
    kept = [category for category in labels.columns if category not in dropped]
    if not kept:
        raise DataError(f"every category has fewer than {min_images} images ({dict(counts)}); lower min_category_images")
    return kept, dropped


def drop_least_category(labels: pd.DataFrame) -> tuple[list[str], dict[str, int]]:
    """The study's least-class drop: (kept categories in order, {the category with the fewest positive
    images: its count}). On a tie the first in column order goes. Images stay, as in drop_rare_categories."""
    if labels.shape[1] < 2:
        raise DataError(f"the least-class drop needs at least 2 categories; there is {labels.shape[1]} "
                        f"({', '.join(map(str, labels.columns))})")
    counts = labels.sum(axis=0).astype(int)
    least = str(counts.idxmin())  # idxmin: the first of equal minima
    return [category for category in labels.columns if category != least], {least: int(counts[least])}


def read_hospital_labels(path: Path | str) -> pd.DataFrame:
    """The labels CSV of a hospital folder: columns image, labels and optionally patient_id (all str).

    The index is the CSV line number each row starts on (named "line"), so every message can point at a
    line a user can open. Accepted as spreadsheets write them: a UTF-8 byte-order mark, Windows line ends,
    quoted fields (a quoted field may hold commas or line breaks), blank lines, spaces around values, and
    rows repeated exactly (kept once; counted in `attrs["repeated_rows"]`). The same image with different
    labels or patient ids is an error naming both lines.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"labels CSV {path} does not exist; expected columns: image, labels[, patient_id]")
    header, rows = _read_csv_rows(path)
    if not header:
        raise DataError(f"labels CSV {path} is empty; expected columns: image, labels[, patient_id]")
    missing = [column for column in HOSPITAL_REQUIRED_COLUMNS if column not in header]
    if missing:
        raise DataError(f"labels CSV {path} lacks column(s) {', '.join(missing)}; found {header}; "
                        "expected: image, labels[, patient_id]")
    if not rows:
        raise DataError(f"labels CSV {path} has no rows")
    keep = list(HOSPITAL_REQUIRED_COLUMNS) + [column for column in HOSPITAL_OPTIONAL_COLUMNS if column in header]
    position = {column: header.index(column) for column in keep}
    records: dict[str, tuple[int, list[str]]] = {}
    repeated = 0
    for line, cells in rows:
        values = [cells[position[column]] if position[column] < len(cells) else "" for column in keep]
        values[0] = posixpath.normpath(values[0].replace("\\", "/")) if values[0] else ""
        if not values[0]:
            raise DataError(f"labels CSV {path} line {line}: the image column is empty")
        if values[0] in records:
            first_line, first_values = records[values[0]]
            if _same_row(first_values, values):
                repeated += 1
                continue
            raise DataError(f"labels CSV {path} lists {values[0]} more than once with different "
                            f"labels or patient ids (lines {first_line} and {line}); give one row per image with labels joined by '|'")
        records[values[0]] = (line, values)
    table = pd.DataFrame([values for _, values in records.values()], columns=keep,
                         index=pd.Index([line for line, _ in records.values()], name="line"))
    table.attrs["repeated_rows"] = repeated
    return table


def _read_csv_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """(header, [(line the row starts on, stripped cells)]) of a CSV; blank rows skipped."""
    try:
        # utf-8-sig: a CSV saved by Excel starts with a byte-order mark that would rename the first column.
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(f"labels CSV {path} cannot be read as UTF-8 text (byte {error.start}); save it as CSV UTF-8; "
                        "expected columns: image, labels[, patient_id]") from error
    if "\x00" in text:
        raise DataError(f"labels CSV {path} cannot be read as CSV (it holds NUL bytes); "
                        "expected columns: image, labels[, patient_id]")
    reader = csv.reader(io.StringIO(text, newline=""), skipinitialspace=True)
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    next_line = 1
    try:
        for cells in reader:
            line, next_line = next_line, reader.line_num + 1
            cells = [cell.strip() for cell in cells]
            if not any(cells):
                continue
            if header is None:
                header = cells
            else:
                rows.append((line, cells))
    except csv.Error as error:
        raise DataError(f"labels CSV {path} line {reader.line_num}: not valid CSV ({error}); "
                        "expected columns: image, labels[, patient_id]") from error
    return header or [], rows


def _same_row(first: list[str], second: list[str]) -> bool:
    """Two rows of one image agree when their patient ids and their sets of label names are equal."""
    return first[0] == second[0] and first[2:] == second[2:] and \
        sorted(split_label_names(first[1])) == sorted(split_label_names(second[1]))
