"""What of a DICOM header may leave the file: defined terms only, UIDs checked, never free text.

A header carries free text typed at the modality (names, accession numbers, comments) in fields that the
standard defines as codes. `header_facts` is the only door from a header to the manifest and the logs: a
Code String is copied out only when it is one of the standard's defined terms (else "other"), a UID only
when it is one, demographics only as sex and age band (data/demographics.py). The PatientID is passed on
as read, for one use only: the salted patient key (data/privacy.py); it is never written.
"""
from __future__ import annotations

import re
from typing import Any

from data.demographics import dicom_demographics

# Code String (CS) values are copied into outputs only when they are one of the standard's defined terms:
# anything else may be free text typed at the modality (a name, an accession number). PS3.5 6.2: CS is
# upper-case letters, digits, space and underscore, at most 16 characters.
CODE_STRING = re.compile(r"[A-Z0-9 _]{1,16}")
OTHER_VALUE = "other"  # written instead of a value that is not a defined term (never the value itself)
# ViewPosition defined terms (PS3.3 C.8.11.5.1.1 and C.8.11.7, DX and CR): AP, PA, lateral and decubitus, oblique.
VIEW_POSITION_TERMS = frozenset({"AP", "PA", "LL", "RL", "RLD", "LLD", "RLO", "LLO"})
# Modality defined terms (PS3.3 C.7.3.1.1.1), plus DR: not a defined term, but what many digital
# radiography units write, and one of prepare's default accepted modalities.
MODALITY_TERMS = frozenset({
    "AR", "ASMT", "AU", "BDUS", "BI", "BMD", "CFM", "CR", "CT", "CTPROTOCOL", "DG", "DMS", "DOC", "DX", "ECG",
    "EEG", "EMG", "EOG", "EPS", "ES", "FID", "GM", "HC", "HD", "IO", "IOL", "IVOCT", "IVUS", "KER", "KO", "LEN",
    "LS", "MG", "MR", "M3D", "NM", "OAM", "OCT", "OP", "OPM", "OPT", "OPTBSV", "OPTENF", "OPV", "OSS", "OT",
    "PA", "PLAN", "POS", "PR", "PT", "PX", "REG", "RESP", "RF", "RG", "RTDOSE", "RTIMAGE", "RTINTENT",
    "RTPLAN", "RTRAD", "RTRECORD", "RTSEGANN", "RTSTRUCT", "RWV", "SEG", "SM", "SMR", "SR", "SRF", "STAIN",
    "TEXTUREMAP", "TG", "US", "VA", "XA", "XAPROTOCOL", "XC", "DR"})
PHOTOMETRIC_TERMS = frozenset({"MONOCHROME1", "MONOCHROME2", "PALETTE COLOR", "RGB", "HSV", "ARGB", "CMYK",
                               "YBR_FULL", "YBR_FULL_422", "YBR_PARTIAL_422", "YBR_PARTIAL_420", "YBR_ICT",
                               "YBR_RCT", "XYB"})
# A UI value (PS3.5 6.2): digits and dots, at most 64 characters.
UNIQUE_IDENTIFIER = re.compile(r"[0-9]+(\.[0-9]+)*")


def clean_code_string(value, defined_terms) -> str:
    """A CS header value as it may be written out: the value itself when it is a defined term, "" when
    absent, else "other". Leading/trailing spaces are padding (PS3.5 6.2); lower case, which the standard
    does not allow but some writers use, is read as upper case."""
    text = "" if value is None else str(value).strip().upper()
    if not text:
        return ""
    return text if CODE_STRING.fullmatch(text) and text in defined_terms else OTHER_VALUE


def clean_uid(value) -> str:
    """A UI header value (SOPInstanceUID, TransferSyntaxUID) when it is one, else ""."""
    text = "" if value is None else str(value).strip().rstrip("\x00")
    return text if len(text) <= 64 and UNIQUE_IDENTIFIER.fullmatch(text) else ""


def header_facts(dataset) -> dict[str, Any]:
    """What the rest of cxrtune may know of a header: sizes, spacing, defined terms, UIDs, sex and age band."""
    rows, cols = int(dataset.get("Rows") or 0), int(dataset.get("Columns") or 0)
    spacing = _positive_pair(dataset.get("PixelSpacing")) or _positive_pair(dataset.get("ImagerPixelSpacing"))
    return {
        # Header free text never reaches an output: CS values are kept only as defined terms.
        "modality": clean_code_string(dataset.get("Modality"), MODALITY_TERMS),
        "view_position": clean_code_string(dataset.get("ViewPosition"), VIEW_POSITION_TERMS),
        "photometric": clean_code_string(dataset.get("PhotometricInterpretation"), PHOTOMETRIC_TERMS),
        "samples_per_pixel": int(dataset.get("SamplesPerPixel") or 1),
        "frames": int(dataset.get("NumberOfFrames") or 1),
        "bits_stored": int(dataset.get("BitsStored") or 0),
        "rows": rows,
        "cols": cols,
        # PixelSpacing (row, col) in mm; 0 or absent means unknown, kept as None.
        "pixel_spacing_row_mm": spacing[0] if spacing else None,
        "pixel_spacing_col_mm": spacing[1] if spacing else None,
        "sop_instance_uid": clean_uid(dataset.get("SOPInstanceUID")),
        "transfer_syntax": clean_uid(dataset.file_meta.get("TransferSyntaxUID")),
        "patient_id": str(dataset.get("PatientID") or "").strip(),
        # Only the sex and a coarse age band: never the birth date or the exact age (data/demographics.py).
        **dicom_demographics(dataset),
    }


def _positive_pair(value) -> tuple[float, float] | None:
    try:
        row, col = float(value[0]), float(value[1])
    except (TypeError, ValueError, IndexError):
        return None
    return (row, col) if row > 0 and col > 0 else None
