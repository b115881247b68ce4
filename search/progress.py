"""The live progress table printed by the driver: readable in a terminal and in CI logs.

  elapsed  running  pending  done  stopped  error  best config so far (val_auc mean, folds)
  0:00:42        2        5     3        1      0  resnet50 B conv3 imagenet  0.812 (2)
      running: resnet50 A imagenet fold 1  epoch 2/3  val_auc 0.741
      running: resnet50 C imagenet fold 0  epoch 1/3  val_auc 0.655

A row is printed only when something in it changed (never just the clock), and at most every `interval_s`
seconds for epoch results; a trial that starts or ends prints at once. `pending` counts every trial not
started yet, those Tune has not created yet included. Under each row, one line per running trial with its
epoch and latest metric (at most MAX_RUNNING_LINES, as Tune's own table caps itself to a screen). `done`
trials ran all their epochs; `stopped` ones were cut by the scheduler. The best config is the one with the
best mean metric over its ended folds. At the end: what completed, what was stopped early (at which epoch)
and what failed (with the error's last line).
"""
from __future__ import annotations

import math

from search.trials import trial_config, trial_identity

HEADER = "  elapsed  running  pending  done  stopped  error  best config so far ({metric} mean, folds)"
MAX_RUNNING_LINES = 8


def describe(flat: dict) -> str:
    """`resnet50 B conv4 imagenet`: a config in words, as its MLflow run is named."""
    from search.report import config_label

    try:
        return config_label(flat)
    except KeyError:  # a caller's own trainable may search other keys
        return str(flat.get("config_id", "?"))


def epochs_done(trial) -> int:
    return int((trial.last_result or {}).get("training_iteration", 0) or 0)


def planned_epochs(trial) -> int | None:
    planned = trial_config(trial.config).get("epochs")
    return None if planned is None else int(planned)


def status_of(trial, starting=None) -> str:
    # Tune calls on_trial_start before it marks the trial RUNNING.
    return "RUNNING" if starting is not None and trial is starting else trial.status


def count_states(trials, n_trials: int | None = None, starting=None) -> dict[str, int]:
    """Trials by state; `pending` adds the trials Tune has not created yet (n_trials - created)."""
    counts = {"running": 0, "pending": 0, "done": 0, "stopped": 0, "error": 0}
    for trial in trials:
        status = status_of(trial, starting)
        if status == "RUNNING":
            counts["running"] += 1
        elif status in ("PENDING", "PAUSED"):
            counts["pending"] += 1
        elif status == "ERROR":
            counts["error"] += 1
        else:
            planned = planned_epochs(trial)
            counts["done" if planned is None or epochs_done(trial) >= planned else "stopped"] += 1
    if n_trials is not None:
        counts["pending"] += max(0, int(n_trials) - len(trials))
    return counts


def best_config(trials, metric: str, mode: str) -> tuple[str, float, int] | None:
    """(description, mean metric, folds) of the best config over its ended folds; None before any ends."""
    by_config: dict[str, list[float]] = {}
    described: dict[str, str] = {}
    for trial in trials:
        value = (trial.last_result or {}).get(metric)
        if trial.status != "TERMINATED" or value is None or not math.isfinite(float(value)):
            continue
        config_id, _ = trial_identity(trial.config)
        by_config.setdefault(config_id, []).append(float(value))
        described[config_id] = describe(trial_config(trial.config))
    if not by_config:
        return None
    sign = 1.0 if mode == "max" else -1.0
    best = max(by_config, key=lambda cid: sign * sum(by_config[cid]) / len(by_config[cid]))
    values = by_config[best]
    return described[best], sum(values) / len(values), len(values)


def format_row(elapsed_s: float, counts: dict[str, int], best) -> str:
    minutes, seconds = divmod(int(elapsed_s), 60)
    hours, minutes = divmod(minutes, 60)
    best_text = "-" if best is None else f"{best[0]}  {best[1]:.3f} ({best[2]})"
    return (f"  {hours:d}:{minutes:02d}:{seconds:02d}  {counts['running']:7d}  {counts['pending']:7d}  "
            f"{counts['done']:4d}  {counts['stopped']:7d}  {counts['error']:5d}  {best_text}")


def running_lines(trials, metric: str, limit: int = MAX_RUNNING_LINES, starting=None) -> list[str]:
    """One line per running trial (epoch reached, latest metric), capped at `limit` lines."""
    lines = []
    running = [trial for trial in trials if status_of(trial, starting) == "RUNNING"]
    for trial in running[:limit]:
        _, fold = trial_identity(trial.config)
        planned = planned_epochs(trial)
        line = f"      running: {describe(trial_config(trial.config))} fold {fold}  "
        if epochs_done(trial) == 0:
            line += "starting"  # building its model (and tracing its graph) before the first epoch ends
        else:
            line += f"epoch {epochs_done(trial)}" + (f"/{planned}" if planned else "")
        value = (trial.last_result or {}).get(metric)
        if value is not None and math.isfinite(float(value)):
            line += f"  {metric} {float(value):.3f}"
        lines.append(line)
    if len(running) > limit:
        lines.append(f"      ... and {len(running) - limit} more running")
    return lines


def closing_summary(trials, error_line=None) -> list[str]:
    """What completed, what the scheduler stopped early (per config: folds and epoch), what failed."""
    counts = count_states(trials)
    lines = [f"trials: {counts['done']} completed, {counts['stopped']} stopped early, {counts['error']} failed"
             + (f", {counts['running'] + counts['pending']} unfinished" if counts['running'] + counts['pending']
                else "")]
    stopped: dict[str, list[tuple[int, int]]] = {}
    for trial in trials:
        planned = planned_epochs(trial)
        if trial.status == "TERMINATED" and planned is not None and epochs_done(trial) < planned:
            stopped.setdefault(describe(trial_config(trial.config)), []).append(
                (trial_identity(trial.config)[1], epochs_done(trial)))
    for name, folds in sorted(stopped.items()):
        planned_text = ", ".join(f"fold {fold} " + (f"after epoch {epoch}" if epoch else "before its first epoch")
                                 for fold, epoch in sorted(folds))
        lines.append(f"  stopped early: {name}: {planned_text}")
    for trial in trials:
        if trial.status == "ERROR":
            _, fold = trial_identity(trial.config)
            reason = error_line(trial) if error_line else "see the trial's error.txt"
            lines.append(f"  failed: {describe(trial_config(trial.config))} fold {fold}: {reason}")
    return lines


def __getattr__(name: str):
    # Searches started before the callback moved to search/callbacks.py pickled it under this module (Tune
    # restores it from that pickle on --resume): resolve the old name, importing Ray only then.
    if name == "ProgressTable":
        from search.callbacks import ProgressTable

        return ProgressTable
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
