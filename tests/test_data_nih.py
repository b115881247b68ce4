"""data.nih: the ChestX-ray14 label table (2017 and 2020 files), split lists and image folders."""
from __future__ import annotations

import gzip

import pytest

from data.errors import DataError
from data.nih import FINDINGS, find_images, read_labels, read_split_list

# SOURCES.md facts for Data_Entry_2017_v2020.csv.gz, split on '|'.
NIH_LABEL_COUNTS = {
    "Infiltration": 19894, "Effusion": 13317, "Atelectasis": 11559, "Nodule": 6331, "Mass": 5782,
    "Pneumothorax": 5302, "Consolidation": 4667, "Pleural_Thickening": 3385, "Cardiomegaly": 2776,
    "Emphysema": 2516, "Edema": 2303, "Fibrosis": 1686, "Pneumonia": 1431, "Hernia": 227,
}

HEADER_2017 = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
               "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],")
ROWS_2017 = [
    "00000001_000.png,Cardiomegaly,0,1,058Y,M,PA,2682,2749,0.143,0.143",
    "00000001_001.png,Cardiomegaly|Emphysema,1,1,058Y,M,PA,2894,2729,0.143,0.143",
    "00000003_000.png,No Finding,0,3,081Y,F,AP,2048,2500,0.168,0.168",
]


def write_2017_file(path, *, gzipped=False):
    text = "\r\n".join([HEADER_2017, *ROWS_2017]) + "\r\n"
    path.write_bytes(gzip.compress(text.encode()) if gzipped else text.encode())
    return path


def test_release_2020_reproduces_the_published_facts(shared_data):
    table = read_labels(shared_data / "nih" / "Data_Entry_2017_v2020.csv.gz")
    assert len(table) == 112120
    assert table["patient_id"].nunique() == 30805
    assert table[list(FINDINGS)].sum().to_dict() == NIH_LABEL_COUNTS
    assert int((table[list(FINDINGS)].sum(axis=1) == 0).sum()) == 60361  # No Finding
    assert table["view_position"].value_counts().to_dict() == {"PA": 67310, "AP": 44810}
    assert table["image"].is_unique and table[list(FINDINGS)].dtypes.unique().tolist() == ["uint8"]


def test_official_split_lists_are_patient_disjoint_and_cover_the_table(shared_data):
    table = read_labels(shared_data / "nih" / "Data_Entry_2017_v2020.csv.gz")
    train_val = read_split_list(shared_data / "nih" / "train_val_list.txt.gz")
    test = read_split_list(shared_data / "nih" / "test_list.txt.gz")
    assert (len(train_val), len(test)) == (86524, 25596)
    assert set(train_val) | set(test) == set(table["image"])
    patient = table.set_index("image")["patient_id"]
    assert not set(patient[train_val]) & set(patient[test])


@pytest.mark.parametrize("gzipped", [False, True])
def test_2017_file_with_trailing_header_comma_and_crlf(tmp_path, gzipped):
    path = write_2017_file(tmp_path / ("Data_Entry_2017.csv.gz" if gzipped else "Data_Entry_2017.csv"), gzipped=gzipped)
    assert b"\r\n" in (gzip.decompress(path.read_bytes()) if gzipped else path.read_bytes())
    table = read_labels(path)
    assert table["image"].tolist() == ["00000001_000.png", "00000001_001.png", "00000003_000.png"]
    assert table["patient_id"].tolist() == ["1", "1", "3"]
    assert table["patient_age"].tolist() == [58, 58, 81]  # "058Y" in 2017, 58 in 2020
    assert table.loc[1, ["Cardiomegaly", "Emphysema"]].tolist() == [1, 1]
    assert table.loc[2, list(FINDINGS)].sum() == 0
    assert table.loc[2, "original_height"] == 2500 and table.loc[2, "pixel_spacing_x_mm"] == pytest.approx(0.168)
    assert table["view_position"].tolist() == ["PA", "PA", "AP"]


@pytest.mark.parametrize("content, message", [
    ("Image,Labels\na.png,x\n", "header"),
    (HEADER_2017 + "\na.png,No Finding,0,1,58,M,PA,1,2\n", "line 2: 9 fields; expected 11"),
    (HEADER_2017 + "\na.png,Infiltrate,0,1,58,M,PA,1,2,0.1,0.1\n", r"unknown finding labels \['Infiltrate'\]"),
    (HEADER_2017 + "\n", "no data rows"),
])
def test_bad_label_tables_name_the_problem(tmp_path, content, message):
    path = tmp_path / "Data_Entry_2017.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_labels(path)


def test_split_list_without_trailing_newline(tmp_path):
    path = tmp_path / "test_list.txt"
    path.write_bytes(b"00000003_000.png\r\n00000001_000.png")
    assert read_split_list(path) == ["00000003_000.png", "00000001_000.png"]
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match="empty"):
        read_split_list(tmp_path / "empty.txt")


def test_images_found_flat_and_in_release_folders(tmp_path):
    (tmp_path / "images_001" / "images").mkdir(parents=True)
    (tmp_path / "images_012" / "images").mkdir(parents=True)
    (tmp_path / "images_001" / "images" / "a.png").write_bytes(b"")
    (tmp_path / "images_012" / "images" / "b.png").write_bytes(b"")
    (tmp_path / "c.png").write_bytes(b"")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "d.png").write_bytes(b"")
    found = find_images(tmp_path)
    assert sorted(found) == ["a.png", "b.png", "c.png"]
    assert found["b.png"] == tmp_path / "images_012" / "images" / "b.png"
