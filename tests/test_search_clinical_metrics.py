"""Clinical figures on fixed arrays: patient bootstrap, AP, ECE, temperature scaling, operating points, gaps.

Every hand-written statistic is checked against a hand computation or scikit-learn; no model is trained.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from search.evaluation.calibration import (apply_temperatures, calibration_rows, expected_calibration_error,
                                           fit_temperatures, reliability_diagram)
from search.evaluation.clinical_metrics import (confusion_rates, discrimination, patient_resample_counts,
                                                weighted_average_precision)
from search.evaluation.operating_points import choose_thresholds, operating_point_rows
from search.evaluation.subgroups import flagged_gaps, subgroup_rows


def test_patient_bootstrap_draws_whole_patients():
    patients = np.array(["a", "a", "a", "b", "c", "c"])
    chunks = list(patient_resample_counts(patients, n_resamples=50, seed=0, chunk_elements=6 * 7))
    counts = np.concatenate(chunks)
    assert len(chunks) == 8 and counts.shape == (50, 6)  # 7 resamples per chunk
    # A patient's images are always drawn together, and each resample draws 3 patients.
    assert (counts[:, 0] == counts[:, 1]).all() and (counts[:, 1] == counts[:, 2]).all()
    assert (counts[:, 4] == counts[:, 5]).all()
    assert (counts[:, 0] + counts[:, 3] + counts[:, 4] == 3).all()
    again = np.concatenate(list(patient_resample_counts(patients, n_resamples=50, seed=0)))
    np.testing.assert_array_equal(again, counts)  # seeded; chunking changes nothing


def test_average_precision_by_hand_and_against_scikit_learn():
    from sklearn.metrics import average_precision_score

    # Scores 0.9 (pos), 0.8 (neg), 0.7 (pos), 0.1 (neg): AP = 1/2 * 1 + 1/2 * 2/3.
    ap = weighted_average_precision(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1]), np.ones((1, 4)))
    assert ap[0] == pytest.approx(0.5 + 1 / 3)
    rng = np.random.default_rng(0)
    y_true, y_score = rng.integers(0, 2, 60), rng.integers(0, 8, 60) / 7  # ties
    counts = rng.integers(0, 3, size=(10, 60))
    expected = [average_precision_score(y_true, y_score, sample_weight=row) for row in counts]
    np.testing.assert_allclose(weighted_average_precision(y_true, y_score, counts), expected)


def test_confusion_rates_by_hand():
    rates = confusion_rates(np.array([1, 1, 0, 0, 0]), np.array([1, 0, 1, 0, 0]), np.ones((1, 5)))
    assert rates["sensitivity"][0] == 0.5 and rates["specificity"][0] == pytest.approx(2 / 3)
    assert rates["ppv"][0] == 0.5 and rates["npv"][0] == pytest.approx(2 / 3)


def test_expected_calibration_error_by_hand():
    # Bin [0.1, 0.2): probabilities 0.1, 0.1, labels 0, 1 -> |0.1 - 0.5| = 0.4, share 2/4.
    # Bin [0.9, 1.0]: probabilities 0.9, 1.0, labels 1, 1 -> |0.95 - 1| = 0.05, share 2/4.
    ece = expected_calibration_error([0, 1, 1, 1], [0.1, 0.1, 0.9, 1.0])
    assert ece == pytest.approx(0.5 * 0.4 + 0.5 * 0.05)
    assert expected_calibration_error([0, 1], [0.0, 1.0]) == 0.0


def test_discrimination_reports_positive_counts_intervals_and_too_few_positives():
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(1)
    n = 300
    patients = np.repeat(np.arange(100), 3)
    y_true = rng.integers(0, 2, size=(n, 3))
    y_true[:, 2] = 0
    y_true[:4, 2] = 1  # 4 positives: reported, not in the macro
    y_score = np.clip(0.35 * y_true + rng.uniform(0, 0.65, size=(n, 3)), 0, 1)
    rows = {row["category"]: row for row in discrimination(y_true, y_score, ["a", "b", "c"], patients,
                                                            n_resamples=200, seed=0, min_positives=10)}
    assert rows["a"]["auc"] == pytest.approx(roc_auc_score(y_true[:, 0], y_score[:, 0]))
    assert rows["a"]["ap"] == pytest.approx(average_precision_score(y_true[:, 0], y_score[:, 0]))
    assert rows["a"]["positives"] == y_true[:, 0].sum() and rows["a"]["patients"] == 100
    assert rows["a"]["auc_ci_low"] < rows["a"]["auc"] < rows["a"]["auc_ci_high"]
    assert rows["c"]["status"] == "too few positives (4 < 10)" and rows["c"]["positives"] == 4
    assert rows["macro"]["auc"] == pytest.approx((rows["a"]["auc"] + rows["b"]["auc"]) / 2)
    assert rows["macro"]["status"] == "mean of 2 of 3 categories"
    assert rows["macro"]["auc_ci_low"] < rows["macro"]["auc"] < rows["macro"]["auc_ci_high"]


def test_temperature_scaling_repairs_a_planted_over_confidence(tmp_path):
    rng = np.random.default_rng(2)
    true_logit = rng.normal(0, 1.5, size=(4000, 2))
    y_true = (rng.uniform(size=true_logit.shape) < 1 / (1 + np.exp(-true_logit))).astype(int)
    over_confident = 1 / (1 + np.exp(-3.0 * true_logit))  # logits 3x too large: T should be about 3
    validation, test = slice(0, 2000), slice(2000, None)
    temperatures = fit_temperatures(y_true[validation], over_confident[validation])
    np.testing.assert_allclose(temperatures, 3.0, rtol=0.15)
    scaled = apply_temperatures(over_confident[test], temperatures)
    before = calibration_rows(y_true[test], over_confident[test], ["a", "b"], label="raw")
    after = calibration_rows(y_true[test], scaled, ["a", "b"], label="temperature")
    assert after[-1]["ece"] < before[-1]["ece"] / 2 and after[-1]["brier"] < before[-1]["brier"]
    path = reliability_diagram(y_true[test], {"raw": over_confident[test], "temperature": scaled}, ["a", "b"],
                               tmp_path / "reliability.png")
    assert path.stat().st_size > 1000


def test_thresholds_chosen_on_validation_meet_the_target_specificity():
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 2, size=(400, 1))
    y_prob = np.clip(0.3 * y_true + rng.uniform(0, 0.7, size=y_true.shape), 0, 1)
    thresholds = choose_thresholds(y_true[:200], y_prob[:200], ["a"], specificities=(0.9,))
    negatives = y_prob[:200][y_true[:200, 0] == 0, 0]
    chosen = thresholds["a"]["specificity_0.90"]
    assert (negatives < chosen).mean() >= 0.9
    assert (negatives < np.max(negatives[negatives < chosen])).mean() < 0.9  # the lowest such threshold
    rows = operating_point_rows(y_true[200:], y_prob[200:], ["a"], thresholds, np.arange(200), n_resamples=100)
    by_name = {row["operating_point"]: row for row in rows}
    test_negatives = y_prob[200:][y_true[200:, 0] == 0, 0]
    assert by_name["specificity_0.90"]["specificity"] == pytest.approx((test_negatives < chosen).mean())
    assert by_name["youden"]["sensitivity_ci_low"] <= by_name["youden"]["sensitivity"] <= \
        by_name["youden"]["sensitivity_ci_high"]


def test_a_planted_subgroup_gap_is_flagged_and_noise_is_not():
    rng = np.random.default_rng(4)
    n = 1200
    manifest = pd.DataFrame({"sex": rng.choice(["F", "M"], n), "view_position": rng.choice(["AP", "PA"], n)})
    y_true = rng.integers(0, 2, size=(n, 2))
    signal = np.where((manifest["sex"] == "F").to_numpy()[:, None] & (np.arange(2) == 0), 0.05, 0.6)
    y_score = signal * y_true + rng.uniform(0, 1, size=y_true.shape)
    rows = subgroup_rows(y_true, y_score, ["weak_in_women", "fine"], manifest, np.arange(n), n_resamples=200)
    flagged = [(row["attribute"], row["group"], row["category"]) for row in flagged_gaps(rows)]
    assert flagged == [("sex", "F", "weak_in_women")]
    men = next(row for row in rows if row["group"] == "M" and row["category"] == "weak_in_women")
    assert men["gap"] > 0.05 and not men["flagged"]  # better than the rest is not a gap to flag


def test_evaluate_refuses_bad_input_in_one_line(tmp_path, capsys):
    from search.cli import main

    assert main(["evaluate", str(tmp_path / "missing.keras"), "--data", str(tmp_path)]) == 2
    assert "expected a train-final model.keras with model.json beside it" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "m.keras"), "--data", str(tmp_path), "--specificity", "0.9,1.5"]) == 2
    assert "each must be between 0 and 1" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "m.keras"), "--data", str(tmp_path), "--specificity", "high"]) == 2
    error = capsys.readouterr().err
    assert "--specificity 'high'" in error and error.count("\n") == 1


def test_built_in_study_nih_mapping_both_ways_and_mapped_labels():
    from search.errors import SearchError
    from search.evaluation.external import check_mapping, load_mapping, mapped_labels

    forward = load_mapping("study-nih")
    assert (forward["from"], forward["to"]) == ("study", "nih")
    assert forward["categories"]["cardiac_hypertrophy"] == ["Cardiomegaly"]
    assert forward["categories"]["abnormal_lung_field"] == ["Nodule", "Mass", "Fibrosis"]
    backward = load_mapping("nih-study")
    assert (backward["from"], backward["to"]) == ("nih", "study")
    assert backward["categories"]["Mass"] == ["abnormal_lung_field"]
    assert backward["categories"]["Pleural_Thickening"] == ["intercostal_pleural_thickening"]

    nih = ["Cardiomegaly", "Mass", "Nodule", "Fibrosis", "Pleural_Thickening"]
    pairs = check_mapping(forward, ["cardiac_hypertrophy", "abnormal_lung_field", "intercostal_pleural_thickening",
                                    "heart_pacemaker"], nih, model_taxonomy="study", data_taxonomy="nih")
    labels = np.array([[1, 0, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]])
    assert list(pairs) == ["cardiac_hypertrophy", "intercostal_pleural_thickening", "abnormal_lung_field"]
    np.testing.assert_array_equal(mapped_labels(labels, nih, pairs), [[1, 0, 0], [0, 0, 1], [0, 1, 0], [0, 0, 0]])
    with pytest.raises(SearchError, match="uses taxonomy 'study'"):
        check_mapping(forward, list(pairs), nih, model_taxonomy="study", data_taxonomy="study")
    with pytest.raises(SearchError, match="no such file; give a YAML mapping file or one of study-nih, nih-study"):
        load_mapping("nowhere.yaml")
