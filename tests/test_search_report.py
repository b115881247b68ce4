"""`cxrtune report` and `cxrtune pareto` on a search folder laid out as ARCHITECTURE.md section 7."""
from __future__ import annotations

import json
import itertools

import numpy as np
import pandas as pd
import pytest

from search.cli import main
from search.report import study_cells, study_table
from search.results import load_search

CATEGORIES = ("cardiac_hypertrophy", "heart_pacemaker")
CONFIGS = [  # (config_id, method, freeze, source_weights, trainable_params)
    ("a000000001", "A", "all", "imagenet", 2_049.0),
    ("b000000002", "B", "conv3", "imagenet", 23_500_000.0),
    ("c000000003", "C", "none", "chestxray8", 23_500_000.0),
    ("d000000004", "D", "none", "none", 23_500_000.0),
]


def write_search(root, name="study", *, n_folds=2, with_mlflow=True, missing_fold_for=None, stopped_for=None):
    """A search folder with trials.csv, search.json and (optionally) a real sqlite MLflow parent run."""
    search_dir = root / name
    search_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for (config_id, method, freeze, weights, params), fold in itertools.product(CONFIGS, range(n_folds)):
        if config_id == missing_fold_for and fold == n_folds - 1:
            continue
        row = {"config_id": config_id, "backbone": "resnet50", "method": method, "freeze": freeze,
               "source_weights": weights, "image_size": 32, "epochs": 2, "batch_size": 8,
               "learning_rate": 1e-4, "dropout": 0.5, "frozen_bn": "inference", "seed": 0, "fold": fold,
               "trial_id": f"t{len(rows)}", "status": "TERMINATED", "stop_reason": "completed",
               "epochs_done": 2, "val_auc": 0.6 + 0.1 * CONFIGS.index(
                   next(c for c in CONFIGS if c[0] == config_id)) + 0.01 * fold,
               "val_binary_accuracy": rng.uniform(0.7, 0.9), "val_loss": rng.uniform(0.2, 0.5),
               "train_loss": 0.4, "epoch_time_s": 3.0, "trainable_params": params, "total_params": 23.6e6,
               "steady_epoch_time_s": 1.0 + params / 1e7, "gpus": 0.0, "cpus": 1.0}
        if config_id == stopped_for:  # cut by the scheduler after its first (traced) epoch
            row.update(epochs_done=1, stop_reason="stopped at rung 1", steady_epoch_time_s=np.nan, epoch_time_s=52.7)
        for category in CATEGORIES:
            row[f"val_auc_{category}"] = rng.uniform(0.5, 1.0)
        rows.append(row)
    pd.DataFrame(rows).to_csv(search_dir / "trials.csv", index=False)
    (search_dir / "search.json").write_text(json.dumps({"name": name, "folds": {"n_folds": n_folds}}))
    if with_mlflow:
        from mlflow.tracking import MlflowClient

        tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
        client = MlflowClient(tracking_uri=tracking_uri)
        experiment_id = client.create_experiment(name, artifact_location=(root / "artifacts").as_uri())
        parent = client.create_run(experiment_id, run_name=name)
        (search_dir / "mlflow_runs.json").write_text(json.dumps({
            "tracking_uri": tracking_uri, "experiment_id": experiment_id,
            "parent_run_id": parent.info.run_id, "configs": {}, "trials": {}}))
    return search_dir


def logged_artifacts(search_dir, folder):
    from mlflow.tracking import MlflowClient

    runs = json.loads((search_dir / "mlflow_runs.json").read_text())
    client = MlflowClient(tracking_uri=runs["tracking_uri"])
    return sorted(item.path for item in client.list_artifacts(runs["parent_run_id"], folder))


def test_study_layout_tables_place_each_config_in_its_cell(tmp_path):
    results = load_search(write_search(tmp_path, with_mlflow=False))
    cells = study_cells(results.table)
    auc = study_table(cells, "resnet50", "val_auc")

    assert list(auc.index) == ["imagenet", "chestxray8", "none"]
    assert list(auc.columns) == ["A", "B conv3", "C", "D"]
    # A on imagenet: folds 0.60 and 0.61 -> mean 0.605, sample std 0.00707.
    assert auc.loc["imagenet", "A"] == "0.605 ± 0.007"
    assert auc.loc["none", "D"] == "0.905 ± 0.007"
    assert auc.loc["none", "A"] == ""  # no such config
    assert results.categories == list(CATEGORIES)


def test_report_command_writes_markdown_and_csv_and_logs_them(tmp_path, capsys):
    search_dir = write_search(tmp_path)

    assert main(["report", "study", "--out", str(tmp_path)]) == 0

    printed = capsys.readouterr().out
    assert "## resnet50: validation AUC" in printed and "## resnet50: validation binary accuracy" in printed
    assert "| imagenet | 0.605 ± 0.007 |" in printed
    assert "## Per-class validation AUC" in printed and "heart_pacemaker" in printed
    report_dir = search_dir / "report"
    cells = pd.read_csv(report_dir / "study_tables.csv", dtype={"config_id": str})
    assert set(cells["metric"]) == {"val_auc", "val_binary_accuracy"} and len(cells) == 2 * len(CONFIGS)
    per_class = pd.read_csv(report_dir / "per_class_auc.csv")
    assert list(per_class.columns) == ["config", "config_id", "macro", *CATEGORIES]
    assert logged_artifacts(search_dir, "report") == [
        "report/fold_table.csv", "report/per_class_auc.csv", "report/report.md", "report/study_tables.csv"]


def test_incomplete_configs_are_marked_in_the_report(tmp_path):
    results = load_search(write_search(tmp_path, with_mlflow=False, missing_fold_for="b000000002"))
    auc = study_table(study_cells(results.table), "resnet50", "val_auc")
    assert auc.loc["imagenet", "B conv3"].endswith("† (folds ended: 1/2)")
    assert "†" not in auc.loc["imagenet", "A"]


def test_pareto_command_exports_complete_configs_and_logs_them(tmp_path, capsys):
    search_dir = write_search(tmp_path, missing_fold_for="c000000003")

    assert main(["pareto", "study", "--out", str(tmp_path),
                 "--objectives", "cv_val_auc_mean:max,trainable_params:min"]) == 0

    front = pd.read_csv(search_dir / "pareto.csv", dtype={"config_id": str})
    # C lacks a fold: left out by default. D (best AUC) and A (fewest params) are the front.
    assert sorted(front["config_id"]) == ["a000000001", "b000000002", "d000000004"]
    assert sorted(front.loc[front["on_front"], "config_id"]) == ["a000000001", "d000000004"]
    assert json.loads((search_dir / "pareto.json").read_text())["n_on_front"] == 2
    assert (search_dir / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "Pareto front of the full-budget configs (cv_val_auc_mean:max,trainable_params:min): 2 of 3" in printed
    assert "no out-of-fold predictions saved" in printed
    folder = "pareto/cv_val_auc_mean-max_trainable_params-min"
    assert logged_artifacts(search_dir, folder) == [f"{folder}/pareto.csv", f"{folder}/pareto.json",
                                                    f"{folder}/pareto.png"]

    assert main(["pareto", "study", "--out", str(tmp_path), "--all-configs",
                 "--objectives", "cv_val_auc_mean:max,steady_epoch_time_s:min"]) == 0
    everything = pd.read_csv(search_dir / "pareto.csv", dtype={"config_id": str}).set_index("config_id")
    assert len(everything) == len(CONFIGS)
    assert not everything.loc["c000000003", "on_front"]
    assert everything.loc["c000000003", "fidelity"] == "folds ended: 1/2"


def test_a_stopped_config_is_never_on_the_default_front_and_is_marked_with_all_configs(tmp_path, capsys):
    # D has the best AUC: counted at its 1 epoch it would be on the front.
    search_dir = write_search(tmp_path, with_mlflow=False, stopped_for="d000000004")
    assert main(["pareto", "study", "--out", str(tmp_path)]) == 0
    front = pd.read_csv(search_dir / "pareto.csv", dtype={"config_id": str})
    assert "d000000004" not in set(front["config_id"])
    assert sorted(front.loc[front["on_front"], "config_id"]) == ["a000000001", "c000000003"]
    assert json.loads((search_dir / "pareto.json").read_text())["front_of"].startswith("full-budget")

    assert main(["pareto", "study", "--out", str(tmp_path), "--all-configs"]) == 0
    marked = pd.read_csv(search_dir / "pareto.csv", dtype={"config_id": str}).set_index("config_id")
    assert not marked.loc["d000000004", "on_front"]
    assert marked.loc["d000000004", "fidelity"] == "stopped: epoch 1 of 2"
    assert sorted(marked.index[marked["on_front"]]) == ["a000000001", "c000000003"]
    capsys.readouterr()

    assert main(["report", "study", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "random init" not in printed and "1 config(s) the scheduler stopped early are left out" in printed
    assert main(["report", "study", "--out", str(tmp_path), "--all-configs"]) == 0
    printed = capsys.readouterr().out
    assert "| none | " in printed and "† (stopped: epoch 1 of 2)" in printed
    # Its one epoch's time (graph tracing included) is never shown as a steady cost.
    from search.report import summary_lines

    line = next(l for l in summary_lines(load_search(search_dir).table) if l.startswith("resnet50 D"))
    assert "52.7*" in line and " 1†" in line


@pytest.mark.parametrize("argv, message", [
    (["pareto", "study", "--objectives", "cv_val_auc_mean:max,params:min"],
     "unknown objective column(s) params; available: "),
    (["pareto", "study", "--objectives", "cv_val_auc_mean"], "is not COLUMN:max or COLUMN:min"),
    (["pareto", "nosuch"], "no search 'nosuch'"),
    (["report", "nosuch"], "searches in"),
    (["report", "running"], "no trial of search 'running' has finished with a val_auc yet"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    write_search(tmp_path, with_mlflow=False)
    running = write_search(tmp_path, "running", with_mlflow=False)
    trials = pd.read_csv(running / "trials.csv")
    trials.assign(status="RUNNING").to_csv(running / "trials.csv", index=False)
    assert main([*argv, "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    if "unknown objective" in message:
        assert "trainable_params" in error and "total_gpu_seconds" in error


def test_terminal_summary_of_the_fold_table(tmp_path):
    from search.report import summary_lines

    search_dir = write_search(tmp_path, with_mlflow=False)
    lines = summary_lines(load_search(search_dir).table)
    assert lines[0].split()[:4] == ["config", "folds", "epochs", "val"]
    assert lines[1].startswith("resnet50 D random init") and "2/2" in lines[1] and "0.905 ± 0.007" in lines[1]
    assert len(lines) == 1 + len(CONFIGS)


def test_two_backbones_get_their_own_tables_in_the_study_order(tmp_path):
    from search.report import write_report

    search_dir = write_search(tmp_path, with_mlflow=False)
    trials = pd.read_csv(search_dir / "trials.csv", dtype={"config_id": str})
    densenet = trials.assign(backbone="densenet121", config_id="e" + trials["config_id"].str[1:])
    pd.concat([densenet, trials]).to_csv(search_dir / "trials.csv", index=False)

    report = (write_report(load_search(search_dir), tmp_path / "out")["markdown"]).read_text()
    titles = [line for line in report.splitlines() if line.startswith("## ")]
    assert titles == ["## resnet50: validation binary accuracy", "## resnet50: validation AUC",
                      "## densenet121: validation binary accuracy", "## densenet121: validation AUC",
                      "## Per-class validation AUC"]
    assert "| densenet121 D random init |" in report
