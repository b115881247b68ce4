"""train-final and the study recipe end to end on synthetic data; test-set scoring against scikit-learn.

The recipe test is the CPU-sized version of the README's "Reproducing the study": synthetic hospital
DICOM -> prepare -> folds with a held-out test part -> a search over methods A and B on local Ray ->
report -> pareto -> train-final -> predict.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from search.errors import SearchError
from search.evaluation.auc import bootstrap_macro_auc, rank_auc, score_test_set
from search.final import FinalSplit, choose_config


@pytest.mark.parametrize("seed", range(5))
def test_rank_auc_equals_scikit_learn_with_ties(seed):
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 2, size=(4, 30))
    y_score = rng.integers(0, 5, size=(4, 30)) / 4.0  # few distinct values: many ties
    expected = [roc_auc_score(t, s) for t, s in zip(y_true, y_score)]
    np.testing.assert_allclose(rank_auc(y_true, y_score), expected)


@pytest.mark.parametrize("seed", range(5))
def test_weighted_auc_equals_rank_auc_on_the_resampled_images(seed):
    from search.evaluation.auc import weighted_auc

    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 2, size=40)
    y_score = rng.integers(0, 6, size=40) / 5.0  # ties
    rows = rng.integers(0, 40, size=(25, 40))
    counts = np.stack([np.bincount(row, minlength=40) for row in rows])
    np.testing.assert_allclose(weighted_auc(y_true, y_score, counts), rank_auc(y_true[rows], y_score[rows]))


def test_rank_auc_is_nan_without_both_classes():
    assert np.isnan(rank_auc(np.array([[1, 1, 1]]), np.array([[0.1, 0.2, 0.3]]))).all()


def test_score_test_set_per_class_macro_ci_and_accuracy():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 2, size=(200, 3))
    y_true[:, 2] = 0  # a category with no positive in the test part: left out, and said so
    y_score = np.clip(y_true * 0.3 + rng.uniform(0, 0.7, size=y_true.shape), 0, 1)
    metrics = score_test_set(y_true, y_score, ["a", "b", "c"], n_resamples=300, seed=1)

    assert metrics["test_auc_a"] == pytest.approx(roc_auc_score(y_true[:, 0], y_score[:, 0]))
    assert "test_auc_c" not in metrics and metrics["test_auc_labels_scored"] == 2
    assert metrics["test_auc"] == pytest.approx((metrics["test_auc_a"] + metrics["test_auc_b"]) / 2)
    assert metrics["test_auc_ci_low"] < metrics["test_auc"] < metrics["test_auc_ci_high"]
    assert metrics["test_auc_ci_high"] - metrics["test_auc_ci_low"] < 0.2  # 200 images: a narrow interval
    assert metrics["test_binary_accuracy"] == pytest.approx(((y_score >= 0.5) == y_true).mean())
    # Seeded: the same interval every time.
    assert score_test_set(y_true, y_score, ["a", "b", "c"], n_resamples=300, seed=1) == metrics
    resampled = bootstrap_macro_auc(y_true, y_score, n_resamples=50, seed=0)
    assert resampled.shape == (50,) and np.isfinite(resampled).all()
    # Chunking (for large test parts) changes nothing but memory.
    np.testing.assert_array_equal(
        bootstrap_macro_auc(y_true, y_score, n_resamples=50, seed=0, chunk_elements=len(y_true) * 7), resampled)


def test_final_split_trains_on_every_cv_row_and_validates_on_test_rows():
    class Handle:
        def load(self):
            manifest = pd.DataFrame({"split": ["cv", "cv", "test", "cv", "test"], "fold": [0, 1, -1, 2, -1]})
            return np.arange(5), np.zeros((5, 1), np.uint8), manifest, ["x"]

    _, _, manifest, _ = FinalSplit(Handle()).load()
    assert (manifest["split"] == "cv").all()
    assert manifest["fold"].tolist() == [0, 0, 1, 0, 1]


def test_choose_config_takes_the_best_complete_one_or_the_one_named():
    table = pd.DataFrame({"config_id": ["a", "b", "c"], "full_budget": [True, False, True],
                          "cv_val_auc_mean": [0.7, 0.9, 0.8]})
    assert choose_config(table, None) == "c"  # b is better but was not trained to full budget
    assert choose_config(table, "b") == "b"
    with pytest.raises(SearchError, match="'zz' is not in this search; its configs: a, b, c"):
        choose_config(table, "zz")
    with pytest.raises(SearchError, match="--config"):
        choose_config(table.assign(full_budget=False), None)


def test_cli_checks_files_and_flags_before_importing_tensorflow(tmp_path):
    """`--version`, and pretrain/predict refusing bad input in one line, in a process that never imports
    TensorFlow (it takes seconds and prints its own start-up lines)."""
    import os
    import subprocess
    import sys

    script = """
import sys
from search.cli import main
codes = [main(argv) for argv in (
    ["pretrain", "--data", "nowhere", "--backbone", "resnet50", "--source", "imagenet-I+chestxray8",
     "--weights-dir", "w"],
    ["pretrain", "--data", "nowhere", "--backbone", "resnet50", "--source", "chestxray8", "--weights-dir", "w"],
    ["predict", "nowhere/model.keras", "scan.dcm"],
)]
print("codes", codes, "tensorflow imported:", "tensorflow" in sys.modules)
"""
    env = dict(os.environ, KERAS_HOME=str(tmp_path / "keras"), PYTHONPATH=str(Path(__file__).parents[1]))
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert "codes [2, 2, 2] tensorflow imported: False" in done.stdout, done.stderr
    errors = done.stderr.splitlines()
    assert len(errors) == 3
    assert "`cxrtune weights --fetch-imagenet resnet50`" in errors[0]
    assert "--data nowhere: no such folder" in errors[1]
    assert "model.keras does not exist" in errors[2]
    version = subprocess.run([sys.executable, "-m", "search.cli", "--version"], env=env, capture_output=True,
                             text=True, timeout=120)
    assert version.stdout.startswith("cxrtune ") and "tensorflow 2." in version.stdout


# --- the study recipe, CPU-sized ---------------------------------------------------------------

def write_chestxray8_stand_in(weights_dir, image_size: int):
    """A carded `resnet50.chestxray8` source with random values: `cxrtune pretrain` makes real ones,
    in minutes; the recipe only needs a source that loads (nothing is downloaded in tests)."""
    import keras

    from trainables.backbones import get_backbone
    from trainables.weights import WeightCard, sha256_of, write_card

    weights_dir.mkdir(parents=True, exist_ok=True)
    path = weights_dir / "resnet50.chestxray8.weights.h5"
    get_backbone("resnet50").build((image_size, image_size, 3)).save_weights(path)
    write_card(weights_dir, WeightCard(
        backbone="resnet50", source="chestxray8", source_dataset="stand-in (random values)",
        initial_values="random", frozen_depth="none", epochs=0, val_auc=0.5, sha256=sha256_of(path),
        image_size=image_size, weights_file=path.name))


@pytest.fixture(scope="module")
def recipe(ray_local, tmp_path_factory):
    """A small search laid out as a user's would be: 2 configs x 2 folds, 1 epoch, 32 px.

    Methods A and B (frozen through conv4) only: they train the head and conv5, whose backward pass is
    cheap; C and D take 5-10x longer per CPU epoch and exercise nothing more here."""
    from data.folds import assign_prepared_folds
    from data.prepare import prepare_hospital
    from data.synthetic import write_hospital
    from search.settings import SearchSettings
    from search.tuner import run_search

    root = tmp_path_factory.mktemp("recipe")
    write_hospital(root / "dicom", n_images=48, seed=3, image_size=64, prevalence="balanced")
    prepare_hospital(root / "dicom", root / "dicom" / "labels.csv", root / "prepared", image_size=32,
                     salt="recipe-test", progress=False, workers=1)
    assign_prepared_folds(root / "prepared", n_folds=2, test_fraction=0.25, seed=0)
    write_chestxray8_stand_in(root / "weights", 32)
    space = {"name": "recipe", "backbone": "resnet50", "method": ["A", "B"], "freeze": "conv4",
             "source_weights": "chestxray8", "image_size": 32, "epochs": 1, "batch_size": 8,
             "learning_rate": 1.0e-3}
    # --augment off: A and B train from the frozen trunk's features, which the driver computes once per trunk
    # and hands the trials through Ray's object store (search/feature_share.py); train-final loads the full model.
    run_search(SearchSettings(name="recipe", n_folds=2, max_concurrent=2, weights_dir=str(root / "weights"),
                              augment="off"),
               data=root / "prepared", space=space, out_dir=root / "runs", progress_interval_s=600)
    return root


@pytest.mark.slow
def test_recipe_report_pareto_train_final_predict(recipe, capsys):
    from mlflow.tracking import MlflowClient

    from search.cli import main

    runs_dir, search_dir = recipe / "runs", recipe / "runs" / "recipe"
    trials = pd.read_csv(search_dir / "trials.csv", dtype={"config_id": str})
    assert (trials["feature_cache_object_store"] == 1.0).all()  # each trial read the driver's one pass
    assert main(["report", "recipe", "--out", str(runs_dir)]) == 0
    report = (search_dir / "report" / "report.md").read_text()
    assert "## resnet50: validation AUC" in report
    assert "| source weights | A | B conv4 |" in report and "| chestxray8 | 0." in report
    cells = pd.read_csv(search_dir / "report" / "study_tables.csv", dtype={"config_id": str})
    assert sorted(cells["method"].unique()) == ["A", "B conv4"]
    assert cells["mean"].notna().all()

    assert main(["pareto", "recipe", "--out", str(runs_dir),
                 "--objectives", "cv_val_auc_mean:max,trainable_params:min"]) == 0
    front = pd.read_csv(search_dir / "pareto.csv", dtype={"config_id": str})
    assert len(front) == 2
    # Method A trains only the head: the fewest parameters, so it is on the front whatever its AUC.
    assert front.loc[front["method"] == "A", "on_front"].item()

    model_dir = recipe / "final"
    assert main(["train-final", "recipe", "--out", str(runs_dir), "--bootstrap", "200",
                 "--to", str(model_dir)]) == 0
    printed = capsys.readouterr().out
    assert "test: macro AUC" in printed and "95% bootstrap CI" in printed
    sidecar = json.loads((model_dir / "model.json").read_text())
    best = pd.read_csv(search_dir / "report" / "fold_table.csv", dtype={"config_id": str}).iloc[0]
    assert sidecar["config"]["config_id"] == best["config_id"]
    assert sidecar["image_size"] == 32 and sidecar["preprocessing"] == "caffe"
    assert len(sidecar["categories"]) >= 2
    metrics = sidecar["test_metrics"]
    assert metrics["test_auc_ci_low"] <= metrics["test_auc"] <= metrics["test_auc_ci_high"]
    manifest = pd.read_csv(recipe / "prepared" / "manifest.csv")
    assert metrics["test_images"] == (manifest["split"] == "test").sum()

    runs = json.loads((search_dir / "mlflow_runs.json").read_text())
    client = MlflowClient(tracking_uri=runs["tracking_uri"])
    version = client.get_model_version("cxrtune-recipe", "1")
    run = client.get_run(version.run_id)
    assert run.data.tags["mlflow.parentRunId"] == runs["parent_run_id"]
    assert run.data.metrics["test_auc"] == pytest.approx(metrics["test_auc"])
    # The clinical evaluation (issue 16) ran on the test part and went to the same run, thresholds into model.json.
    assert "clinical_subgroup_gaps_flagged" in run.data.metrics and set(sidecar["clinical"]["thresholds"]) <= set(sidecar["categories"])
    assert "## Subgroups" in (model_dir / "evaluation" / "model_card.md").read_text()
    assert {"model_card.md", "evaluation"} <= {a.path for a in client.list_artifacts(version.run_id)}
    model_files = {a.path for a in client.list_artifacts(version.run_id, "model")}
    assert {"model/MLmodel", "model/artifacts", "model/input_example.json"} <= model_files
    assert run.info.run_name.startswith("final resnet50 ")

    # The registered model is an MLflow model: pyfunc loads it by name and predicts on DICOM files,
    # preprocessing included, with the signature's columns.
    import mlflow.pyfunc

    dicom_files = sorted((recipe / "dicom").rglob("*.dcm"))[:2]
    mlflow.set_tracking_uri(runs["tracking_uri"])
    try:
        served = mlflow.pyfunc.load_model("models:/cxrtune-recipe/1")
    finally:
        mlflow.set_tracking_uri(None)
    assert [c.name for c in served.metadata.get_input_schema().inputs] == ["image"]
    answer = served.predict(pd.DataFrame({"image": [str(p) for p in dicom_files] + ["missing.dcm"]}))
    assert list(answer.columns) == sidecar["categories"] + ["error"]
    assert (answer["error"][:2] == "").all() and answer["error"][2] != ""
    assert answer.iloc[:2][sidecar["categories"]].apply(lambda v: v.between(0, 1)).all().all()
    import base64

    as_bytes = base64.b64encode(dicom_files[0].read_bytes()).decode("ascii")  # what a REST client sends
    np.testing.assert_allclose(served.predict(pd.DataFrame({"image": [as_bytes]}))[sidecar["categories"]],
                               answer.iloc[:1][sidecar["categories"]], rtol=1e-5)
    parent_artifacts = {a.path for a in client.list_artifacts(runs["parent_run_id"])}
    assert {"report", "pareto"} <= parent_artifacts

    assert main(["predict", str(model_dir / "model.keras"), *map(str, dicom_files), "--format", "csv"]) == 0
    predictions = pd.read_csv(__import__("io").StringIO(capsys.readouterr().out))
    assert len(predictions) == 2 and list(predictions.columns[2:]) == sidecar["categories"]
    values = predictions[sidecar["categories"]].to_numpy()
    assert ((values >= 0) & (values <= 1)).all()


@pytest.mark.slow
def test_train_final_refuses_what_it_cannot_do_in_one_line(recipe, tmp_path, capsys):
    import shutil

    from search.cli import main

    runs_dir = recipe / "runs"
    assert main(["train-final", "recipe", "--out", str(runs_dir), "--config", "ffffffffff"]) == 2
    assert "'ffffffffff' is not in this search; its configs:" in capsys.readouterr().err

    no_test = tmp_path / "prepared-no-test"
    shutil.copytree(recipe / "prepared", no_test)
    manifest = pd.read_csv(no_test / "manifest.csv", dtype=str, keep_default_na=False)
    manifest["split"], manifest["fold"] = "cv", "0"
    manifest.to_csv(no_test / "manifest.csv", index=False)
    assert main(["train-final", "recipe", "--out", str(runs_dir), "--data", str(no_test)]) == 2
    error = capsys.readouterr().err
    assert "has no test rows" in error and error.count("\n") == 1


@pytest.mark.slow
def test_report_test_scores_each_fold_model_and_trials_saved_out_of_fold_predictions(recipe, capsys):
    """`report --test` on the recipe: the study-layout test table matches a direct evaluation of the fold
    checkpoints; each fold trial saved its validation predictions; the front carries intervals."""
    from mlflow.tracking import MlflowClient
    from sklearn.metrics import roc_auc_score

    from search.cli import main
    from search.heldout import _test_rows, fold_model_predictions
    from search.final import _search_data
    from search.results import fold_checkpoint, load_oof_predictions, load_search

    runs_dir, search_dir = recipe / "runs", recipe / "runs" / "recipe"
    assert main(["report", "recipe", "--out", str(runs_dir), "--test"]) == 0
    printed = capsys.readouterr().out
    assert "## resnet50: test AUC" in printed and "selection, fronts and train-final use the validation" in printed
    cells = pd.read_csv(search_dir / "report" / "test_table.csv", dtype={"config_id": str})
    assert sorted(cells["method"].unique()) == ["A", "B conv4"] and (cells["n_fold_models"] == 2).all()
    per_fold = pd.read_csv(search_dir / "report" / "test_folds.csv", dtype={"config_id": str})

    # Directly: one fold checkpoint, rebuilt and scored with scikit-learn by hand.
    results = load_search(search_dir)
    config_id = str(cells["config_id"].iloc[0])
    test_x, test_y, categories = _test_rows(_search_data(results)[0])
    scores = fold_model_predictions(dict(results.config(config_id), fold=1), fold_checkpoint(results, config_id, 1),
                                    test_x, test_y, len(categories))
    aucs = [roc_auc_score(test_y[:, k], scores[:, k]) for k in range(len(categories)) if 0 < test_y[:, k].sum() < len(test_y)]
    row = per_fold[(per_fold["config_id"] == config_id) & (per_fold["fold"] == 1)].iloc[0]
    assert row["test_auc"] == pytest.approx(np.mean(aucs)) and row["test_images"] == len(test_y)
    assert row["test_binary_accuracy"] == pytest.approx(((scores >= 0.5) == (test_y >= 0.5)).mean())
    folds = per_fold[per_fold["config_id"] == config_id]["test_auc"]
    cell = cells[(cells["config_id"] == config_id) & (cells["metric"] == "test_auc")].iloc[0]
    assert (cell["mean"], cell["std"]) == (pytest.approx(folds.mean()), pytest.approx(folds.std(ddof=1)))
    runs = json.loads((search_dir / "mlflow_runs.json").read_text())
    logged = {a.path for a in MlflowClient(runs["tracking_uri"]).list_artifacts(runs["parent_run_id"], "report")}
    assert "report/test_table.csv" in logged
    fold_run = runs["trials"][f"{config_id}/1"]
    assert [a.path for a in MlflowClient(runs["tracking_uri"]).list_artifacts(fold_run, "predictions")] == [
        "predictions/val_predictions.npz"]

    # Out-of-fold predictions: every cv image once, from the model that did not train on it.
    oof = load_oof_predictions(search_dir, config_id)
    manifest = pd.read_csv(recipe / "prepared" / "manifest.csv", dtype={"image_id": str})
    cv = manifest[manifest["split"] == "cv"]
    assert sorted(oof.image_id) == sorted(cv["image_id"])
    assert dict(zip(oof.image_id, oof.fold)) == dict(zip(cv["image_id"], cv["fold"].astype(int)))
    assert (oof.epoch == 1).all() and oof.probability.shape == (len(cv), len(categories))
    assert main(["pareto", "recipe", "--out", str(runs_dir), "--bootstrap", "200"]) == 0
    front = pd.read_csv(search_dir / "pareto.csv", dtype={"config_id": str})
    assert (front["auc_ci_low"] <= front["oof_auc"]).all() and (front["oof_auc"] <= front["auc_ci_high"]).all()
    assert front["p_vs_best"].between(0, 1).all() and front.loc[front["on_front"], "tie_group"].min() == 1


def test_the_model_card_names_the_category_prepare_dropped(tmp_path):
    import keras

    from search.final import save_final_model

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    summary = {"bit_depth": 8, "taxonomy": "study", "least_class_dropped": "heart_pacemaker_placement",
               "dropped_categories": {"heart_pacemaker_placement": 7}}
    path = save_final_model(model, tmp_path, config={"backbone": "resnet50", "image_size": 32}, categories=["a", "b"],
                            summary=summary, metrics={"test_auc": 0.5}, search_name="unit")
    card = json.loads(path.with_name("model.json").read_text())
    assert card["least_class_dropped"] == "heart_pacemaker_placement"
    assert card["dropped_categories"] == {"heart_pacemaker_placement": 7}
