"""`train-final`'s MLflow run: params, test metrics, the model as a pyfunc artifact, the registered version,
and the clinical evaluation's figures and files.

One run under the search's parent run (`cxrtune.kind=final`), written by the driver only; nothing is
logged when the search has no tracking store.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # final.py calls this module: no import back at run time
    from search.final import FinalOutcome


def log_and_register(outcome: FinalOutcome, results, registered_name: str, *, n_train: int) -> None:
    """One MLflow run under the search's parent run: params, test metrics, the model files; registered."""
    runs = results.mlflow_runs
    if not runs.get("tracking_uri") or not runs.get("experiment_id"):
        return
    from mlflow.entities import Metric, Param
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=runs["tracking_uri"])
    from search.report import config_label

    tags = {"mlflow.runName": f"final {config_label(outcome.config)}", "cxrtune.kind": "final",
            "cxrtune.config_id": outcome.config["config_id"]}
    if runs.get("parent_run_id"):
        tags["mlflow.parentRunId"] = runs["parent_run_id"]
    run_id = client.create_run(str(runs["experiment_id"]), tags=tags).info.run_id
    params = dict(outcome.config, n_train_images=n_train)
    metrics = [Metric(key, float(value), 0, 0) for key, value in outcome.metrics.items() if np.isfinite(value)]
    for row in outcome.history:
        step = int(row.get("epoch", 0))
        metrics += [Metric(key, float(row[key]), 0, step) for key in ("train_loss", "epoch_time_s") if key in row]
    client.log_batch(run_id, metrics=metrics, params=[Param(key, str(value)) for key, value in params.items()])
    _log_pyfunc_model(client, run_id, outcome)
    try:
        client.get_registered_model(registered_name)
    except MlflowException:
        client.create_registered_model(registered_name, description="cxrtune train-final models")
    version = client.create_model_version(
        registered_name, source=f"runs:/{run_id}/model", run_id=run_id,
        description=f"config {outcome.config['config_id']}, test macro AUC {outcome.metrics['test_auc']:.3f}",
    )
    client.set_terminated(run_id)
    outcome.run_id, outcome.registered = run_id, f"{registered_name} version {version.version}"


def log_clinical_evaluation(outcome: FinalOutcome, results) -> None:
    """The evaluation's figures, files and model card to the final MLflow run (model.json, thresholds and
    temperatures included, already travels inside the registered model)."""
    if not outcome.run_id or outcome.clinical is None or isinstance(outcome.clinical, str):
        return
    from search.evaluation.figures import log_evaluation

    clinical = outcome.clinical
    log_evaluation(results.mlflow_runs["tracking_uri"], outcome.run_id, clinical.evaluation, clinical.paths,
                   clinical.model_card)


def _log_pyfunc_model(client, run_id: str, outcome: FinalOutcome) -> None:
    """The run's `model/` artifact: an MLflow pyfunc model (MLmodel, signature, input example) wrapping
    model.keras + model.json, so `mlflow.pyfunc.load_model("models:/NAME/N")` and `mlflow models serve`
    work (search/mlflow_model.py)."""
    from search.mlflow_model import save_pyfunc

    sidecar = json.loads(outcome.sidecar_path.read_text())
    with tempfile.TemporaryDirectory(prefix="cxrtune-mlflow-model-") as scratch:
        final_model = Path(scratch) / "final_model"  # exactly the two files predict needs
        final_model.mkdir()
        for path in (outcome.model_path, outcome.sidecar_path):
            shutil.copy2(path, final_model / path.name)
        saved = save_pyfunc(final_model, Path(scratch) / "model", categories=list(sidecar["categories"]),
                            image_size=int(sidecar["image_size"]))
        client.log_artifacts(run_id, str(saved), artifact_path="model")
