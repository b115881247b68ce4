"""Read one DICOM radiograph into a display-ready grayscale image.

The chain, in the order the DICOM standard defines it (PS3.4 N.2):
stored values -> Modality LUT (Rescale Slope/Intercept, or the Modality LUT Sequence that replaces them)
-> VOI (VOI LUT Sequence, else Window Center/Width; the first of several; else robust percentiles)
-> MONOCHROME1 inverted exactly once -> float32 in [0, 1], air dark and bone bright.

pydicom is imported inside the functions so that importing `data` stays cheap.
"""
from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from data.dicom_header import clean_uid, header_facts
from data.errors import DataError

GRAYSCALE_PHOTOMETRICS = ("MONOCHROME1", "MONOCHROME2")
# Percentiles used when a file carries no VOI at all: they ignore collimator edges and burnt-in
# labels (a few bright or dark pixels) that a plain min-max would stretch to the full range.
FALLBACK_PERCENTILES = (0.5, 99.5)
# The percentiles are taken on every 4th row and column: 1/16 of the pixels gives the same
# values to well under one grey level of 8 bits, at 1/16 of the cost.
PERCENTILE_STRIDE = 4
JPEG_EXTENDED_12BIT = "1.2.840.10008.1.2.4.51"
FLOAT32_LIMIT = 1e38  # header numbers at or beyond this (or not finite) cannot be used on float32 pixels

class UnusableImageError(DataError):
    """One input file cannot become a training image; `reason` is the short text for rejects.csv."""

    def __init__(self, path: Path | str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.reason = reason


def read_radiograph(path: Path | str) -> tuple[np.ndarray, dict[str, Any]]:
    """Return (float32 image in [0, 1], air dark / bone bright, header facts) for one DICOM file.

    Raises UnusableImageError for a file that is not a single-frame grayscale image with pixel data.
    """
    dataset, facts = read_dicom_header(path)
    return decode_radiograph(dataset, facts, path), facts


@contextmanager
def quiet_pydicom():
    """pydicom warns about malformed header values by quoting them (a PatientName among them): its
    warnings are silenced so that no header value can reach a log."""
    logger = logging.getLogger("pydicom")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)  # its decoders also log each failure with a traceback
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def read_dicom_header(path: Path | str):
    """Parse a DICOM file (pixel data left encoded) and return (dataset, facts).

    `facts` holds only what training and provenance need; `patient_id` is there so the caller can hash
    it and must never be written out as it is.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        # force=True reads old-style files that have no 128-byte preamble and no file meta.
        with quiet_pydicom():
            dataset = pydicom.dcmread(path, force=True)
    except (InvalidDicomError, Exception) as error:  # a mangled file can raise anything from pydicom's parser
        raise UnusableImageError(path, f"unreadable DICOM ({type(error).__name__})") from error
    if len(dataset) == 0 or ("SOPClassUID" not in dataset and "PixelData" not in dataset):
        raise UnusableImageError(path, "not a DICOM image (neither SOPClassUID nor pixel data)")
    try:
        _set_missing_transfer_syntax(dataset)
        with quiet_pydicom():
            facts = header_facts(dataset)
    except Exception as error:  # values are parsed lazily: a mangled element fails here, with any error type
        # e.g. Rows or NumberOfFrames that are not numbers; the value itself is not quoted (privacy).
        raise UnusableImageError(path, f"unreadable DICOM header ({type(error).__name__})") from error
    if "PixelData" not in dataset:
        raise UnusableImageError(path, "no pixel data")
    if facts["photometric"] not in GRAYSCALE_PHOTOMETRICS or facts["samples_per_pixel"] != 1:
        raise UnusableImageError(
            path, f"colour image (PhotometricInterpretation {facts['photometric'] or 'missing'}, "
                  f"{facts['samples_per_pixel']} samples per pixel); accepted: MONOCHROME1, MONOCHROME2"
        )
    if facts["frames"] != 1:
        raise UnusableImageError(path, f"multi-frame ({facts['frames']} frames); accepted: 1 frame")
    return dataset, facts


def decode_radiograph(dataset, facts: dict[str, Any], path: Path | str = "") -> np.ndarray:
    """Decode the pixel data of a dataset from read_dicom_header and apply the display chain."""
    stored = decode_stored_values(dataset, path)
    return display_image(stored, dataset, facts)


def decode_stored_values(dataset, path: Path | str = "") -> np.ndarray:
    """The stored pixel values (pydicom's pixel_array), or UnusableImageError naming why not."""
    syntax = clean_uid(dataset.file_meta.get("TransferSyntaxUID")) or "unknown"
    try:
        with quiet_pydicom():
            stored = dataset.pixel_array
    except (NotImplementedError, ValueError, RuntimeError, OSError, EOFError, AttributeError, TypeError,
            KeyError) as error:
        if syntax == JPEG_EXTENDED_12BIT:
            # gdcm and Pillow refuse 12-bit JPEG Extended; only the GPL-3 pylibjpeg-libjpeg decodes it.
            reason = "12-bit JPEG Extended cannot be decoded: install the [gpl-codecs] extra"
        elif isinstance(error, NotImplementedError):
            reason = f"no decoder installed for transfer syntax {syntax}"
        else:
            reason = f"unreadable or truncated pixel data ({type(error).__name__}, transfer syntax {syntax})"
        raise UnusableImageError(path, reason) from error
    if stored.ndim != 2:
        raise UnusableImageError(path, f"pixel data has shape {stored.shape}; accepted: one 2-D grayscale frame")
    return stored


def display_image(stored: np.ndarray, dataset, facts: dict[str, Any]) -> np.ndarray:
    """Modality LUT -> VOI -> MONOCHROME1 inversion; returns float32 in [0, 1] and records the VOI used."""
    from pydicom.pixels import apply_modality_lut

    with quiet_pydicom(), np.errstate(over="ignore", invalid="ignore"):  # checked below, once
        image = _display_values(apply_modality_lut, stored, dataset, facts)
    if not np.isfinite(image).all():
        # e.g. RescaleSlope 1e308: values beyond float32, so no window can show them; never written as 0s.
        raise UnusableImageError("", "pixel values are not finite after Rescale Slope/Intercept and the VOI; "
                                     "accepted: finite rescale and window values")
    # MONOCHROME1 means "high values are dark". A PresentationLUTShape of INVERSE is the standard's
    # companion of MONOCHROME1 (DX IOD), not a second inversion, so it is not applied again.
    if facts["photometric"] == "MONOCHROME1":
        np.subtract(np.float32(1.0), image, out=image)
    facts["inverted"] = facts["photometric"] == "MONOCHROME1"
    return image


def _display_values(apply_modality_lut, stored: np.ndarray, dataset, facts: dict[str, Any]) -> np.ndarray:
    """Modality LUT and VOI, clipped to [0, 1] (float32; NaN where the header's numbers overflow)."""
    # A fresh float32 array, owned here: the VOI steps below work in place on it (the image is
    # ~15 MB at 2000 x 2000, so every temporary saved is ~5 ms per file).
    values = np.array(apply_modality_lut(stored, dataset), dtype=np.float32, copy=True)
    if "VOILUTSequence" in dataset and len(dataset.VOILUTSequence) > 0:
        image = _apply_voi_lut_sequence(values, dataset)
        facts["voi"] = "voi_lut_sequence"
    elif _first_number(dataset.get("WindowCenter")) is not None and (_first_number(dataset.get("WindowWidth")) or 0) > 0:
        image = _apply_window(values, dataset)
        facts["voi"] = "window"
    else:
        image = _apply_percentile_window(values)
        facts["voi"] = "percentile"
    return np.clip(image, 0.0, 1.0, out=image if image.dtype == np.float32 else None).astype(np.float32, copy=False)


def _set_missing_transfer_syntax(dataset) -> None:
    """Old-style files have no file meta: name the syntax pydicom actually used to parse them."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    if getattr(dataset, "file_meta", None) is None:
        dataset.file_meta = FileMetaDataset()
    if "TransferSyntaxUID" in dataset.file_meta:
        return
    implicit_vr, little_endian = dataset.original_encoding
    if implicit_vr:
        dataset.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    else:
        dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian if little_endian else ExplicitVRBigEndian


def _first_number(value) -> float | None:
    """Window Center/Width may be multi-valued: the first is the default view (PS3.3 C.11.2.1.2)."""
    if value is None or value == "":
        return None
    try:
        number = float(value[0]) if hasattr(value, "__len__") and not isinstance(value, str) else float(value)
    except (TypeError, ValueError, IndexError):
        return None
    # A window beyond float32 (the image's type) cannot be applied: treated as absent (percentiles).
    return number if abs(number) < FLOAT32_LIMIT else None


def _apply_voi_lut_sequence(values: np.ndarray, dataset) -> np.ndarray:
    """The first VOI LUT, rescaled from its own output range to [0, 1]."""
    from pydicom.pixels import apply_voi

    # A LUT is indexed by integer input values; rounding the modality output says so explicitly
    # (pydicom truncates float input and warns).
    with quiet_pydicom():
        mapped = apply_voi(np.rint(values).astype(np.int32), dataset, index=0).astype(np.float32, copy=False)
    lut_values = np.asarray(dataset.VOILUTSequence[0].LUTData, dtype=np.float32)
    low, high = float(lut_values.min()), float(lut_values.max())
    if high <= low:
        return np.zeros_like(mapped)
    return (mapped - low) / (high - low)


def _apply_window(values: np.ndarray, dataset) -> np.ndarray:
    """Window Center/Width per PS3.3 C.11.2.1.2 (LINEAR, LINEAR_EXACT, SIGMOID), output in [0, 1].

    Works in place on `values` (float32, owned by the caller).
    """
    center = _first_number(dataset.get("WindowCenter"))
    width = _first_number(dataset.get("WindowWidth"))
    function = str(dataset.get("VOILUTFunction") or "LINEAR").strip().upper()
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR_EXACT":
        offset, scale = center - width / 2.0, 1.0 / width
    elif width <= 1:  # LINEAR with width 1 is a threshold at the center
        return (values >= center).astype(np.float32)
    else:  # LINEAR: (x - (c - 0.5)) / (w - 1) + 0.5 == (x - (c - 0.5 - (w - 1) / 2)) / (w - 1)
        offset, scale = center - 0.5 - (width - 1.0) / 2.0, 1.0 / (width - 1.0)
    values -= np.float32(offset)
    values *= np.float32(scale)
    return np.clip(values, 0.0, 1.0, out=values)


def _apply_percentile_window(values: np.ndarray) -> np.ndarray:
    sample = values[::PERCENTILE_STRIDE, ::PERCENTILE_STRIDE]
    low, high = np.percentile(sample, FALLBACK_PERCENTILES)
    if high <= low:
        return np.zeros_like(values)
    return (values - np.float32(low)) / np.float32(high - low)
