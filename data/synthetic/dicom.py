"""DICOM encoding of synthetic radiographs: the header variety a hospital export really has.

Mixed MONOCHROME1/MONOCHROME2 (MONOCHROME1 stored inverted, so a correct reader shows the same
picture), 12/14/16 bits stored, Rescale Slope/Intercept and a Window Center/Width chosen so that
stored -> rescale -> window maps the rendering back onto [0, 1] exactly (up to rounding), seeded UIDs,
fake patients, exact duplicates and the outliers a real folder holds (a CT slice, a tiny image).
pydicom is imported inside the functions so that importing `data` stays cheap.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.synthetic.render import draw_chest, render_chest

CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
# Transfer syntaxes a hospital export mixes; RLE Lossless is one pydicom can both encode and decode.
TRANSFER_SYNTAXES = ("explicit", "explicit", "explicit", "implicit", "rle")

FAMILY_NAMES = ("ALDER", "BRANT", "CORVIN", "DELLAMY", "ESKER", "FARROW", "GARNET", "HOLLIS", "IVERS",
                "JORVIK", "KESTREL", "LINDQVIST", "MARLOWE", "NORCROSS", "OAKES", "PELL", "QUILLAN",
                "ROWAN", "SELKIRK", "TAMSIN", "UPTON", "VARGA", "WEXLEY", "YARROW")
GIVEN_NAMES = ("ADA", "BRUNO", "CELESTE", "DORIAN", "EDITH", "FELIX", "GRETA", "HUGO", "IRIS", "JONAS",
               "KAI", "LENA", "MILO", "NORA", "OTTO", "PIA", "RUFUS", "SANNE", "TOBIAS", "VERA")


@dataclass(frozen=True)
class Patient:
    """A fake patient: every value is invented from the seed."""

    patient_id: str
    name: str
    sex: str
    birth_year: int


@dataclass(frozen=True)
class Study:
    study_uid: str
    series_uid: str
    accession: str
    date: str  # YYYYMMDD
    view: str  # PA or AP


def fake_patient(rng: np.random.Generator, number: int) -> Patient:
    return Patient(
        patient_id=f"SYN{number:05d}{rng.integers(100, 1000)}",
        name=f"{rng.choice(FAMILY_NAMES)}^{rng.choice(GIVEN_NAMES)}",
        sex=str(rng.choice(["F", "M"])),
        birth_year=int(rng.integers(1935, 2000)),
    )


def seeded_uid(*parts: object) -> str:
    """A valid DICOM UID that depends only on `parts` (pydicom hashes them under its root)."""
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=[str(part) for part in parts]))


def encode_display(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Stored values and the tags that display them as `image` (float in [0, 1], air dark).

    The window [L, H] in rescaled units is the image of stored [lo, hi]; with Center = (L + H) / 2 + 0.5
    and Width = H - L + 1, DICOM's LINEAR window maps L -> 0 and H -> 1 exactly.
    """
    bits = int(rng.choice([12, 14, 16]))
    top = 2**bits - 1
    monochrome1 = bool(rng.random() < 0.4)
    slope, intercept = [(1.0, 0.0), (1.0, 0.0), (0.5, 0.0), (2.0, -1024.0)][rng.integers(4)]
    lo = int(rng.uniform(0.02, 0.15) * top)
    hi = int(rng.uniform(0.8, 0.98) * top)
    shown = 1.0 - image if monochrome1 else image
    stored = np.rint(lo + shown.astype(np.float64) * (hi - lo)).astype(np.uint16)
    low, high = slope * lo + intercept, slope * hi + intercept
    tags = {
        "PhotometricInterpretation": "MONOCHROME1" if monochrome1 else "MONOCHROME2",
        "BitsAllocated": 16, "BitsStored": bits, "HighBit": bits - 1, "PixelRepresentation": 0,
        "RescaleSlope": f"{slope:g}", "RescaleIntercept": f"{intercept:g}", "RescaleType": "US",
        "WindowCenter": f"{(low + high) / 2 + 0.5:g}", "WindowWidth": f"{high - low + 1:g}",
        "VOILUTFunction": "LINEAR",
    }
    if rng.random() < 0.25:
        # Several windows, as many modalities store them: the first is the default view, which a reader
        # without a choice uses; the second is a harder one.
        center, width = float(tags["WindowCenter"]), float(tags["WindowWidth"])
        tags["WindowCenter"] = [tags["WindowCenter"], f"{center + width / 8:g}"]
        tags["WindowWidth"] = [tags["WindowWidth"], f"{width / 2:g}"]
        tags["WindowCenterWidthExplanation"] = ["NORMAL", "HARD"]
    return stored, tags


def radiograph_dataset(image: np.ndarray, *, patient: Patient, study: Study, sop_uid: str,
                       instance: int, rng: np.random.Generator):
    """A CR or DX dataset holding `image` (2-D float in [0, 1])."""
    stored, pixel_tags = encode_display(image, rng)
    modality = "CR" if rng.random() < 0.5 else "DX"
    ds = _base_dataset(CR_STORAGE if modality == "CR" else DX_STORAGE, sop_uid, patient, study, modality)
    for keyword, value in pixel_tags.items():
        setattr(ds, keyword, value)
    if modality == "DX":
        # DX For Presentation requires it; INVERSE is MONOCHROME1's normal companion, not a second inversion.
        ds.PresentationLUTShape = "INVERSE" if ds.PhotometricInterpretation == "MONOCHROME1" else "IDENTITY"
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
    else:
        ds.ImageType = ["ORIGINAL", "PRIMARY", ""]
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = study.view
    ds.PatientOrientation = ["R", "F"] if study.view == "AP" else ["L", "F"]
    spacing = round(430.0 / image.shape[0], 4)  # a 43 cm tall detector, in mm per pixel
    ds.PixelSpacing = [f"{spacing:g}", f"{spacing:g}"]
    ds.ImagerPixelSpacing = ds.PixelSpacing
    ds.InstanceNumber = instance
    _set_pixels(ds, stored)
    return ds


def ct_slice_dataset(size: int, *, patient: Patient, study: Study, sop_uid: str, rng: np.random.Generator):
    """An axial chest CT slice: a real DICOM image, but not a radiograph (prepare must reject it)."""
    axis = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    x, y = np.meshgrid(axis, axis)
    hu = np.full((size, size), -1000.0)
    hu[(x / 0.85) ** 2 + (y / 0.62) ** 2 < 1] = 40.0                    # soft tissue
    for side in (-1, 1):
        hu[((x - side * 0.38) / 0.3) ** 2 + ((y + 0.02) / 0.42) ** 2 < 1] = -850.0  # lungs
    hu[(x / 0.1) ** 2 + ((y - 0.42) / 0.1) ** 2 < 1] = 700.0            # vertebral body
    hu += rng.normal(0.0, 12.0, size=hu.shape)
    stored = np.clip(np.rint(hu + 1024.0), 0, 4095).astype(np.uint16)
    ds = _base_dataset(CT_STORAGE, sop_uid, patient, study, "CT")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = "1", "-1024", "HU"
    ds.WindowCenter, ds.WindowWidth = "-600", "1500"
    ds.SliceThickness = "1.25"
    ds.PixelSpacing = ["0.7", "0.7"]
    ds.ImagePositionPatient = ["-179.3", "-179.3", "-120"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.BodyPartExamined = "CHEST"
    ds.InstanceNumber = 1
    _set_pixels(ds, stored)
    return ds


def _base_dataset(sop_class: str, sop_uid: str, patient: Patient, study: Study, modality: str):
    from pydicom.dataset import Dataset, FileMetaDataset

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.Modality = modality
    ds.Manufacturer = "cxrtune synthetic"  # data.synthetic.SOFTWARE_MARK: overwrite checks it
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientSex = patient.sex
    ds.PatientBirthDate = f"{patient.birth_year}0101"
    ds.PatientAge = f"{int(study.date[:4]) - patient.birth_year:03d}Y"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study.study_uid, study.series_uid
    ds.AccessionNumber = study.accession
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study.date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "093000"
    ds.StudyID, ds.SeriesNumber = "1", 1
    ds.StudyDescription = "CHEST CT" if modality == "CT" else f"CHEST {study.view}"
    return ds


def _set_pixels(ds, stored: np.ndarray) -> None:
    ds.SamplesPerPixel = 1
    ds.Rows, ds.Columns = stored.shape
    ds.PixelData = np.ascontiguousarray(stored, dtype="<u2").tobytes()


def write_dicom(ds, path: Path, transfer_syntax: str) -> None:
    """Write with a proper file meta header; transfer_syntax is explicit, implicit or rle."""
    from pydicom import dcmwrite
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless

    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if transfer_syntax == "implicit" else ExplicitVRLittleEndian
    if transfer_syntax == "rle":
        ds.compress(RLELossless, generate_instance_uid=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    dcmwrite(path, ds, enforce_file_format=True)


def make_study(rng: np.random.Generator, seed: int, patient_number: int, visit: int) -> Study:
    year = 2014 + patient_number % 6 + 2 * visit  # follow-ups come later
    date = f"{year}{rng.integers(1, 13):02d}{rng.integers(1, 29):02d}"
    return Study(study_uid=seeded_uid(seed, "study", patient_number, visit),
                 series_uid=seeded_uid(seed, "series", patient_number, visit),
                 accession=f"A{seed % 1000:03d}{patient_number:05d}{visit}", date=date,
                 view="PA" if rng.random() < 0.75 else "AP")


def dicom_path(study: Study, index: int) -> str:
    """A hospital export's layout: year/month folders, numbered files."""
    return f"{study.date[:4]}/{study.date[4:6]}/IM{index + 1:06d}.dcm"


def write_duplicates(out: Path, written: list[tuple[str, str]], rows: list[tuple[str, str, str]],
                     rng: np.random.Generator, seed: int, count: int) -> dict[str, str]:
    """Exact pixel duplicates of `count` of the `written` (path, transfer syntax) files: half byte copies,
    half re-encoded in another syntax under a new SOPInstanceUID. Appends their labels.csv rows
    (image, labels, patient_id) to `rows`, copying the original's; returns {copy: original}."""
    from pydicom import dcmread

    duplicates = {}
    for k, source in enumerate(sorted(rng.choice(len(written), size=min(count, len(written)), replace=False))):
        path, syntax = written[source]
        copy = f"{path[:8]}IM{len(rows) + 1:06d}.dcm"
        if k % 2 == 0:
            (out / copy).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(out / path, out / copy)
        else:
            ds = dcmread(out / path)
            if syntax == "rle":
                ds.decompress(generate_instance_uid=False)
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = seeded_uid(seed, "duplicate", k)
            write_dicom(ds, out / copy, "implicit" if syntax == "explicit" else "explicit")
        duplicates[copy] = path
        rows.append((copy, rows[source][1], rows[source][2]))
    return duplicates


def write_outliers(out: Path, rows: list[tuple[str, str, str]], seed: int, image_size: int,
                   patient_number: int) -> dict[str, str]:
    """A CT slice and a tiny radiograph of two new patients: files a hospital folder holds that are no
    training image. Appends their rows (labelled normal) to `rows`; returns {path: what it is}."""
    rng = np.random.default_rng([seed, 3])
    outliers = {}
    tiny = max(8, min(24, image_size // 4))
    for k, kind in enumerate(("CT slice", f"tiny image ({tiny} px)")):
        number = patient_number + 1 + k
        patient = fake_patient(rng, number)
        study = make_study(rng, seed, number, 0)
        sop_uid = seeded_uid(seed, "outlier", k)
        if kind == "CT slice":
            ds = ct_slice_dataset(image_size, patient=patient, study=study, sop_uid=sop_uid, rng=rng)
        else:
            image = render_chest(draw_chest(rng), [], image_size=tiny, rng=rng)
            ds = radiograph_dataset(image, patient=patient, study=study, sop_uid=sop_uid, instance=1, rng=rng)
        path = dicom_path(study, len(rows))
        write_dicom(ds, out / path, "explicit")
        outliers[path] = kind
        rows.append((path, "normal", patient.patient_id))
    return outliers
