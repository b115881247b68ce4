"""Synthetic chest radiographs in the two input layouts users bring (ARCHITECTURE.md, section 1b).

`write_hospital` writes DICOM files in subfolders plus `labels.csv` (the study's 19 sub-category names);
`write_nih` writes PNGs plus NIH's `Data_Entry_2017.csv`, `train_val_list.txt` and `test_list.txt`.
Both draw patients with data/synthetic/render.py and findings with data/synthetic/findings.py (via
data/synthetic/findings_study.py for the hospital's sub-categories), so their findings share signatures.
Everything is a function of `seed`: each patient and each image has its own random
stream (numpy SeedSequence keyed by seed and index), so the same seed writes the same bytes.

Which findings each image gets (`prevalence`) is data/synthetic/prevalence.py.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from data.errors import DataError
from data.synthetic.dicom import (TRANSFER_SYNTAXES, dicom_path, fake_patient, make_study, radiograph_dataset,
                                  seeded_uid, write_dicom, write_duplicates, write_outliers)
from data.synthetic.findings_nih import NIH_SIGNATURES
from data.synthetic.findings_study import STUDY_SIGNATURES
from data.synthetic.prevalence import HOSPITAL_CATEGORIES, NIH_COUNTS, LabelModel, hospital_subcategories, label_model
from data.synthetic.render import draw_chest, render_chest

NIH_HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
              "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],")  # the 2017 file's trailing comma too


def hospital_label_texts(n_images: int, *, seed: int = 0, prevalence: str = "study") -> list[str]:
    """The `labels` column write_hospital(n_images=..., seed=..., prevalence=...) writes for its distinct
    radiographs, in order, without rendering anything (for checking prevalences on study-sized sets)."""
    model, structure = label_model("hospital", prevalence), np.random.default_rng([seed, 0])
    patients = _hospital_patients(seed, n_images, model, structure)
    return [("|".join(labels) or "normal") for *_, labels, n_studies in patients for _ in range(n_studies)]


def _hospital_patients(seed: int, n_images: int, model: LabelModel, structure: np.random.Generator):
    """(patient number, Patient, Chest, sub-category names, images of this patient) until n_images.

    Findings belong to the patient: each of a patient's 1-3 studies shows the same ones."""
    done = patient_number = 0
    while done < n_images:
        patient_number += 1
        patient_rng = np.random.default_rng([seed, 1, patient_number])
        patient = fake_patient(patient_rng, patient_number)
        chest = draw_chest(patient_rng)
        labels = hospital_subcategories(model.sample(patient_rng), patient_rng)
        n_studies = min(int(structure.choice([1, 2, 3], p=[0.7, 0.2, 0.1])), n_images - done)
        done += n_studies
        yield patient_number, patient, chest, labels, n_studies


def write_hospital(out_dir: Path | str, *, n_images: int, seed: int = 0, image_size: int = 256,
                   prevalence: str = "study", n_duplicates: int | None = None, outliers: bool = True,
                   overwrite: bool = False, fainter_for_sex=None) -> dict:
    """Write `n_images` distinct radiographs as DICOM under out_dir, plus duplicates, outliers and labels.csv.

    n_duplicates defaults to n_images // 50 (at least 1); outliers adds one CT slice and one tiny image.
    Returns a summary (JSON-serialisable): files written, duplicates (copy -> original), outliers
    (path -> what it is) and label counts over the distinct radiographs.
    """
    model = label_model("hospital", prevalence)
    if n_duplicates is not None and (isinstance(n_duplicates, bool) or not isinstance(n_duplicates, int)
                                     or n_duplicates < 0):
        raise DataError(f"n_duplicates must be an integer >= 0 or None (n_images // 50); got {n_duplicates!r}")
    effect = _sex_effect(fainter_for_sex, HOSPITAL_CATEGORIES)
    out = _prepare_out_dir(out_dir, n_images, seed, image_size, overwrite)
    structure = np.random.default_rng([seed, 0])
    rows: list[tuple[str, str, str]] = []
    written: list[tuple[str, str]] = []  # (path, transfer syntax) of each distinct radiograph
    patient_number = 0
    for patient_number, patient, chest, labels, n_studies in _hospital_patients(seed, n_images, model, structure):
        for visit in range(n_studies):
            index = len(written)
            image_rng = np.random.default_rng([seed, 2, index])
            study = make_study(image_rng, seed, patient_number, visit)
            image = render_chest(chest, _signatures(labels, STUDY_SIGNATURES, patient.sex, effect,
                                                    _HOSPITAL_CATEGORY_OF), image_size=image_size, rng=image_rng)
            if image_rng.random() < 0.3:  # a narrower detector or collimation: non-square files exist
                margin = image_size // 12
                image = image[:, margin:image_size - margin]
            sop_uid = seeded_uid(seed, "image", index)
            ds = radiograph_dataset(image, patient=patient, study=study, sop_uid=sop_uid, instance=visit + 1,
                                    rng=image_rng)
            path = dicom_path(study, index)
            syntax = TRANSFER_SYNTAXES[image_rng.integers(len(TRANSFER_SYNTAXES))]
            write_dicom(ds, out / path, syntax)
            written.append((path, syntax))
            rows.append((path, "|".join(labels) or "normal", patient.patient_id))

    duplicates = write_duplicates(out, written, rows, structure, seed,
                                   max(1, n_images // 50) if n_duplicates is None else n_duplicates)
    outlier_files = write_outliers(out, rows, seed, image_size, patient_number) if outliers else {}
    _write_csv(out / "labels.csv", "image,labels,patient_id", [",".join(row) for row in rows], "\n")
    counts = _label_counts([row[1] for row in rows[:n_images]])
    return {"format": "hospital", "out_dir": str(out), "labels_csv": "labels.csv", "seed": seed,
            "image_size": image_size, "prevalence": prevalence, "n_images": n_images, "n_files": len(rows),
            "n_patients": patient_number, "duplicates": duplicates, "outliers": outlier_files,
            "label_counts": counts, **({"fainter_for_sex": str(effect)} if effect else {})}


def write_nih(out_dir: Path | str, *, n_images: int, seed: int = 0, image_size: int = 256,
              prevalence: str = "study", test_fraction: float = 0.2, overwrite: bool = False,
              fainter_for_sex=None) -> dict:
    """Write `n_images` PNGs in out_dir/images plus NIH's table and patient-disjoint split lists."""
    from PIL import Image

    model = label_model("nih", prevalence)
    if isinstance(n_images, int) and n_images == 1:
        raise DataError("n_images must be >= 2 for the NIH layout (one patient in each of its split lists); got 1")
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must be between 0 and 1 (exclusive); got {test_fraction}")
    effect = _sex_effect(fainter_for_sex, NIH_COUNTS)
    out = _prepare_out_dir(out_dir, n_images, seed, image_size, overwrite)
    structure = np.random.default_rng([seed, 0])
    (out / "images").mkdir()
    rows: list[str] = []
    names_by_patient: list[list[str]] = []
    label_texts: list[str] = []
    while len(label_texts) < n_images:
        patient_id = len(names_by_patient) + 1
        patient_rng = np.random.default_rng([seed, 1, patient_id])
        chest = draw_chest(patient_rng)
        age, sex = int(patient_rng.integers(18, 86)), str(patient_rng.choice(["F", "M"]))
        room = n_images - len(label_texts) - (1 if patient_id == 1 else 0)  # a second patient for test_list
        n_follow_ups = min(int(structure.choice([1, 2, 3, 4], p=[0.55, 0.2, 0.15, 0.1])), room)
        names_by_patient.append([])
        for follow_up in range(n_follow_ups):
            image_rng = np.random.default_rng([seed, 2, len(label_texts)])
            findings = model.sample(image_rng)
            image = render_chest(chest, _signatures(findings, NIH_SIGNATURES, sex, effect),
                                 image_size=image_size, rng=image_rng)
            name = f"{patient_id:08d}_{follow_up:03d}.png"
            Image.fromarray(np.rint(image * 255).astype(np.uint8)).save(out / "images" / name, pnginfo=_png_marker())
            width, height = [(2500, 2048), (2048, 2500), (2992, 2991), (3056, 2544)][image_rng.integers(4)]
            spacing = [0.143, 0.168, 0.139][image_rng.integers(3)]
            view = "PA" if image_rng.random() < 0.6 else "AP"
            text = "|".join(findings) or "No Finding"
            rows.append(f"{name},{text},{follow_up},{patient_id},{age + follow_up // 2},{sex},{view},"
                        f"{width},{height},{spacing},{spacing}")
            names_by_patient[-1].append(name)
            label_texts.append(text)

    # NIH's original file: CRLF line endings; its split lists have no trailing newline.
    _write_csv(out / "Data_Entry_2017.csv", NIH_HEADER, rows, "\r\n")
    test_patients = _test_patients(len(names_by_patient), test_fraction, structure)
    for file_name, in_test in (("train_val_list.txt", False), ("test_list.txt", True)):
        names = [name for number, names in enumerate(names_by_patient) if (number in test_patients) == in_test
                 for name in names]
        (out / file_name).write_text("\n".join(names), encoding="ascii")
    return {"format": "nih", "out_dir": str(out), "labels_csv": "Data_Entry_2017.csv", "seed": seed,
            "image_size": image_size, "prevalence": prevalence, "n_images": n_images, "n_files": n_images,
            "n_patients": len(names_by_patient), "n_test_images": sum(len(names_by_patient[i]) for i in test_patients),
            "label_counts": _label_counts(label_texts, normal="No Finding"),
            **({"fainter_for_sex": str(effect)} if effect else {})}


_HOSPITAL_CATEGORY_OF = {name: category for category, (_, shares) in HOSPITAL_CATEGORIES.items() for name in shares}


def _sex_effect(value, findings):
    """None, or a checked data.synthetic.effects.SexEffect (from one or from 'FINDING:SEX:STRENGTH')."""
    from data.synthetic.effects import SexEffect

    if value is None:
        return None
    return (value if isinstance(value, SexEffect) else SexEffect.parse(value)).checked(list(findings))


def _signatures(names, signatures, sex: str, effect, category_of=None):
    """The findings' signatures; the planted effect's finding fainter for its sex (issue 16's subgroup test)."""
    from data.synthetic.effects import fainter

    def planted(name: str) -> bool:
        return effect is not None and sex == effect.sex and (category_of or {}).get(name, name) == effect.finding

    return [fainter(signatures[name], effect.strength) if planted(name) else signatures[name] for name in names]


def _test_patients(n_patients: int, test_fraction: float, rng: np.random.Generator) -> set[int]:
    if n_patients < 2:
        return set()
    n_test = min(n_patients - 1, max(1, round(test_fraction * n_patients)))
    return {int(i) for i in rng.choice(n_patients, size=n_test, replace=False)}


def _label_counts(texts: list[str], normal: str = "normal") -> dict[str, int]:
    counts: dict[str, int] = {}
    for text in texts:
        for name in text.split("|"):
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0] != normal, item[0])))


def _write_csv(path: Path, header: str, lines: list[str], newline: str) -> None:
    path.write_bytes((newline.join([header, *lines]) + newline).encode("ascii"))


def _prepare_out_dir(out_dir: Path | str, n_images, seed, image_size, overwrite: bool) -> Path:
    for name, value, low in (("n_images", n_images, 1), ("image_size", image_size, 32), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise DataError(f"{name} must be an integer >= {low}; got {value!r}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out} exists and is not a folder; give a new or empty folder")
    if out.is_dir() and any(out.iterdir()):
        ours = _is_synthetic_output(out)
        if not (overwrite and ours):
            raise DataError(f"{out} is not empty; give a new or empty folder"
                            + ("" if ours else " (overwrite only replaces an earlier synthetic output)"))
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


SOFTWARE_MARK = "cxrtune synthetic"  # DICOM Manufacturer and PNG Software text of every file written here


def _png_marker():
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Software", SOFTWARE_MARK)
    return info


def _is_synthetic_output(out: Path) -> bool:
    """True only for a folder this module wrote: its first listed image carries our mark.

    A user's real folder also has a labels.csv, so the file names alone never decide an overwrite.
    """
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    try:
        if (out / "labels.csv").is_file():
            first = (out / "labels.csv").read_text().splitlines()[1].split(",")[0]
            return str(dcmread(out / first, stop_before_pixels=True).get("Manufacturer", "")) == SOFTWARE_MARK
        if (out / "Data_Entry_2017.csv").is_file():
            from PIL import Image

            first = (out / "Data_Entry_2017.csv").read_text().splitlines()[1].split(",")[0]
            with Image.open(out / "images" / first) as image:
                return image.info.get("Software") == SOFTWARE_MARK
    except (OSError, IndexError, ValueError, InvalidDicomError):
        return False
    return False
