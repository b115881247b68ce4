"""Coarse demographics for subgroup evaluation: sex and an age band, never the raw values.

The manifest keeps `sex` (F, M, O or empty) and `age_band` (decades: "0-9" ... "80-89", and "90+"
for every age above 89, as HIPAA Safe Harbor requires). Birth dates, study dates and exact ages are
read only to compute the band and are not kept anywhere.
"""
from __future__ import annotations

import re
from datetime import date

DEMOGRAPHIC_COLUMNS = ("sex", "age_band")
OLDEST_BAND = "90+"
# DICOM Age String (PS3.5 6.2): three digits and a unit, days/weeks/months/years.
_AGE_STRING = re.compile(r"^\s*(\d{1,3})\s*([DWMY]?)\s*$", re.IGNORECASE)
_DAYS_PER_UNIT = {"D": 1.0, "W": 7.0, "M": 365.25 / 12, "Y": 365.25, "": 365.25}


def normalise_sex(value) -> str:
    """PatientSex / NIH 'Patient Gender' -> 'F', 'M', 'O' or '' (unknown)."""
    text = str(value or "").strip().upper()
    return {"F": "F", "FEMALE": "F", "M": "M", "MALE": "M", "O": "O", "OTHER": "O"}.get(text, "")


def age_band(years) -> str:
    """'0-9', '10-19', ..., '80-89', '90+'; '' when unknown or implausible (negative, over 130)."""
    try:
        years = float(years)
    except (TypeError, ValueError):
        return ""
    if not 0 <= years <= 130:
        return ""
    if years >= 90:
        return OLDEST_BAND
    decade = int(years // 10) * 10
    return f"{decade}-{decade + 9}"


def _parse_date(text) -> date | None:
    text = str(text or "").strip()
    if not re.fullmatch(r"\d{8}", text):
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def dicom_age_years(patient_age, birth_date, study_date) -> float | None:
    """Age in years from PatientAge ('065Y', '018M', ...), else from PatientBirthDate and StudyDate."""
    match = _AGE_STRING.match(str(patient_age or ""))
    if match:
        return int(match.group(1)) * _DAYS_PER_UNIT[match.group(2).upper()] / 365.25
    born, seen = _parse_date(birth_date), _parse_date(study_date)
    if born and seen and seen >= born:
        return (seen - born).days / 365.25
    return None


def dicom_demographics(dataset) -> dict[str, str]:
    """{'sex', 'age_band'} of a pydicom dataset (header only)."""
    years = dicom_age_years(dataset.get("PatientAge"), dataset.get("PatientBirthDate"),
                            dataset.get("StudyDate") or dataset.get("SeriesDate") or dataset.get("ContentDate"))
    return {"sex": normalise_sex(dataset.get("PatientSex")), "age_band": age_band(years)}
