"""Out-of-fold uncertainty: the patient bootstrap and the paired test against hand computations."""
from __future__ import annotations

import numpy as np
import pytest

from search.evaluation.auc import (macro_auc, paired_bootstrap_test, patient_bootstrap_interval,
                                   patient_resample_counts, resampled_macro_auc)

# Two patients, each with one positive and one negative image (one category).
# Config a: patient A ranks right (pos 0.9 > neg 0.1), patient B wrong (pos 0.4 < neg 0.6).
# Config b: the opposite scores. By hand, the patient resamples {A,A}, {A,B}/{B,A}, {B,B} (prob. 1/4, 1/2, 1/4):
#   a: AUC 1, 0.75, 0        (for {A,B}: 0.9 beats 0.1 and 0.6, 0.4 beats 0.1 only: 3 of 4 pairs)
#   b: AUC 0, 0.25, 1
#   a - b: 1, 0.5, -1        on all the images: 0.75 - 0.25 = 0.5; P(delta <= 0) = 1/4, so p = 2 x 1/4 = 0.5
LABELS = np.array([[1], [0], [1], [0]])
PATIENTS = np.array(["A", "A", "B", "B"])
SCORE_A = np.array([[0.9], [0.1], [0.4], [0.6]])
SCORE_B = np.array([[0.1], [0.9], [0.6], [0.4]])


def test_patient_resampling_draws_whole_patients():
    counts = np.concatenate(list(patient_resample_counts(PATIENTS, 400, np.random.default_rng(0), chunk_elements=100)))
    assert counts.shape == (400, 4)
    assert (counts[:, 0] == counts[:, 1]).all() and (counts[:, 2] == counts[:, 3]).all()
    assert (counts[:, 0] + counts[:, 2] == 2).all()  # two patients drawn per resample
    assert np.mean(counts[:, 0] == 1) == pytest.approx(0.5, abs=0.08)


def test_resampled_auc_equals_scikit_learn_with_the_counts_as_weights():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 2, size=(30, 2))
    y_score = rng.integers(0, 5, size=(30, 2)) / 4.0  # ties
    counts = rng.integers(0, 3, size=(5, 30))
    expected = [np.mean([roc_auc_score(y_true[:, k], y_score[:, k], sample_weight=row) for k in range(2)])
                for row in counts]
    np.testing.assert_allclose(resampled_macro_auc(y_true, y_score, counts), expected)


def test_patient_bootstrap_distribution_and_interval_by_hand():
    counts = next(patient_resample_counts(PATIENTS, 4000, np.random.default_rng(0)))
    values = resampled_macro_auc(LABELS, SCORE_A, counts)
    for value, share in ((1.0, 0.25), (0.75, 0.5), (0.0, 0.25)):
        assert np.mean(values == value) == pytest.approx(share, abs=0.03)
    assert macro_auc(LABELS, SCORE_A) == pytest.approx(0.75)  # all four images: the {A,B} resample
    assert patient_bootstrap_interval(LABELS, SCORE_A, PATIENTS, n_resamples=4000) == (0.0, 1.0)


def test_paired_bootstrap_by_hand():
    delta, p_value = paired_bootstrap_test(LABELS, SCORE_A, SCORE_B, PATIENTS, n_resamples=4000)
    assert macro_auc(LABELS, SCORE_B) == pytest.approx(0.25)
    assert delta == pytest.approx(0.5)
    assert p_value == pytest.approx(0.5, abs=0.05)
    same, p_same = paired_bootstrap_test(LABELS, SCORE_A, SCORE_A, PATIENTS, n_resamples=200)
    assert same == 0.0 and p_same == 1.0


def write_predictions_for(search_dir, scores_by_config, labels, image_ids):
    """val_predictions.npz in each fold trial's checkpoint folder, as a real search leaves them."""
    import pandas as pd

    from trainables.predictions import write_predictions

    trials = pd.read_csv(search_dir / "trials.csv", dtype={"config_id": str})
    for row in trials.itertuples():
        rows = np.arange(len(image_ids)) % 2 == row.fold  # two folds: even images fold 0, odd fold 1
        folder = search_dir / "tune" / f"{row.config_id}-fold{row.fold}_{row.trial_id}" / "checkpoint_000001"
        folder.mkdir(parents=True)
        write_predictions(folder, image_ids=image_ids[rows], categories=["c1", "c2"],
                          probabilities=scores_by_config[row.config_id][rows], labels=labels[rows], epoch=2)


def test_pareto_gets_intervals_p_values_and_tie_groups_from_saved_predictions(tmp_path, capsys):
    import pandas as pd

    from search.cli import main
    from search.results import load_oof_predictions
    from test_search_report import CONFIGS, write_search

    search_dir = write_search(tmp_path, with_mlflow=False)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=(120, 2))
    image_ids = np.array([f"img{i:03d}" for i in range(120)])
    good = labels + rng.normal(0, 0.6, labels.shape)
    scores = {config_id: 1 / (1 + np.exp(-good)) for config_id, *_ in CONFIGS}
    scores["b000000002"] = rng.uniform(size=labels.shape)  # chance: clearly worse than the best
    write_predictions_for(search_dir, scores, labels, image_ids)

    oof = load_oof_predictions(search_dir, "a000000001")
    assert sorted(oof.image_id) == sorted(image_ids) and oof.probability.dtype == np.float32
    assert main(["pareto", "study", "--out", str(tmp_path), "--bootstrap", "200"]) == 0
    front = pd.read_csv(search_dir / "pareto.csv", dtype={"config_id": str}).set_index("config_id")
    assert sorted(front.index[front["on_front"]]) == ["a000000001", "d000000004"]
    assert (front["auc_ci_low"] < front["oof_auc"]).all() and (front["oof_auc"] < front["auc_ci_high"]).all()
    # A predicts exactly what D does (float16 on disk): tied with the better-AUC front point, in its group.
    assert front.loc["a000000001", "p_vs_best"] == 1.0 and front.loc["a000000001", "tie_group"] == 1
    assert front.loc["a000000001", "tied_with_better"] != front.loc["d000000004", "tied_with_better"]
    assert front.loc["b000000002", "p_vs_best"] < 0.05 and np.isnan(front.loc["b000000002", "tie_group"])
    assert "paired patient bootstrap" in capsys.readouterr().out
