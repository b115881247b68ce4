"""Sex and age band in the manifest (never raw ages or dates) and the synthetic planted sex effect."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from data.demographics import age_band, dicom_age_years, normalise_sex
from data.errors import DataError


@pytest.mark.parametrize("years, band", [(0, "0-9"), (9.99, "0-9"), (10, "10-19"), (65, "60-69"), (89.9, "80-89"),
                                         (90, "90+"), (104, "90+"), (-1, ""), (None, ""), ("abc", "")])
def test_age_bands_are_decades_with_everything_above_89_grouped(years, band):
    assert age_band(years) == band


def test_dicom_age_from_age_string_else_from_birth_and_study_date():
    assert dicom_age_years("065Y", "", "") == 65
    assert dicom_age_years("018M", "", "") == pytest.approx(1.5)
    assert dicom_age_years("", "19500601", "20200531") == pytest.approx(69.99, abs=0.01)
    assert dicom_age_years("", "19500601", "") is None and dicom_age_years("", "bad", "20200101") is None
    assert [normalise_sex(value) for value in ("F", " m ", "O", "", None, "X")] == ["F", "M", "O", "", "", ""]


def test_prepared_manifests_keep_sex_and_age_band_only(tmp_path):
    from data.prepare import prepare_hospital, prepare_nih
    from data.synthetic import write_hospital, write_nih

    write_nih(tmp_path / "nih", n_images=8, seed=1, image_size=32)
    prepare_nih(tmp_path / "nih", None, tmp_path / "nih-prepared", image_size=32, salt="t", progress=False, workers=1)
    write_hospital(tmp_path / "dicom", n_images=4, seed=1, image_size=64, outliers=False, n_duplicates=0)
    prepare_hospital(tmp_path / "dicom", tmp_path / "dicom" / "labels.csv", tmp_path / "dicom-prepared",
                     image_size=32, salt="t", progress=False, workers=1)
    table = pd.read_csv(tmp_path / "nih" / "Data_Entry_2017.csv", index_col=False, usecols=range(7))
    for prepared in ("nih-prepared", "dicom-prepared"):
        text = (tmp_path / prepared / "manifest.csv").read_text()
        manifest = pd.read_csv(tmp_path / prepared / "manifest.csv", dtype=str, keep_default_na=False)
        assert set(manifest["sex"]) <= {"F", "M"} and manifest["sex"].ne("").all()
        assert manifest["age_band"].str.fullmatch(r"\d0-\d9|90\+").all()
        assert "BirthDate" not in text and "19" + "50" not in manifest["age_band"].str.cat()
    nih = pd.read_csv(tmp_path / "nih-prepared" / "manifest.csv", dtype=str, keep_default_na=False)
    expected = table.set_index("Image Index")
    for _, row in nih.iterrows():
        assert row["sex"] == expected.at[row["image_id"], "Patient Gender"]
        assert row["age_band"] == age_band(expected.at[row["image_id"], "Patient Age"])


def test_fainter_for_sex_fades_one_finding_in_one_sex_and_changes_nothing_else(tmp_path):
    from data.synthetic import write_nih

    plain = write_nih(tmp_path / "plain", n_images=40, seed=2, image_size=32, prevalence="balanced")
    faded = write_nih(tmp_path / "faded", n_images=40, seed=2, image_size=32, prevalence="balanced",
                      fainter_for_sex="Cardiomegaly:F:0.0")
    assert faded["fainter_for_sex"] == "Cardiomegaly:F:0" and "fainter_for_sex" not in plain
    table = pd.read_csv(tmp_path / "plain" / "Data_Entry_2017.csv", index_col=False, usecols=range(7))
    changed = set()
    for name in table["Image Index"]:
        a = np.asarray(Image.open(tmp_path / "plain" / "images" / name))
        b = np.asarray(Image.open(tmp_path / "faded" / "images" / name))
        if not np.array_equal(a, b):
            changed.add(name)
    planted = table[(table["Patient Gender"] == "F") & table["Finding Labels"].str.contains("Cardiomegaly")]
    assert len(planted) > 0 and changed == set(planted["Image Index"])


def test_fainter_for_sex_refuses_unknown_findings_and_bad_strengths(tmp_path):
    from data.synthetic import write_hospital, write_nih

    with pytest.raises(DataError, match="finding 'Cardiomegaly' is not one of aortic_calcification"):
        write_hospital(tmp_path / "a", n_images=2, fainter_for_sex="Cardiomegaly:F:0.2")
    with pytest.raises(DataError, match="strength 1.5 must be in"):
        write_nih(tmp_path / "b", n_images=2, fainter_for_sex="Cardiomegaly:F:1.5")
    with pytest.raises(DataError, match="is not FINDING:SEX:STRENGTH"):
        write_nih(tmp_path / "c", n_images=2, fainter_for_sex="Cardiomegaly")
