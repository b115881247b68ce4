"""data.labels: taxonomies, the hospital labels CSV, multi-hot encoding, rare categories."""
from __future__ import annotations

import pandas as pd
import pytest

from data.errors import DataError
from data.labels import (drop_least_category, drop_rare_categories, encode_labels, load_taxonomy, normalise_name,
                         read_hospital_labels)

# The study's table as it spells it: category -> sub-categories (the illegible one named by cxrtune).
STUDY_TABLE = {
    "normal": ["normal"],
    "aortic calcification": ["aortic arch atherosclerotic plaque", "aortic arch calcification",
                             "aortic calcification other", "aortic wall calcification"],
    "arterial curvature": ["aortic curvature", "thoracic vertebral artery curvature"],
    "abnormal lung fields": ["small pulmonary nodules", "shadows of pulmonary nodules", "tuberculosis",
                             "pulmonary fibrosis"],
    "increased lung patterns": ["increased lung streak", "lung field infiltration", "obvious hilar"],
    "spinal lesions": ["degenerative joint disease of the thoracic spine", "scoliosis"],
    "intercostal pleural thickening": ["intercostal pleural thickening"],
    "cardiac hypertrophy": ["cardiac hypertrophy"],
    "heart pacemaker placement": ["heart pacemaker placement"],
}


def test_study_taxonomy_is_the_studys_table_19_subcategories_in_9_categories():
    study = load_taxonomy("study")
    assert study.name == "study" and study.normal == ()  # normal is a category with an output, as in the study
    assert list(study.categories) == [normalise_name(name) for name in STUDY_TABLE]
    assert sum(len(names) for names in study.categories.values()) == 19
    for category, names in STUDY_TABLE.items():
        assert [study.category_of()[normalise_name(name)] for name in names] == [normalise_name(category)] * len(names)


@pytest.mark.parametrize("spelling", [str.lower, str.upper, str.title, lambda name: name.replace(" ", "_"),
                                      lambda name: name.replace(" ", "-").title(), lambda name: f"  {name}  "])
def test_the_studys_spellings_are_accepted_whatever_the_case_and_separators(spelling):
    study = load_taxonomy("study")
    names = [name for names in STUDY_TABLE.values() for name in names]
    encoded = encode_labels(pd.Series([spelling(name) for name in names]), study, where="labels.csv")
    want = [normalise_name(category) for category, subs in STUDY_TABLE.items() for _ in subs]
    assert [encoded.columns[row.argmax()] for row in encoded.to_numpy()] == want
    assert (encoded.sum(axis=1) == 1).all()
    assert normalise_name("Obvious-Hilar") == normalise_name("obvious  hilar") == "obvious_hilar"


def test_nih_taxonomy_has_the_14_findings_in_order():
    from data.nih import FINDINGS

    nih = load_taxonomy("nih")
    assert tuple(nih.categories) == FINDINGS and nih.normal == ("No Finding",)


def test_taxonomy_from_a_yaml_path_round_trips(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nnormal: [clear]\ncategories:\n  heart: [cardiomegaly]\n  lung: [nodule, mass]\n")
    mine = load_taxonomy(path)
    assert mine.categories == {"heart": ("cardiomegaly",), "lung": ("nodule", "mass")}
    (tmp_path / "again.yaml").write_text(mine.to_yaml())
    assert load_taxonomy(tmp_path / "again.yaml") == mine


@pytest.mark.parametrize("text, message", [
    ("name: x\ncategories: {}\n", "categories"),
    ("name: x\ncategories:\n  a: [n]\n  b: [n]\n", "listed under both"),
    ("name: x\nnormal: [n]\ncategories:\n  a: [n]\n", "listed under both"),
    ("name: x\ncategories:\n  a: [Obvious Hilar]\n  b: [obvious_hilar]\n", "listed under both.*ignoring case"),
    ("name: [unclosed\n", "not valid YAML"),
])
def test_bad_taxonomy_files_name_the_problem(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        load_taxonomy(path)


def test_unknown_taxonomy_name_lists_the_builtins():
    with pytest.raises(DataError, match=r"\['nih', 'study'\]"):
        load_taxonomy("nope")


def test_encode_labels_is_multi_hot_and_nih_no_finding_is_all_zero():
    study = load_taxonomy("study")
    texts = pd.Series(["normal", "tuberculosis|heart pacemaker placement", "tuberculosis|pulmonary_fibrosis",
                       " cardiac hypertrophy "])
    encoded = encode_labels(texts, study, where="labels.csv")
    assert list(encoded.columns) == list(study.categories)
    assert encoded.loc[0].tolist() == [1] + [0] * 8  # the study's normal is a category of its own
    assert encoded.loc[1, "abnormal_lung_fields"] == 1 and encoded.loc[1, "heart_pacemaker_placement"] == 1
    assert encoded.loc[2].sum() == 1  # two sub-categories of one category: one positive
    assert encoded.loc[3, "cardiac_hypertrophy"] == 1
    assert encoded.dtypes.unique().tolist() == ["uint8"]
    nih = encode_labels(pd.Series(["No Finding", "no_finding", "pleural thickening|EFFUSION"]), load_taxonomy("nih"),
                        where="x")
    assert nih.loc[:1].to_numpy().sum() == 0 and nih.loc[2, ["Pleural_Thickening", "Effusion"]].tolist() == [1, 1]


def test_unknown_label_names_are_all_listed():
    with pytest.raises(DataError, match="label names not in taxonomy 'study': banana, kiwi; accepted: .*obvious_hilar"):
        encode_labels(pd.Series(["kiwi|scoliosis", "banana", "normal"]), load_taxonomy("study"), where="x.csv")


def test_a_row_without_labels_is_an_error_not_a_guess():
    with pytest.raises(DataError, match="no labels.*'normal'"):
        encode_labels(pd.Series(["scoliosis", ""]), load_taxonomy("study"), where="x.csv")


def test_rare_categories_are_dropped_and_reported():
    labels = pd.DataFrame({"a": [1, 1, 1, 0], "b": [1, 0, 0, 0], "c": [0, 1, 1, 1]})
    kept, dropped = drop_rare_categories(labels, 2)
    assert kept == ["a", "c"] and dropped == {"b": 1}
    with pytest.raises(DataError, match="every category"):
        drop_rare_categories(labels, 10)


def test_the_least_category_is_dropped_and_reported():
    labels = pd.DataFrame({"a": [1, 1, 1, 0], "b": [1, 0, 0, 0], "c": [0, 1, 0, 1], "d": [0, 0, 1, 0]})
    assert drop_least_category(labels) == (["a", "c", "d"], {"b": 1})  # a tie: the first in order goes
    with pytest.raises(DataError, match="at least 2 categories"):
        drop_least_category(labels[["a"]])


def test_hospital_labels_csv_is_read_and_checked(tmp_path):
    good = tmp_path / "labels.csv"
    good.write_bytes("\ufeffimage,labels,patient_id,extra\r\nsub\\a.dcm,normal,007,x\r\n./b.dcm,nodule,008,y\r\n".encode())
    table = read_hospital_labels(good)
    assert list(table.columns) == ["image", "labels", "patient_id"]
    assert table["image"].tolist() == ["sub/a.dcm", "b.dcm"] and table["patient_id"].tolist() == ["007", "008"]
    cases = {
        "missing.csv": None,
        "no_labels.csv": "image,finding\na.dcm,normal\n",
        "empty.csv": "",
        "header_only.csv": "image,labels\n",
        "twice.csv": "image,labels\na.dcm,normal\na.dcm,nodule\n",
        "binary.csv": b"\xff\xfe\x00\x81garbage",
    }
    messages = {"missing.csv": "does not exist", "no_labels.csv": "lacks column.*labels", "empty.csv": "is empty",
                "header_only.csv": "no rows", "twice.csv": "more than once", "binary.csv": "cannot be read|lacks"}
    for name, content in cases.items():
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif content is not None:
            path.write_text(content)
        with pytest.raises(DataError, match=messages[name]):
            read_hospital_labels(path)


def test_a_builtin_taxonomy_name_means_the_builtin_whatever_the_working_folder_holds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nih").write_text("categories: {x: [y]}\n")  # a file named like a built-in
    (tmp_path / "study").mkdir()  # and a folder
    assert load_taxonomy("nih").name == "nih" and load_taxonomy("study").name == "study"
    (tmp_path / "mine.yaml").write_text("name: mine\nnormal: [normal]\ncategories: {x: [y]}\n")
    assert load_taxonomy("mine.yaml").name == "mine" and load_taxonomy("./mine.yaml").name == "mine"
    with pytest.raises(DataError, match="unknown taxonomy 'mine'"):
        load_taxonomy("mine")
    with pytest.raises(DataError, match="taxonomy file sub/none.yml does not exist"):
        load_taxonomy("sub/none.yml")


def test_labels_csv_as_spreadsheets_write_it(tmp_path):
    path = tmp_path / "labels.csv"
    # A byte-order mark, Windows line ends, quoted fields (one with a comma and a line break), a blank line,
    # the same row twice (labels in another order), spaces around values.
    path.write_bytes(("\ufeffimage,labels,patient_id\r\n"
                      '"a.dcm","nodule|normal",1\r\n'
                      '\r\n'
                      '"b, c.dcm","nodule",2\r\n'
                      '"d.dcm", "nodule|pacemaker" ,"3\r\n"\r\n'
                      'a.dcm,normal|nodule,1\r\n').encode())
    table = read_hospital_labels(path)
    assert table["image"].tolist() == ["a.dcm", "b, c.dcm", "d.dcm"]
    assert table["labels"].tolist() == ["nodule|normal", "nodule", "nodule|pacemaker"]
    assert table["patient_id"].tolist() == ["1", "2", "3"] and table.index.tolist() == [2, 4, 5]
    assert table.attrs["repeated_rows"] == 1
    # The same image with other labels: both lines named. A row without labels: its line, not a row index.
    path.write_text("image,labels\na.dcm,normal\n\nb.dcm,\na.dcm,nodule\n")
    with pytest.raises(DataError, match=r"a.dcm more than once .*lines 2 and 5"):
        read_hospital_labels(path)
    path.write_text("image,labels\na.dcm,normal\n\nb.dcm,\n")
    with pytest.raises(DataError, match=r"1 row\(s\) have no labels \(first: line 4\)"):
        encode_labels(read_hospital_labels(path)["labels"], load_taxonomy("study"), where=str(path))
