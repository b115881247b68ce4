"""Folds: patient-disjoint, stratified within the stated tolerance, deterministic, stored in the manifest."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from data.errors import DataError
from data.folds import assign_folds, assign_prepared_folds, part_positive_counts
from search.cli import main

LABELS = ["a", "b", "c", "d"]


def random_table(seed: int, n_patients: int = 200, prevalences=(0.02, 0.1, 0.25, 0.4)) -> pd.DataFrame:
    """Patients with 1..several images each (geometric), independent labels per image."""
    rng = np.random.default_rng(seed)
    patient = np.repeat(np.arange(n_patients), rng.geometric(0.4, n_patients))
    labels = (rng.random((len(patient), len(prevalences))) < np.asarray(prevalences)).astype(np.uint8)
    table = pd.DataFrame(labels, columns=LABELS[:len(prevalences)])
    table.insert(0, "patient_key", [f"{p:016x}" for p in patient])
    table.insert(0, "image_id", [f"img{i}" for i in range(len(table))])
    return table


def assert_within_tolerance(table: pd.DataFrame, label_cols, n_folds, test_fraction, patient_col="patient_key"):
    """The bound stated in data/folds.py, checked for every part and category."""
    counts = part_positive_counts(table, label_cols, patient_col=patient_col)
    parts = [name for name in counts.index if name != "all"]
    fraction = np.array([test_fraction if name == "test" else (1 - test_fraction) / n_folds for name in parts])
    target = fraction[:, None] * counts.loc["all", label_cols].to_numpy(dtype=float)[None, :]
    largest_patient = table.groupby(patient_col)[label_cols].sum().max().to_numpy(dtype=float)
    deviation = np.abs(counts.loc[parts, label_cols].to_numpy(dtype=float) - target)
    assert (deviation <= np.maximum(0.1 * target, 3 * largest_patient) + 1e-9).all(), counts


def assert_patient_disjoint(table: pd.DataFrame, patient_col="patient_key"):
    assert table.groupby(patient_col)["fold"].nunique().max() == 1


@pytest.mark.parametrize("seed", range(12))
def test_random_tables_are_patient_disjoint_and_within_tolerance(seed):
    n_folds, test_fraction = 2 + seed % 4, [0.0, 0.1, 0.2][seed % 3]
    table = random_table(seed, n_patients=40 + 30 * seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = assign_folds(table, n_folds, test_fraction, seed)
    assert_patient_disjoint(result)
    assert_within_tolerance(result, LABELS, n_folds, test_fraction)
    assert set(result["fold"]) == set(range(n_folds)) | ({-1} if test_fraction else set())
    assert ((result["fold"] == -1) == (result["split"] == "test")).all()
    assert (result[LABELS] == table[LABELS]).all().all() and "fold" not in table.columns


@pytest.mark.filterwarnings("ignore:categories with fewer")
def test_same_seed_same_folds_whatever_the_row_order_and_other_seed_differs():
    table = random_table(1)
    first = assign_folds(table, 5, 0.1, seed=3)
    shuffled = assign_folds(table.sample(frac=1, random_state=0), 5, 0.1, seed=3).loc[table.index]
    other = assign_folds(table, 5, 0.1, seed=4)
    assert first["fold"].tolist() == shuffled["fold"].tolist()
    assert first["fold"].tolist() != other["fold"].tolist()


def test_test_part_does_not_depend_on_the_number_of_folds():
    table = random_table(2)
    assert (assign_folds(table, 3, 0.1, 0)["split"] == assign_folds(table, 7, 0.1, 0)["split"]).all()


def test_category_with_fewer_positive_patients_than_parts_warns_and_spreads_them():
    table = random_table(5, n_patients=100, prevalences=(0.0, 0.3))
    table["a"] = 0
    first_images = table.groupby("patient_key").head(1).index[:3]  # three patients, one positive image each
    table.loc[first_images, "a"] = 1
    with pytest.warns(UserWarning, match=r"a \(3\)"):
        result = assign_folds(table, 5, 0.1, 0, label_cols=["a", "b"])
    per_fold = result[result["split"] == "cv"].groupby("fold")["a"].sum()
    assert sorted(per_fold.tolist()) == [0, 0, 1, 1, 1]


@pytest.mark.parametrize("kwargs, message", [
    ({"n_folds": 1}, "n_folds must be an integer >= 2"),
    ({"test_fraction": 1.0}, r"test_fraction must be in \[0, 1\)"),
    ({"patient_col": "patient_id"}, "patient column 'patient_id' not in the table"),
    ({"label_cols": ["zz"]}, r"label columns \['zz'\] not in the table"),
])
def test_bad_arguments_raise_data_error_naming_them(kwargs, message):
    with pytest.raises(DataError, match=message):
        assign_folds(random_table(0), **kwargs)


def test_non_binary_label_and_too_few_patients_are_refused():
    table = random_table(0)
    table.loc[0, "b"] = 2
    with pytest.raises(DataError, match="'b' must hold only 0/1"):
        assign_folds(table)
    with pytest.raises(DataError, match="3 patients cannot fill 5 folds and a test part"):
        assign_folds(random_table(0, n_patients=3))
    with pytest.raises(DataError, match=r"3 patients leave part\(s\) \[-1\] \(-1 = test\) empty"):
        assign_folds(random_table(0, n_patients=3), n_folds=2, test_fraction=0.05)


def test_full_nih_table_official_split_kept_folds_disjoint_and_stratified(shared_data):
    from data.nih import FINDINGS, read_labels, read_split_list

    table = read_labels(shared_data / "nih" / "Data_Entry_2017_v2020.csv.gz")
    assert len(table) == 112_120 and table["patient_id"].nunique() == 30_805
    test_images = set(read_split_list(shared_data / "nih" / "test_list.txt.gz"))
    cv = table[~table["image"].isin(test_images)]
    result = assign_folds(cv, 5, 0.0, seed=0, patient_col="patient_id", label_cols=list(FINDINGS))
    assert_patient_disjoint(result, "patient_id")
    assert_within_tolerance(result, list(FINDINGS), 5, 0.0, "patient_id")
    # The NIH claim: every fold's prevalence of every finding, Hernia included, within 10% of overall.
    prevalence = result.groupby("fold")[list(FINDINGS)].mean()
    relative = (prevalence / result[list(FINDINGS)].mean() - 1).abs()
    assert relative.to_numpy().max() < 0.10, relative.max()
    assert (result.groupby("fold")["Hernia"].sum() > 0).all()

    full = assign_folds(table, 5, 0.1, seed=0, patient_col="patient_id", label_cols=list(FINDINGS))
    assert_patient_disjoint(full, "patient_id")
    relative = (full.groupby("fold")[list(FINDINGS)].mean() / full[list(FINDINGS)].mean() - 1).abs()
    assert relative.to_numpy().max() < 0.10, relative.max()
    assert abs((full["split"] == "test").mean() - 0.1) < 0.001


def write_prepared(root, table, fmt="hospital"):
    root.mkdir()
    table = table.assign(image_path=[f"images/{image_id}.png" for image_id in table["image_id"]])
    table.to_csv(root / "manifest.csv", index=False)
    (root / "summary.json").write_text(json.dumps({"categories": LABELS, "format": fmt, "image_size": 64}))
    return root


def test_cli_writes_folds_into_manifest_and_summary_and_prints_counts(tmp_path, capsys):
    table = random_table(3)
    root = write_prepared(tmp_path / "prepared", table)
    assert main(["folds", str(root), "--folds", "3", "--seed", "2"]) == 0
    printed = capsys.readouterr().out
    manifest = pd.read_csv(root / "manifest.csv", dtype={"patient_key": str})
    summary = json.loads((root / "summary.json").read_text())
    assert summary["folds"] == {"n_folds": 3, "test_fraction": 0.1, "seed": 2, "official_test_split": False}
    expected = assign_folds(table, 3, 0.1, 2)
    assert manifest["fold"].tolist() == expected["fold"].tolist()
    assert "fold 2" in printed and "test" in printed and "patients" in printed
    assert str(int(expected.loc[expected["fold"] == 1, "d"].sum())) in printed
    assert not list(root.glob(".*.tmp"))
    assert list(manifest.columns[-2:]) == ["split", "fold"]


def test_cli_keeps_nih_official_test_split(tmp_path):
    table = random_table(4)
    table["split"] = np.where(table["patient_key"].str[-1].isin(["0", "5", "a"]), "test", "cv")
    root = write_prepared(tmp_path / "nih", table, fmt="nih")
    manifest, _ = assign_prepared_folds(root, n_folds=4, test_fraction=0.3, seed=0)
    assert (manifest["split"] == table["split"]).all()
    assert (manifest.loc[table["split"] == "test", "fold"] == -1).all()
    assert set(manifest.loc[table["split"] == "cv", "fold"]) == {0, 1, 2, 3}
    assert json.loads((root / "summary.json").read_text())["folds"]["official_test_split"] is True


def test_nih_data_prepared_without_the_split_lists_gets_a_test_part_here(tmp_path):
    table = random_table(4).assign(split="")
    root = write_prepared(tmp_path / "nih", table, fmt="nih")
    manifest, _ = assign_prepared_folds(root, n_folds=3, test_fraction=0.2, seed=1)
    assert manifest["fold"].tolist() == assign_folds(random_table(4), 3, 0.2, 1)["fold"].tolist()
    table.loc[0, "split"] = "cv"  # one image marked, the rest not: the lists were not applied whole
    root = write_prepared(tmp_path / "nih-partial", table, fmt="nih")
    with pytest.raises(DataError, match=r"every image 'cv' or 'test', found \[''\]"):
        assign_prepared_folds(root)


def test_cli_reports_a_missing_manifest_in_one_line(tmp_path, capsys):
    assert main(["folds", str(tmp_path)]) == 2
    assert "manifest.csv is missing" in capsys.readouterr().err


def test_folds_flag_is_spelled_as_elsewhere_and_the_old_spelling_still_works(capsys):
    from search.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["folds", "p", "--n-folds", "3"]).n_folds == 3
    assert parser.parse_args(["folds", "p", "--folds", "4"]).n_folds == 4
    assert parser.parse_args(["folds", "p"]).n_folds == 5
    with pytest.raises(SystemExit):
        parser.parse_args(["folds", "--help"])
    shown = capsys.readouterr().out
    assert "--folds K" in shown and "--n-folds" not in shown
