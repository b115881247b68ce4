"""A finished (or running) search as its files lay it out (ARCHITECTURE.md section 7), read back.

`report`, `pareto` and `train-final` all start here: find the search folder from NAME, read its
trials.csv into the fold table, and log what they produce to the search's parent MLflow run.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from search.aggregate import fold_table
from search.errors import SearchError

DEFAULT_OUT = Path("cxrtune-runs")


@dataclass(frozen=True)
class SearchResults:
    """What a search folder holds: its settings, trials, fold table and MLflow run ids."""

    search_dir: Path
    settings: dict
    trials: pd.DataFrame
    table: pd.DataFrame
    mlflow_runs: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.search_dir.name

    @property
    def categories(self) -> list[str]:
        """Category names, in the order per-class AUC columns appear in the fold table."""
        prefix, suffix = "cv_val_auc_", "_mean"
        return [
            name[len(prefix): -len(suffix)] for name in self.table.columns
            if name.startswith(prefix) and name.endswith(suffix) and name != "cv_val_auc_mean"
            and name != "cv_val_auc_labels_scored_mean"
        ]

    def config(self, config_id: str) -> dict:
        """The flat config (section 5 keys) of one config in this search, from its trials."""
        from search.aggregate import CONFIG_COLUMNS

        rows = self.trials[self.trials["config_id"] == config_id]
        if rows.empty:
            known = ", ".join(self.table["config_id"].astype(str).tolist()[:20])
            raise SearchError(f"config {config_id!r} is not in search {self.name!r}; its configs: {known}")
        first = rows.iloc[0]
        return {key: _plain(first[key]) for key in CONFIG_COLUMNS if key in rows.columns and pd.notna(first[key])}


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def find_search_dir(name: str | Path, out_dir: str | Path | None = None) -> Path:
    """NAME under OUT (default ./cxrtune-runs), or NAME itself when it is a search folder."""
    direct = Path(name)
    if (direct / "trials.csv").is_file():
        return direct.resolve()
    out_dir = Path(out_dir) if out_dir is not None else DEFAULT_OUT
    candidate = out_dir / str(name)
    if (candidate / "trials.csv").is_file():
        return candidate.resolve()
    known = sorted(path.parent.name for path in out_dir.glob("*/trials.csv")) if out_dir.is_dir() else []
    where = f"searches in {out_dir}: {', '.join(known)}" if known else f"no searches with a trials.csv in {out_dir}"
    raise SearchError(f"no search {str(name)!r} with a trials.csv (looked in {candidate}); {where}")


def _n_folds(settings: dict) -> int | None:
    """The search's fold count from search.json, wherever the search driver put it."""
    folds = settings.get("folds")
    for value in (settings.get("n_folds"), folds.get("n_folds") if isinstance(folds, dict) else folds):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def load_search(name: str | Path, out_dir: str | Path | None = None) -> SearchResults:
    """Read a search folder; the fold table is recomputed from trials.csv (the source of truth)."""
    search_dir = find_search_dir(name, out_dir)
    settings = _read_json(search_dir / "search.json", required=False)
    mlflow_runs = _read_json(search_dir / "mlflow_runs.json", required=False)
    try:
        trials = pd.read_csv(search_dir / "trials.csv", dtype={"config_id": str})
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as error:
        raise SearchError(f"{search_dir / 'trials.csv'} cannot be read as CSV: {error}") from None
    if trials.empty:
        raise SearchError(f"{search_dir / 'trials.csv'} has no trials yet; run or resume the search first")
    table = fold_table(trials, n_folds=_n_folds(settings))
    if "cv_val_auc_mean" not in table or table["cv_val_auc_mean"].isna().all():
        raise SearchError(f"no trial of search {search_dir.name!r} has finished with a val_auc yet "
                          f"({len(trials)} trial rows in trials.csv); wait for a fold to finish, or resume it")
    return SearchResults(search_dir, settings, trials, table, mlflow_runs)


def _read_json(path: Path, *, required: bool) -> dict:
    if not path.is_file():
        if required:
            raise SearchError(f"{path} is missing")
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise SearchError(f"{path} is not valid JSON: {error}") from None


def log_to_parent_run(results: SearchResults, paths, artifact_path: str) -> str | None:
    """Log files as artifacts of the search's parent MLflow run; returns its id (None: no MLflow runs)."""
    tracking_uri = results.mlflow_runs.get("tracking_uri")
    run_id = results.mlflow_runs.get("parent_run_id")
    if not tracking_uri or not run_id:
        return None
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    for path in paths:
        client.log_artifact(run_id, str(path), artifact_path=artifact_path)
    return run_id


# ----- What each fold trial left on disk: its latest checkpoint and out-of-fold predictions -----


def trial_folder(results: SearchResults, config_id: str, fold: int) -> Path:
    """The Tune folder of one fold trial: STORAGE/EXPERIMENT/<config_id>-fold<k>_<trial_id> (search.tuner)."""
    storage = str(results.settings.get("storage_path") or results.search_dir)
    experiment = str(results.settings.get("experiment") or "tune")
    if "://" in storage:
        raise SearchError(f"search {results.name!r} keeps its trials in {storage}: copy {experiment}/ from there "
                          f"into {results.search_dir} and pass that folder as NAME")
    root = Path(storage) / experiment
    rows = results.trials[(results.trials["config_id"] == config_id) & (results.trials["fold"] == fold)]
    trial_id = str(rows["trial_id"].iloc[0]) if len(rows) and "trial_id" in rows else "*"
    found = sorted(root.glob(f"{config_id}-fold{fold}_{trial_id}"))
    if not found:
        raise SearchError(f"no trial folder for config {config_id} fold {fold} under {root}")
    return found[-1]


def fold_checkpoint(results: SearchResults, config_id: str, fold: int) -> Path:
    """The latest checkpoint folder of one fold trial (Tune keeps one: the last epoch it trained)."""
    folder = trial_folder(results, config_id, fold)
    checkpoints = sorted(folder.glob("checkpoint_*"))
    if not checkpoints:
        raise SearchError(f"trial {folder.name} of search {results.name!r} has no checkpoint in {folder}")
    return checkpoints[-1]


@dataclass(frozen=True)
class OutOfFold:
    """One config's validation predictions pooled over its folds (each image predicted by the one model that
    did not train on it). Rows: images; `fold` and `epoch` say which model and after how many epochs."""

    image_id: np.ndarray
    fold: np.ndarray
    epoch: np.ndarray
    categories: list
    probability: np.ndarray  # images x categories, float32 (stored as float16)
    label: np.ndarray        # images x categories, 0/1


def load_oof_predictions(search_dir, config_id: str, out_dir=None) -> OutOfFold:
    """Pool a config's out-of-fold predictions (val_predictions.npz of each fold's latest checkpoint, see
    docs/results.md); SearchError when a fold has none (still running, or trained before they were saved)."""
    from trainables.predictions import PREDICTIONS_FILE, read_predictions

    results = search_dir if isinstance(search_dir, SearchResults) else load_search(search_dir, out_dir)
    folds = sorted(int(f) for f in results.trials.loc[results.trials["config_id"] == config_id, "fold"].unique())
    parts = []
    for fold in folds:
        path = fold_checkpoint(results, config_id, fold) / PREDICTIONS_FILE
        if not path.is_file():
            raise SearchError(f"config {config_id} fold {fold} saved no out-of-fold predictions ({path} missing)")
        parts.append((fold, read_predictions(path)))
    if not parts:
        raise SearchError(f"config {config_id!r} has no trials in search {results.name!r}")
    return OutOfFold(
        image_id=np.concatenate([p["image_id"] for _, p in parts]),
        fold=np.concatenate([np.full(len(p["image_id"]), fold) for fold, p in parts]),
        epoch=np.concatenate([np.full(len(p["image_id"]), int(p["epoch"])) for _, p in parts]),
        categories=[str(c) for c in parts[0][1]["categories"]],
        probability=np.concatenate([p["probability"] for _, p in parts]),
        label=np.concatenate([p["label"] for _, p in parts]))


def patient_groups(results: SearchResults, image_ids) -> np.ndarray:
    """A patient code per image id, for resampling by patient (the manifest's pseudonymous patient_key; never
    printed). Images without one count as their own patient."""
    manifest = _search_manifest(results)
    if manifest is None or "patient_key" not in manifest:
        return np.asarray(image_ids, dtype=str)
    keys = dict(zip(manifest["image_id"].astype(str), manifest["patient_key"].astype(str)))
    return np.asarray([keys.get(str(i), f"image:{i}") for i in image_ids])


def _search_manifest(results: SearchResults):
    described = results.settings.get("data")
    if not isinstance(described, dict):
        return None
    if described.get("kind") == "handle":
        import pickle

        return pickle.loads((results.search_dir / described["file"]).read_bytes()).load()[2]
    from data.manifest import load_prepared

    return load_prepared(described["path"]).manifest


def trial_predictions_path(trial) -> str | None:
    """The val_predictions.npz of a Tune trial's latest checkpoint, when the driver can read it locally."""
    from trainables.predictions import PREDICTIONS_FILE

    checkpoint = getattr(trial, "checkpoint", None)
    path = Path(str(getattr(checkpoint, "path", ""))) / PREDICTIONS_FILE if checkpoint is not None else None
    return str(path) if path is not None and path.is_file() else None
