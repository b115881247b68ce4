"""A finished (or running) search as its files lay it out (ARCHITECTURE.md section 7), read back.

`report`, `pareto` and `train-final` all start here: find the search folder from NAME, read its
trials.csv into the fold table, and log what they produce to the search's parent MLflow run.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

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
