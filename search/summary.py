"""The end of a search, told where users look: the MLflow parent run and the terminal's closing lines.

The parent run gets the best config's figures under the fold runs' keys (`val_auc`, `val_auc_std`, ...),
the counts of configs and trials (completed, stopped early, failed), a Markdown description, and the result
files as artifacts (fold table, front, trials.csv, report tables). The best config is read from the fold
table (`search.aggregate.fold_table` rows, best first), so a stricter choice of eligible configs is one
filter in `best_config_row`.
"""
from __future__ import annotations

import logging
import math
import numbers
from pathlib import Path

from search.tracking import NOTE_TAG, _metrics, _tags, read_runs

SUMMARY_FILES = ("fold_table.csv", "trials.csv", "pareto.csv", "pareto.json", "pareto.png")

logger = logging.getLogger(__name__)


def best_config_row(table):
    """The fold-table row of the best full-budget config (every fold, every epoch; the table is best first);
    None if none: a config the scheduler stopped early is never the search's best."""
    if table is None or table.empty or "cv_val_auc_mean" not in table:
        return None
    eligible = table[table["full_budget"].astype(bool)] if "full_budget" in table else table
    eligible = eligible.dropna(subset=["cv_val_auc_mean"])
    return None if eligible.empty else eligible.iloc[0]


def _finite(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def search_story(table, trials) -> tuple[dict[str, float], dict[str, str]]:
    """(metrics, tags) of the parent run at the end of a search: counts, and the best config's figures."""
    reasons = trials["stop_reason"].astype(str) if "stop_reason" in trials else None
    status = trials["status"].astype(str) if "status" in trials else None
    metrics = {"configs_searched": float(len(table)),
               "configs_full_budget": float(table["full_budget"].astype(bool).sum()) if "full_budget" in table else 0.0,
               "trials_total": float(len(trials))}
    if reasons is not None and status is not None:
        ended = status.isin(["TERMINATED", "ERROR"])
        metrics.update({"trials_completed": float((ended & (reasons == "completed")).sum()),
                        "trials_failed": float((status == "ERROR").sum()),
                        "trials_stopped_early": float((ended & ~reasons.isin(["completed", "error"])).sum()),
                        "trials_unfinished": float((~ended).sum())})
    best = best_config_row(table)
    if best is None:
        return metrics, {"best_config": "none yet (no config has every fold done)"}
    for column, value in best.items():
        name = str(column)
        if name.startswith("cv_") and _finite(value):
            key = name[3:-5] if name.endswith("_mean") else name[3:-4] + "_std" if name.endswith("_std") else None
            if key:
                metrics[key] = float(value)
    # Cost columns of the fold table under the config runs' keys; 0 GPU-seconds (a CPU search) stays absent.
    for column, key in (("trainable_params", "trainable_params"), ("steady_epoch_time_s", "steady_epoch_time_s"),
                        ("total_gpu_seconds", "gpu_seconds")):
        if column in best and _finite(best[column]) and best[column] > 0:
            metrics[key] = float(best[column])
    from search.report import config_label

    return metrics, {"best_config": config_label(best), "best_config_id": str(best["config_id"])}


def _story_note(name: str, metrics: dict[str, float], tags: dict[str, str]) -> str:
    lines = [f"**Search `{name}`**: {int(metrics['configs_searched'])} configs, "
             f"{int(metrics['trials_total'])} fold trials"]
    if "trials_completed" in metrics:
        lines[0] += (f" ({int(metrics['trials_completed'])} completed, {int(metrics['trials_stopped_early'])} "
                     f"stopped early, {int(metrics['trials_failed'])} failed, "
                     f"{int(metrics['trials_unfinished'])} unfinished)")
    if "best_config_id" in tags:
        std = metrics.get("val_auc_std")
        spread = f" ± {std:.3f}" if std is not None else ""
        lines.append(f"**Best config**: {tags['best_config']} (`{tags['best_config_id']}`): "
                     f"val_auc {metrics.get('val_auc', float('nan')):.3f}{spread} over its folds")
    else:
        lines.append(f"**Best config**: {tags['best_config']}")
    lines.append("Artifacts: fold_table.csv (one row per config), pareto.csv/.json/.png, trials.csv, report/.")
    return "\n\n".join(lines)


def write_csv_table(table, path: Path) -> Path:
    """A table as CSV that reads well: whole-number columns as integers, other floats to 6 decimals."""
    import pandas as pd

    table = table.copy()
    for column in table.columns:
        values = table[column]
        if pd.api.types.is_float_dtype(values):
            finite = values.dropna()
            if len(finite) and (finite == finite.round()).all() and finite.abs().max() < 2**53:
                table[column] = values.round().astype("Int64")
            else:
                table[column] = values.round(6)
    table.to_csv(path, index=False)
    return path


def write_report_tables(search_dir: Path) -> None:
    """`cxrtune report`'s tables into NAME/report/ (a failure there must not fail the search's end)."""
    try:
        from search.report import write_report
        from search.results import load_search

        write_report(load_search(search_dir), search_dir / "report")
    except Exception as error:  # noqa: BLE001 - `cxrtune report NAME` writes them again, with the reason
        logger.warning("report tables not written (`cxrtune report %s` retries): %s", search_dir.name, error)


def log_search_summary(search_dir: Path, table, trials) -> None:
    """Tell the search's story on its parent run: best config, counts, and the result files as artifacts.

    Called at the end of a search and of each resume (a later call replaces the figures). A tracking
    failure here is a warning: the search's own files are already written.
    """
    search_dir = Path(search_dir)
    runs = read_runs(search_dir)
    if not runs:
        return
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(runs["tracking_uri"])
        parent = runs["parent_run_id"]
        metrics, tags = search_story(table, trials)
        if tags.get("best_config_id") in runs.get("configs", {}):
            tags["best_config_run_id"] = runs["configs"][tags["best_config_id"]]
        tags[NOTE_TAG] = _story_note(search_dir.name, metrics, tags)
        client.log_batch(parent, metrics=_metrics(metrics, 0), tags=_tags(tags))
        for name in SUMMARY_FILES:
            if (search_dir / name).is_file():
                client.log_artifact(parent, str(search_dir / name))
        if (search_dir / "report").is_dir():
            client.log_artifacts(parent, str(search_dir / "report"), artifact_path="report")
    except Exception as error:  # noqa: BLE001 - the summary is a convenience; the files are the record
        logger.warning("MLflow: the search summary could not be logged to the parent run: %s", error)


def browse_hint(tracking_uri: str, search_dir: Path) -> str:
    """The command that starts the MLflow UI and the address that opens this search's runs table."""
    from search.tracking import read_runs

    runs = read_runs(search_dir) or {}
    # workflowType=machine_learning: MLflow 3's UI would otherwise open on its GenAI view; best val_auc first.
    table = (f"/#/experiments/{runs.get('experiment_id', '')}/runs?workflowType=machine_learning"
             "&orderByKey=metrics.%60val_auc%60&orderByAsc=false")
    if tracking_uri.startswith("sqlite:"):
        return f"mlflow ui --backend-store-uri {tracking_uri}  then open http://127.0.0.1:5000{table}"
    return f"open {tracking_uri.rstrip('/')}{table}"


def folder_bytes(path: Path) -> int:
    return sum(entry.stat().st_size for entry in Path(path).rglob("*") if entry.is_file())


def disk_line(search_dir: Path, settings: dict) -> str:
    """The search folder's size, with Tune's checkpoints and results (in it or in a local --storage)."""
    mb = 1024 * 1024
    line = f"{folder_bytes(search_dir) / mb:.1f} MB in {search_dir}"
    storage = Path(settings["storage_path"]) / settings["experiment"]
    if "://" not in str(settings["storage_path"]) and storage.is_dir():
        where = "of it" if search_dir in storage.parents else f"in {storage}"
        line += f" ({folder_bytes(storage) / mb:.1f} MB {where} Tune's checkpoints and results; finished " \
                f"trials keep {'nothing' if settings.get('keep_checkpoints') == 'none' else 'final weights only'})"
    return line
