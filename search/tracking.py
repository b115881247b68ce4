"""MLflow logging of a search from the driver: one writer, run ids kept in mlflow_runs.json.

Run tree (one experiment per search, tagged as a model-training experiment so the UI opens on its runs):
parent run named after the search (its settings; at the end the best config, counts and the result files)
> one run per config, named in words (`resnet50 B conv4 imagenet`), with the mean over its finished folds
under the fold runs' own keys (`val_auc`, `val_auc_std`, ...; one step, updated as folds finish)
> one run per fold trial (`... fold 2`: per-epoch metrics with step = epoch, params = flat config + fold,
stop reason, failures as tags). Bookkeeping (`epoch`, `gpus`, `traced`) goes to tags, and a figure that does
not apply (GPU-seconds on a CPU trial) is left out rather than logged as 0.
A resumed search reads mlflow_runs.json and reuses every run in it, and skips epochs a run already has, so
an interrupted search never duplicates runs or steps.
Only configs, folds and metrics are logged: nothing from the manifest, so nothing that identifies a patient.
This module opens the experiment and keeps the run ids; the Tune callback that logs trials is
search/tracking_callback.py.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from search.errors import SearchError

RUNS_FILE = "mlflow_runs.json"
TRIAL_KEY_TAG = "cxrtune.trial_key"
CONFIG_ID_TAG = "cxrtune.config_id"
PARENT_TAG = "mlflow.parentRunId"
NOTE_TAG = "mlflow.note.content"  # the run's or experiment's description in the MLflow UI (Markdown)
# What MLflow 3's UI reads to choose an experiment's view: without it a new experiment may open on the
# GenAI overview (traces, tokens) instead of the runs table. The UI's own "Machine learning" choice.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
# Reported every epoch but not measurements of the model: tags, not metric columns.
BOOKKEEPING_KEYS = ("epoch", "gpus", "traced")
# Per-fold cost figures a config run shows as a mean over folds (no std: they are not results).
COST_MEAN_KEYS = ("steady_epoch_time_s", "gpu_seconds_per_epoch", "trainable_params", "total_params")


SQLITE_PREFIX = "sqlite:///"  # followed by an absolute path: sqlite:////abs/mlflow.db


def absolute_tracking_uri(tracking_uri: str | None, out_dir: Path | None = None) -> str | None:
    """The one place tracking URIs are built and resolved (search, pretrain, demo).

    None: sqlite in OUT/mlflow.db (None without `out_dir`: nothing is tracked); a relative sqlite path is made
    absolute now, since Ray trials and MLflow read it against other folders; another URI is kept as given;
    a bare path raises SearchError naming --tracking-uri."""
    if not tracking_uri:
        return None if out_dir is None else f"{SQLITE_PREFIX}{Path(out_dir).resolve() / 'mlflow.db'}"
    if tracking_uri.startswith(SQLITE_PREFIX) and not tracking_uri.startswith(SQLITE_PREFIX + "/"):
        return f"{SQLITE_PREFIX}{Path(tracking_uri[len(SQLITE_PREFIX):]).resolve()}"
    if "://" not in tracking_uri:
        raise SearchError(f"--tracking-uri {tracking_uri!r} is not a URI: give sqlite:////ABS/PATH/mlflow.db "
                          "or http://HOST:PORT of an `mlflow server`")
    return tracking_uri


def artifact_location(tracking_uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: beside an sqlite store (`<db folder>/mlartifacts`); a
    server chooses its own (None).

    Without it MLflow puts an sqlite store's artifacts in `./mlruns` of whatever folder the process
    happens to run in."""
    uri = absolute_tracking_uri(tracking_uri)
    if not uri.startswith(SQLITE_PREFIX):
        return None
    return (Path(uri[len(SQLITE_PREFIX):]).resolve().parent / "mlartifacts").as_uri()


def read_runs(search_dir: Path) -> dict | None:
    path = Path(search_dir) / RUNS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def write_runs(search_dir: Path, runs: dict) -> None:
    """Atomic write: a killed driver leaves either the old or the new file, never half of one."""
    path = Path(search_dir) / RUNS_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(runs, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _params(values: dict[str, Any]):
    from mlflow.entities import Param

    return [Param(str(k), str(v)[:500]) for k, v in values.items()]


def _tags(values: dict[str, Any]):
    from mlflow.entities import RunTag

    return [RunTag(str(k), str(v)) for k, v in values.items()]


def config_run_names(configs) -> dict[str, str]:
    """{config_id: `resnet50 B conv4 imagenet`}; configs that would share a name get their short id too."""
    from search.report import config_label

    labels = {str(c["config_id"]): config_label(c) for c in configs}
    counts: dict[str, int] = {}
    for label in labels.values():
        counts[label] = counts.get(label, 0) + 1
    return {cid: label if counts[label] == 1 else f"{label} {cid[:6]}" for cid, label in labels.items()}


def _metrics(values: dict[str, float], step: int):
    from mlflow.entities import Metric

    now = int(time.time() * 1000)  # MLflow timestamps are milliseconds
    return [Metric(str(k), float(v), now, int(step)) for k, v in values.items()]


def open_search_tracking(search_dir: Path, tracking_uri: str, experiment_name: str,
                         search_params: dict[str, Any]) -> dict:
    """Create (or, on resume, reopen) the experiment and the parent run; write mlflow_runs.json."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    runs = read_runs(search_dir)
    if runs is not None:
        client.update_run(runs["parent_run_id"], status="RUNNING")
        return runs
    try:
        experiment = client.get_experiment_by_name(experiment_name)
    except Exception as error:  # the store is down or not a tracking store
        raise SearchError(f"MLflow tracking store {tracking_uri} is not reachable: {error}") from error
    if experiment is not None:
        raise SearchError(f"MLflow experiment {experiment_name!r} already exists in {tracking_uri}: "
                          "choose another --name, or continue that search with --resume")
    experiment_id = client.create_experiment(
        experiment_name, artifact_location=artifact_location(tracking_uri),
        tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND,
              NOTE_TAG: f"cxrtune search `{experiment_name}`: the parent run holds the settings and, at the "
                        "end, the best config and the result files; one child run per config, one per fold."})
    parent = client.create_run(experiment_id, run_name=experiment_name, tags={"cxrtune.kind": "search"})
    client.log_batch(parent.info.run_id, params=_params(search_params))
    runs = {"tracking_uri": tracking_uri, "experiment_id": experiment_id,
            "parent_run_id": parent.info.run_id, "configs": {}, "trials": {}}
    write_runs(search_dir, runs)
    return runs


def fold_aggregates(finals: dict[int, dict[str, float]]) -> dict[str, float]:
    """A config run's metrics over its finished folds, under the fold runs' keys.

    `val_*`/`train_*`: mean, plus `<key>_std` (sample std, search.aggregate.mean_and_std) from two folds on;
    cost figures: the mean; `gpu_seconds`: the sum (absent, like on the folds, when no GPU was used).
    """
    from search.aggregate import mean_and_std

    metrics: dict[str, float] = {"n_folds_done": float(len(finals))}
    keys = sorted({k for fold in finals.values() for k in fold})
    for key in keys:
        values = [fold[key] for fold in finals.values() if key in fold and math.isfinite(fold[key])]
        if not values:
            continue
        if key == "gpu_seconds":
            metrics[key] = float(sum(values))
        elif key.startswith(("val_", "train_")):
            mean, std = mean_and_std(values)
            metrics[key] = mean
            if math.isfinite(std):
                metrics[f"{key}_std"] = std
        elif key in COST_MEAN_KEYS:
            metrics[key] = mean_and_std(values)[0]
    return metrics


def __getattr__(name: str):
    # Searches started before the callback moved to search/tracking_callback.py pickled it under this module
    # (Tune restores it from that pickle on --resume): resolve the old name, importing Ray only then.
    if name == "MlflowSearchCallback":
        from search.tracking_callback import MlflowSearchCallback

        return MlflowSearchCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
