"""A hospital DICOM folder or the NIH ChestX-ray14 release -> a prepared dataset (ARCHITECTURE.md section 2).

Every input file ends in exactly one of: accepted (a manifest row and a PNG), rejected (rejects.csv, with
the reason) or duplicate (duplicates.csv, with the image it duplicates). Inputs are validated before
anything is written; the output files are written atomically at the end.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pandas as pd

from data.batch_conversion import (ConversionSettings, ConversionTask, convert_all, default_workers, file_fingerprints,
                                   output_lock)
from data.dicom_header import MODALITY_TERMS
from data.errors import DataError
from data.image_conversion import BIT_DEPTHS, convert_image  # noqa: F401  (convert_image is part of this module's API)
from data.labels import Taxonomy, encode_labels, load_taxonomy, read_hospital_labels
from data.outputs import finish_prepared
from data.privacy import default_salt_file, resolve_salt, salt_fingerprint

DEFAULT_MODALITIES = ("CR", "DX", "DR")
# Too small: a side under max(32 px, image_size / 4), i.e. an image that would be upsampled more than
# 4x (thumbnails, secondary captures). Real radiographs have sides of 1000 px and more.
SMALLEST_MIN_SIDE_PX = 32
DEFAULT_MAX_ASPECT_RATIO = 2.0


def prepare_hospital(input_dir, labels_csv, out_dir, *, taxonomy: str | Path = "study", image_size: int = 512,
                     bit_depth: int = 8, min_category_images: int = 0,
                     allowed_modalities: tuple[str, ...] | None = DEFAULT_MODALITIES, workers: int | None = None,
                     salt: str | None = None, salt_file: Path | None = None, min_side_px: int | None = None,
                     max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO, allow_missing_images: bool = False,
                     progress: bool = True, drop_least_class: bool = False) -> dict[str, Any]:
    """Prepare a folder of DICOM files (any depth) labelled by a CSV (image, labels[, patient_id]).

    Returns the summary dict (also written to out_dir/summary.json). allowed_modalities=None accepts any.
    drop_least_class: the study's least-class drop (the category with the fewest accepted images).
    """
    input_dir, out_dir, labels_csv = Path(input_dir).resolve(), Path(out_dir).resolve(), Path(labels_csv).resolve()
    _check_options(image_size, bit_depth, min_category_images, min_side_px, max_aspect_ratio, workers)
    _check_folders(input_dir, out_dir)
    _check_modalities(allowed_modalities)
    chosen = load_taxonomy(taxonomy)
    salt_files = (default_salt_file(out_dir),) + ((Path(salt_file).resolve(),) if salt_file else ())
    sources = list_input_files(input_dir, exclude=(labels_csv, out_dir, *salt_files))
    labels = read_hospital_labels(labels_csv)
    encoded = encode_labels(labels["labels"], chosen, where=str(labels_csv))
    known = set(sources)
    missing = [image for image in labels["image"] if image not in known]
    if missing and not allow_missing_images:
        raise DataError(f"labels CSV {labels_csv} names {len(missing)} image(s) not found under {input_dir} "
                        f"(first: {missing[0]}); paths must be relative to the folder (or pass --allow-missing)")
    label_rows = pd.concat([labels.drop(columns=["labels"]), encoded], axis=1).set_index("image")
    listed = set(label_rows.index)
    unlisted = {source: "not listed in the labels CSV" for source in sources if source not in listed}

    tasks = _tasks(input_dir, [source for source in sources if source in listed], workers)
    settings, salt_source = _settings(input_dir, out_dir, image_size, bit_depth, allowed_modalities, min_side_px,
                                      max_aspect_ratio, salt, salt_file, bool(tasks))
    return _run(tasks, settings, out_dir, workers, progress, early_rejects=unlisted,
                label_rows=label_rows, categories=list(chosen.categories), taxonomy=chosen,
                min_category_images=min_category_images, dataset_format="hospital", drop_least_class=drop_least_class,
                extra={"missing_images": len(missing), "repeated_label_rows": labels.attrs.get("repeated_rows", 0),
                       "patient_key_salt": salt_source})


def prepare_nih(input_dir, labels_csv, out_dir, *, train_val_list=None, test_list=None, image_size: int = 512,
                bit_depth: int = 8, min_category_images: int = 0, workers: int | None = None,
                salt: str | None = None, salt_file: Path | None = None, min_side_px: int | None = None,
                max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO, allow_missing_images: bool = False,
                progress: bool = True, drop_least_class: bool = False) -> dict[str, Any]:
    """Prepare NIH ChestX-ray14: PNGs (flat or images_001 ... images_012) + Data_Entry_2017*.csv[.gz].

    labels_csv, train_val_list and test_list default to the files of those names in input_dir (or beside
    labels_csv). The official lists become `split` ("cv" / "test", fold -1 for test).
    """
    from data import nih

    input_dir, out_dir = Path(input_dir).resolve(), Path(out_dir).resolve()
    _check_options(image_size, bit_depth, min_category_images, min_side_px, max_aspect_ratio, workers)
    if not input_dir.is_dir():
        raise DataError(f"input folder {input_dir} does not exist; expected the NIH PNGs (flat or images_NNN/images)")
    _check_folders(input_dir, out_dir)
    labels_csv = Path(labels_csv).resolve() if labels_csv else nih.find_label_table(input_dir)
    if labels_csv is None:
        raise DataError(f"no Data_Entry_2017*.csv[.gz] in {input_dir}; pass the label table with --labels")
    table = nih.read_labels(labels_csv)
    split_of = _nih_splits(table, input_dir, labels_csv.parent, train_val_list, test_list)
    found = nih.find_images(input_dir)
    if not found:
        raise DataError(f"no PNG images in {input_dir} (looked in it and in images_NNN/images)")
    missing = [image for image in table["image"] if image not in found]
    if missing and not allow_missing_images:
        raise DataError(f"{len(missing)} of {len(table)} images in {labels_csv.name} are not under {input_dir} "
                        f"(first: {missing[0]}); download them or pass --allow-missing to prepare those present")

    table = table[table["image"].isin(found)].copy()
    table["source_path"] = [found[image].relative_to(input_dir).as_posix() for image in table["image"]]
    table["patient_id"] = table["patient_id"].astype(str)
    table["split"] = table["image"].map(split_of).fillna("")
    table["fold"] = table["split"].map({"test": -1}).astype("Int64")
    label_rows = table.set_index("source_path")
    sources = sorted(path.relative_to(input_dir).as_posix() for path in found.values())
    in_table = set(label_rows.index)
    unlisted = {source: f"not in the label table {labels_csv.name}" for source in sources if source not in in_table}
    if split_of:
        for source, split in label_rows["split"].items():
            if not split:
                unlisted[source] = "in neither train_val_list nor test_list"

    tasks = _tasks(input_dir, [source for source in sources if source not in unlisted], workers,
                   image_ids=label_rows["image"])
    settings, salt_source = _settings(input_dir, out_dir, image_size, bit_depth, None, min_side_px, max_aspect_ratio, salt,
                                      salt_file, bool(tasks))
    return _run(tasks, settings, out_dir, workers, progress, early_rejects=unlisted,
                label_rows=label_rows, categories=list(nih.FINDINGS), taxonomy=load_taxonomy("nih"),
                min_category_images=min_category_images, dataset_format="nih", drop_least_class=drop_least_class,
                extra={"missing_images": len(missing), "official_split": bool(split_of),
                       "patient_key_salt": salt_source})


def list_input_files(input_dir: Path, *, exclude: tuple[Path, ...] = ()) -> list[str]:
    """Every regular, non-hidden file under input_dir (any depth) as sorted '/'-paths, minus `exclude`."""
    if not input_dir.is_dir():
        raise DataError(f"input folder {input_dir} does not exist or is not a folder")
    excluded = [path.resolve() for path in exclude]
    found = []
    for path in input_dir.rglob("*"):
        relative = path.relative_to(input_dir)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        resolved = path.resolve()
        if any(resolved == item or resolved.is_relative_to(item) for item in excluded):
            continue
        found.append(relative.as_posix())
    if not found:
        raise DataError(f"input folder {input_dir} holds no files; expected DICOM files (any depth)")
    return sorted(found)


def _check_options(image_size, bit_depth, min_category_images, min_side_px, max_aspect_ratio, workers) -> None:
    """Each option checked with its command-line flag's name, before anything is read or written."""
    if not isinstance(image_size, int) or image_size < 8:
        raise DataError(f"--image-size {image_size!r}: accepted: a whole number of px >= 8")
    if bit_depth not in BIT_DEPTHS:
        raise DataError(f"--bit-depth {bit_depth!r}: accepted: 8, 16")
    if not isinstance(min_category_images, int) or min_category_images < 0:
        raise DataError(f"--min-category-images {min_category_images!r}: accepted: a whole number >= 0")
    if min_side_px is not None and (not isinstance(min_side_px, int) or min_side_px < 1):
        raise DataError(f"--min-side {min_side_px!r}: accepted: a whole number of px >= 1")
    if not isinstance(max_aspect_ratio, (int, float)) or not max_aspect_ratio >= 1 or max_aspect_ratio == float("inf"):
        raise DataError(f"--max-aspect {max_aspect_ratio!r}: accepted: a finite number >= 1")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise DataError(f"--workers {workers!r}: accepted: a whole number of processes >= 1")


def _check_folders(input_dir: Path, out_dir: Path) -> None:
    if out_dir == input_dir or input_dir.is_relative_to(out_dir):
        raise DataError(f"--out {out_dir} is {'the input folder' if out_dir == input_dir else 'above the input folder'}; "
                        "give a new folder (it may be inside the input folder: it is then not read as input)")


def _check_modalities(allowed_modalities) -> None:
    unknown = sorted({str(name).strip().upper() for name in allowed_modalities or ()} - MODALITY_TERMS)
    if unknown:
        raise DataError(f"--allow-modality {', '.join(unknown)}: not a DICOM modality; accepted: "
                        f"{', '.join(sorted(MODALITY_TERMS))}")


def _tasks(input_dir: Path, sources: list[str], workers, image_ids=None) -> list[ConversionTask]:
    """One task per source, fingerprinted by content (hashing is cheap next to decoding: docs/ingest.md)."""
    fingerprints = file_fingerprints([input_dir / source for source in sources], threads=workers or default_workers())
    return [ConversionTask(source, str(input_dir / source), fingerprint,
                           image_id=image_ids[source] if image_ids is not None else "")
            for source, fingerprint in zip(sources, fingerprints)]


def _settings(input_dir, out_dir, image_size, bit_depth, allowed_modalities, min_side_px, max_aspect_ratio, salt, salt_file,
              anything_to_convert: bool):
    """The conversion settings; the last step before writing, so every input check comes first."""
    if not anything_to_convert:
        raise DataError("no input file is listed in the labels: nothing to convert (check that the labels' "
                        "image paths are relative to the input folder)")
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"output path {out_dir} exists and is not a folder")
    secret, source = resolve_salt(salt, out_dir, salt_file)
    modalities = tuple(sorted({name.strip().upper() for name in allowed_modalities})) if allowed_modalities else None
    if min_side_px is None:
        min_side_px = max(SMALLEST_MIN_SIDE_PX, image_size // 4)
    return ConversionSettings(image_size=image_size, bit_depth=bit_depth, allowed_modalities=modalities,
                              min_side_px=min_side_px, max_aspect_ratio=float(max_aspect_ratio), salt=secret,
                              salt_check=salt_fingerprint(secret), input_dir=str(input_dir)), source


def _nih_splits(table: pd.DataFrame, input_dir: Path, labels_dir: Path, train_val_list, test_list) -> dict[str, str]:
    from data import nih

    def locate(given, stem):
        if given:
            return Path(given)
        return nih.find_release_file(input_dir, stem) or nih.find_release_file(labels_dir, stem)

    train_val_path, test_path = locate(train_val_list, "train_val_list.txt"), locate(test_list, "test_list.txt")
    if train_val_path is None and test_path is None:
        return {}
    if train_val_path is None or test_path is None:
        raise DataError(f"found only one of train_val_list.txt / test_list.txt ({train_val_path or test_path}); "
                        "give both (--train-val-list, --test-list) or neither")
    test_names = set(nih.read_split_list(test_path))
    train_val_names = set(nih.read_split_list(train_val_path))
    both = test_names & train_val_names
    if both:
        raise DataError(f"{len(both)} image(s) are in both {train_val_path.name} and {test_path.name} "
                        f"(first: {sorted(both)[0]}); the official lists are disjoint")
    return {**{name: "cv" for name in train_val_names}, **{name: "test" for name in test_names}}


def _run(tasks, settings, out_dir: Path, workers, progress, *, early_rejects, label_rows, categories,
         taxonomy: Taxonomy, min_category_images, dataset_format, extra, drop_least_class=False) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    with output_lock(out_dir):
        records = convert_all(tasks, settings, out_dir, workers=workers or default_workers(), progress=progress)
        summary = finish_prepared(
            out_dir, tasks=tasks, records=records, settings=settings, early_rejects=early_rejects,
            label_rows=label_rows, categories=categories, taxonomy=taxonomy, dataset_format=dataset_format,
            min_category_images=min_category_images, extra=extra, drop_least_class=drop_least_class)
    counts = summary["counts"]
    if not counts["accepted"]:
        reasons = ", ".join(f"{count} {reason}" for reason, count in summary["rejection_reasons"].items())
        raise DataError(f"no image was accepted: {counts['input']} input = {counts['rejected']} rejected "
                        f"({reasons}) + {counts['duplicate']} duplicate; see {out_dir / 'rejects.csv'}")
    if progress:
        print(f"prepared {out_dir}: {counts['input']} input = {counts['accepted']} accepted + "
              f"{counts['rejected']} rejected + {counts['duplicate']} duplicate", file=sys.stderr)
    return summary

