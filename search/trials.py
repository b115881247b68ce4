"""What identifies a trial, what it reported, and trials.csv (one row per (config, fold)).

A trial's Tune config is `{TRIAL_CONFIG_KEY: flat config + fold + driver keys}`: the driver expands configs
itself and grids over that one key, so each fold of a config sees exactly the same values.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable

from spaces.configs import DRIVER_SETTING_KEYS

# The single grid key of the Tune param space; its values are whole trial configs.
TRIAL_CONFIG_KEY = "trial_config"

# Result keys filled in by Tune itself; everything else numeric in a result came from the trainable.
TUNE_RESULT_KEYS = frozenset({
    "training_iteration", "time_this_iter_s", "time_total_s", "time_since_restore",
    "iterations_since_restore", "timestamp", "pid", "hostname", "node_ip", "date", "done",
    "trial_id", "experiment_tag", "should_checkpoint", "checkpoint_dir_name", "config",
    "timesteps_total", "episodes_total", "timesteps_since_restore", "warmup_time",
})


def trial_config(tune_config: dict) -> dict:
    """The flat trial config a trainable receives, from Tune's (nested) config of a trial."""
    return tune_config.get(TRIAL_CONFIG_KEY, tune_config)


def trial_identity(tune_config: dict) -> tuple[str, int]:
    """(config_id, fold) of a trial."""
    flat = trial_config(tune_config)
    return str(flat["config_id"]), int(flat["fold"])


def trial_key(tune_config: dict) -> str:
    """'<config_id>/<fold>': the key of mlflow_runs.json["trials"] and of trials.csv rows."""
    config_id, fold = trial_identity(tune_config)
    return f"{config_id}/{fold}"


def reported_metrics(result: dict) -> dict[str, float]:
    """The trainable's own numeric metrics of one result (Tune's bookkeeping keys left out)."""
    metrics = {}
    for key, value in result.items():
        if key in TUNE_RESULT_KEYS or key.startswith("config/") or isinstance(value, bool):
            continue
        if isinstance(value, (int, float)) and math.isfinite(float(value)):
            metrics[key] = float(value)
    return metrics


def searched_params(flat_config: dict) -> dict[str, Any]:
    """The flat config without the driver's settings (spaces.configs.DRIVER_SETTING_KEYS, ARCHITECTURE §6):
    what MLflow params and trials.csv show. The fold stays: a trials.csv column and a fold run's param."""
    return {key: value for key, value in flat_config.items() if key not in DRIVER_SETTING_KEYS}


def steady_epoch_time_s(history: Iterable[dict]) -> float:
    """Mean epoch time over epochs without graph tracing (the first epoch's tracing is not a steady cost);
    NaN when every epoch was traced (a trial stopped after one epoch): never a first epoch as steady."""
    times = [float(row["epoch_time_s"]) for row in history
             if "epoch_time_s" in row and not float(row.get("traced", 0.0))]
    return sum(times) / len(times) if times else math.nan


def read_result_history(trial_dir: str | os.PathLike | None) -> list[dict]:
    """Every result a trial reported, from Tune's result.json in its folder ([] when not readable)."""
    if not trial_dir:
        return []
    path = Path(trial_dir) / "result.json"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a killed driver
                continue
    return rows


def stop_reason(status: str, epochs_done: int, epochs_planned: int | None, scheduler_reason: str | None) -> str:
    """Why a trial ended, in words that read well in trials.csv and MLflow."""
    if status == "ERROR":
        return "error"
    if status != "TERMINATED":
        return status.lower()
    if epochs_planned is not None and epochs_done >= epochs_planned:
        return "completed"
    return scheduler_reason or f"stopped early by the scheduler after {epochs_done} epochs"


def last_error_line(trial) -> str:
    """The last line of a trial's error (Tune keeps its traceback in error.txt), at most 250 characters."""
    path = getattr(trial, "error_file", None)
    if path and Path(path).is_file():
        lines = [line for line in Path(path).read_text(errors="replace").splitlines() if line.strip()]
        if lines:
            return lines[-1].strip()[:250]
    return "error (see the trial's error.txt)"


def trial_row(trial, scheduler_reasons: dict[str, str] | None = None,
              epoch_times: list[dict] | None = None) -> dict[str, Any]:
    """One trials.csv row from a Tune Trial object (its config, status, last result, failures).

    Per-epoch history comes from the trial's result.json when the driver can read it (local or shared
    storage), else from `epoch_times` ({epoch_time_s, traced} per epoch, seen by the driver's callback).
    """
    flat = trial_config(trial.config)
    history = read_result_history(getattr(trial, "local_path", None)) or read_result_history(
        getattr(trial, "path", None)) or list(epoch_times or [])
    last = dict(trial.last_result or {})
    if history and not reported_metrics(last) and "training_iteration" in history[-1]:
        last = history[-1]
    epochs_done = int(last.get("training_iteration", 0) or 0)
    planned = flat.get("epochs")
    reason = (scheduler_reasons or {}).get(trial_key(trial.config))
    row = dict(searched_params(flat))
    row.update({
        "trial_id": trial.trial_id,
        "status": trial.status,
        "stop_reason": stop_reason(trial.status, epochs_done, int(planned) if planned else None, reason),
        "epochs_done": epochs_done,
        "failures": int(trial.num_failures),
        "error": last_error_line(trial) if trial.status == "ERROR" else "",
        "steady_epoch_time_s": steady_epoch_time_s(history),
        "cpus": float(trial.placement_group_factory.required_resources.get("CPU", 0.0)),
        "time_total_s": float(last.get("time_total_s", math.nan)),
    })
    row.setdefault("gpus", float(trial.placement_group_factory.required_resources.get("GPU", 0.0)))
    for key, value in reported_metrics(last).items():
        row.setdefault(key, value)
    return row


def write_trials_csv(trials, path: Path, scheduler_reasons: dict[str, str] | None = None,
                     epoch_times: dict[str, list[dict]] | None = None) -> Path:
    """Write trials.csv: one row per (config, fold), sorted by config_id then fold."""
    import pandas as pd

    epoch_times = epoch_times or {}
    rows = [trial_row(trial, scheduler_reasons, epoch_times.get(trial.trial_id)) for trial in trials]
    table = pd.DataFrame(rows)
    if not table.empty:
        table = table.sort_values(["config_id", "fold"]).reset_index(drop=True)
    tmp = path.with_suffix(".csv.tmp")
    table.to_csv(tmp, index=False)
    os.replace(tmp, path)
    return path


def __getattr__(name: str):
    # Searches started before the callback moved to search/callbacks.py pickled it under this module (Tune
    # restores it from that pickle on --resume): resolve the old name, importing Ray only then.
    if name == "TrialsCsvWriter":
        from search.callbacks import TrialsCsvWriter

        return TrialsCsvWriter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
