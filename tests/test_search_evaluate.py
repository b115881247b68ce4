"""`cxrtune evaluate` end to end on synthetic NIH-style data with a planted subgroup effect.

One small real model serves every test: a linear Keras classifier on 24 px images (seconds to train
on CPU), saved exactly as train-final saves a model. The data: `synth --fainter-for-sex
Effusion:F:0` renders effusions invisible in women, so the model cannot see them there; `evaluate`
must flag that gap (sex F, Effusion) and no other.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from search.cli import main

IMAGE_SIZE = 24
CATEGORIES = ["Effusion", "Emphysema", "Mass"]  # planted gap, an easy finding, a noisy one

pytestmark = pytest.mark.slow  # trains a (tiny) Keras model


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """Prepared data with folds, a trained model and one `cxrtune evaluate --temperature` run."""
    import keras

    from data.folds import assign_prepared_folds
    from data.manifest import load_prepared
    from data.pipeline import make_dataset
    from data.prepare import prepare_nih
    from data.synthetic import write_nih
    from search.final import save_final_model

    root = tmp_path_factory.mktemp("evaluate")
    write_nih(root / "nih", n_images=600, seed=5, image_size=32, prevalence="balanced", test_fraction=0.5,
              fainter_for_sex="Effusion:F:0")
    prepare_nih(root / "nih", None, root / "prepared", image_size=IMAGE_SIZE, salt="t", progress=False, workers=1)
    assign_prepared_folds(root / "prepared", n_folds=2, test_fraction=0.0, seed=0)
    prepared = load_prepared(root / "prepared")
    train = (prepared.manifest["split"] == "cv").to_numpy()
    paths = [path for path, keep in zip(prepared.image_paths(), train) if keep]
    labels = prepared.manifest.loc[train, CATEGORIES].to_numpy(np.float32)

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3)), keras.layers.AveragePooling2D(2),
                              keras.layers.Flatten(), keras.layers.Dense(len(CATEGORIES), activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="binary_crossentropy")
    dataset = make_dataset(paths, labels, image_size=IMAGE_SIZE, batch_size=32, preprocessing="caffe",
                           training=False, seed=0)
    model.fit(dataset, epochs=30, verbose=0)
    config = {"config_id": "linear0001", "backbone": "resnet50", "method": "D", "freeze": "none",
              "source_weights": "none", "image_size": IMAGE_SIZE, "epochs": 40, "batch_size": 32, "seed": 0}
    model_path = save_final_model(model, root / "model", config=config, categories=CATEGORIES,
                                  summary={"bit_depth": 8, "taxonomy": "nih"},
                                  metrics={"test_auc_Effusion": 0.8, "test_auc_Mass": 0.7}, search_name="unit")
    code = main(["evaluate", str(model_path), "--data", str(root / "prepared"), "--temperature",
                 "--bootstrap", "300", "--min-positives", "5", "--out", str(root / "evaluation")])
    assert code == 0
    return root, model_path


def test_evaluate_flags_the_planted_sex_gap_and_no_other(evaluated):
    root, _ = evaluated
    subgroups = pd.read_csv(root / "evaluation" / "subgroups.csv")
    assert set(subgroups["attribute"]) == {"sex", "age_band", "view_position"}
    flagged = subgroups[subgroups["flagged"]]
    assert [tuple(row) for row in flagged[["attribute", "group", "category"]].to_numpy()] == [("sex", "F", "Effusion")]
    gap = flagged.iloc[0]
    assert gap["gap"] < -0.05 and gap["gap_ci_high"] < 0


def test_evaluate_reports_discrimination_with_patient_intervals_and_counts(evaluated):
    from sklearn.metrics import roc_auc_score

    root, _ = evaluated
    table = pd.read_csv(root / "evaluation" / "discrimination.csv").set_index("category")
    assert list(table.index) == [*CATEGORIES, "macro"]
    manifest = pd.read_csv(root / "prepared" / "manifest.csv", dtype=str, keep_default_na=False)
    test = manifest[manifest["split"] == "test"]
    for category in CATEGORIES:
        row = table.loc[category]
        assert row["positives"] == test[category].astype(int).sum()
        assert row["auc_ci_low"] <= row["auc"] <= row["auc_ci_high"] and row["ap_ci_low"] <= row["ap"] <= row["ap_ci_high"]
    assert table.loc["Emphysema", "auc"] > 0.9  # the model learned something real
    assert table.loc["macro", "auc"] == pytest.approx(table.loc[CATEGORIES, "auc"].mean())
    metrics = json.loads((root / "evaluation" / "metrics.json").read_text())
    assert metrics["settings"]["evaluated_images"] == len(test)
    card = (root / "evaluation" / "model_card.md").read_text()
    for heading in ("## Intended use", "## Training data", "## Discrimination", "## Calibration",
                    "## Operating points", "## Subgroups", "## Limitations", "## Reproduce"):
        assert heading in card
    assert "sex F, Effusion" in card and "trained on these images" in card  # the optimistic fallback is said
    assert not any(image_id in card for image_id in manifest["image_id"])
    assert (root / "evaluation" / "reliability.png").stat().st_size > 1000


def test_thresholds_and_temperatures_travel_with_the_model_and_predict_calls(evaluated, capsys):
    root, model_path = evaluated
    sidecar = json.loads(model_path.with_suffix(".json").read_text())
    thresholds = sidecar["clinical"]["thresholds"]
    assert set(thresholds) == set(CATEGORIES)
    assert set(thresholds["Mass"]) == {"youden", "specificity_0.90", "specificity_0.95"}
    assert thresholds["Mass"]["specificity_0.95"] >= thresholds["Mass"]["specificity_0.90"]
    assert all(t > 0 for t in sidecar["clinical"]["temperatures"].values())
    points = pd.read_csv(root / "evaluation" / "operating_points.csv")
    assert len(points) == 9 and (points["sensitivity_ci_low"] <= points["sensitivity"]).all()
    calibration = pd.read_csv(root / "evaluation" / "calibration.csv")
    assert set(calibration["probabilities"]) == {"raw", "temperature"}

    images = sorted((root / "prepared" / "images").glob("*.png"))[:3]
    capsys.readouterr()
    assert main(["predict", str(model_path), *map(str, images), "--format", "csv", "--calls", "youden"]) == 0
    rows = pd.read_csv(__import__("io").StringIO(capsys.readouterr().out))
    for category in CATEGORIES:
        expected = (rows[category] >= thresholds[category]["youden"]).astype(int)
        assert rows[f"{category}_call"].tolist() == expected.tolist()
    assert main(["predict", str(model_path), str(images[0]), "--calls", "nope"]) == 2
    assert "no such saved operating point" in capsys.readouterr().err


def test_external_validation_through_a_mapping_reports_the_drop(evaluated, tmp_path, capsys):
    root, model_path = evaluated
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("from: nih\nto: nih\ncategories:\n  Effusion: [Effusion]\n  Mass: [Mass, Nodule]\n")
    assert main(["evaluate", str(model_path), "--data", str(root / "prepared"), "--mapping", str(mapping),
                 "--bootstrap", "50", "--out", str(tmp_path / "external")]) == 0
    external = pd.read_csv(tmp_path / "external" / "external.csv").set_index("category")
    assert list(external.index) == ["Effusion", "Mass"] and external.loc["Mass", "mapped_to"] == "Mass|Nodule"
    assert external.loc["Effusion", "drop"] == pytest.approx(0.8 - external.loc["Effusion", "external_auc"])
    test = pd.read_csv(root / "prepared" / "manifest.csv").query("split == 'test'")
    assert external.loc["Mass", "external_positives"] == (test[["Mass", "Nodule"]].max(axis=1)).sum()

    capsys.readouterr()
    mapping.write_text("categories:\n  Effusion: [Cardiomegaly_typo]\n")
    assert main(["evaluate", str(model_path), "--data", str(root / "prepared"), "--mapping", str(mapping)]) == 2
    error = capsys.readouterr().err
    assert "not categories of the data: Cardiomegaly_typo" in error and error.count("\n") == 1


def test_temperature_scaling_repairs_a_model_made_over_confident(evaluated, tmp_path):
    """The trained model with its logits planted 2x too large: evaluate --temperature must fit higher
    temperatures than for the original model (same validation rows), and the scaled probabilities must be
    better calibrated on the test part than the raw ones."""
    import keras

    from search.final import save_final_model

    root, model_path = evaluated
    model = keras.models.load_model(model_path, compile=False)
    dense = model.layers[-1]
    dense.set_weights([2.0 * weight for weight in dense.get_weights()])  # sigmoid(2 z): over-confident
    sidecar = json.loads(model_path.with_suffix(".json").read_text())
    over_confident = save_final_model(model, tmp_path / "model", config=sidecar["config"], categories=CATEGORIES,
                                      summary={"bit_depth": 8}, metrics={}, search_name="unit")
    assert main(["evaluate", str(over_confident), "--data", str(root / "prepared"), "--temperature",
                 "--bootstrap", "10", "--out", str(tmp_path / "evaluation")]) == 0
    temperatures = json.loads(over_confident.with_suffix(".json").read_text())["clinical"]["temperatures"]
    from search.evaluation.calibration import LOG_T_BOUNDS

    fitted = {category: original for category, original in sidecar["clinical"]["temperatures"].items()
              if original > 1.01 * np.exp(LOG_T_BOUNDS[0])}  # not a category its training rows separate perfectly
    assert fitted
    for category, original in fitted.items():
        # Higher, though not always 2x: logits beyond float32's sigmoid range (|z| > ~16) saturate to 0/1.
        assert temperatures[category] > 1.1 * original, (category, temperatures[category], original)
    calibration = pd.read_csv(tmp_path / "evaluation" / "calibration.csv").set_index(["probabilities", "category"])
    assert calibration.loc[("temperature", "macro"), "ece"] < calibration.loc[("raw", "macro"), "ece"]
    assert calibration.loc[("temperature", "macro"), "brier"] < calibration.loc[("raw", "macro"), "brier"]


def test_train_final_hook_evaluates_the_test_part_and_logs_to_the_final_run(evaluated, tmp_path):
    """What train-final does around registering: evaluate (thresholds into model.json), then metrics, files and
    the card to its run."""
    import shutil
    from types import SimpleNamespace

    from mlflow.tracking import MlflowClient

    from search.final import FinalOutcome, clinical_evaluation
    from search.final_mlflow import log_clinical_evaluation

    root, model_path = evaluated
    shutil.copytree(model_path.parent, tmp_path / "model")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    run_id = client.create_run(client.create_experiment("final")).info.run_id
    outcome = FinalOutcome({"seed": 0}, tmp_path / "model" / "model.keras", {}, run_id=run_id)
    results = SimpleNamespace(mlflow_runs={"tracking_uri": uri}, search_dir=tmp_path)
    clinical = outcome.clinical = clinical_evaluation(outcome, results, {"root": str(root / "prepared")},
                                                      n_bootstrap=20)
    assert clinical.evaluation.settings["split"] == "test"
    log_clinical_evaluation(outcome, results)
    metrics = client.get_run(run_id).data.metrics
    assert "clinical_subgroup_gaps_flagged" in metrics and "clinical_auc_macro" in metrics
    assert {"model_card.md", "evaluation"} == {a.path for a in client.list_artifacts(run_id)}
    assert "evaluation/subgroups.csv" in {a.path for a in client.list_artifacts(run_id, "evaluation")}
    logged = json.loads((tmp_path / "model" / "model.json").read_text())
    assert set(logged["clinical"]["thresholds"]) == set(CATEGORIES)
    assert clinical_evaluation(outcome, results, {}, n_bootstrap=20).startswith("clinical evaluation skipped")


def test_thresholds_come_from_given_validation_predictions(evaluated, tmp_path, capsys):
    """--val-predictions (a search's out-of-fold predictions) decides the thresholds; unknown ids are refused."""
    root, model_path = evaluated
    manifest = pd.read_csv(root / "prepared" / "manifest.csv", dtype={"image_id": str})
    cv = manifest[manifest["split"] == "cv"]
    predictions = cv[["image_id", *CATEGORIES]].astype({category: float for category in CATEGORIES})
    predictions.to_csv(tmp_path / "oof.csv", index=False)  # probability = label: perfect separation at 1.0
    assert main(["evaluate", str(model_path), "--data", str(root / "prepared"), "--val-predictions",
                 str(tmp_path / "oof.csv"), "--no-save", "--bootstrap", "10", "--out", str(tmp_path / "out")]) == 0
    body = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert {category: points["youden"] for category, points in body["thresholds"].items()} == dict.fromkeys(CATEGORIES, 1.0)
    assert body["notes"][0].startswith(f"thresholds and temperatures chosen on {len(cv)} given validation predictions")
    saved = json.loads(model_path.with_suffix(".json").read_text())["clinical"]["thresholds"]
    assert saved != body["thresholds"]  # --no-save left the model's own thresholds alone

    predictions.assign(image_id="not-an-image").to_csv(tmp_path / "bad.csv", index=False)
    capsys.readouterr()
    assert main(["evaluate", str(model_path), "--data", str(root / "prepared"), "--val-predictions",
                 str(tmp_path / "bad.csv")]) == 2
    assert "not in --data (first: not-an-image)" in capsys.readouterr().err
