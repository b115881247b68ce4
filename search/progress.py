"""A live progress table printed by the driver: one row per update, readable in a terminal and in CI logs.

  elapsed  running  pending  done  stopped  error  best config so far (val_auc mean, folds)
  0:00:42        2        2     3        1      0  3fa2c1d9e0 resnet50 B conv3 imagenet  0.812 (2)

`done` trials ran all their epochs; `stopped` ones were cut by the scheduler. The best config is the one
with the best mean metric over its ended folds. A row is printed when a trial ends and otherwise at most
every `interval_s` seconds, so a long search does not flood the log.
"""
from __future__ import annotations

import math
import sys
import time

from search.lazy import lazy_classes
from search.trials import trial_config, trial_identity

HEADER = "  elapsed  running  pending  done  stopped  error  best config so far ({metric} mean, folds)"
DESCRIBE_KEYS = ("backbone", "method", "freeze", "source_weights")


def count_states(trials) -> dict[str, int]:
    counts = {"running": 0, "pending": 0, "done": 0, "stopped": 0, "error": 0}
    for trial in trials:
        if trial.status == "RUNNING":
            counts["running"] += 1
        elif trial.status in ("PENDING", "PAUSED"):
            counts["pending"] += 1
        elif trial.status == "ERROR":
            counts["error"] += 1
        else:
            done = int((trial.last_result or {}).get("training_iteration", 0) or 0)
            planned = trial_config(trial.config).get("epochs")
            counts["done" if planned is None or done >= int(planned) else "stopped"] += 1
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
        flat = trial_config(trial.config)
        described[config_id] = " ".join([config_id] + [str(flat[k]) for k in DESCRIBE_KEYS if k in flat])
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


def _build_callback_class():
    from ray.tune import Callback

    class ProgressTable(Callback):
        """Tune callback printing the progress table to `stream` (stdout by default)."""

        def __init__(self, metric: str = "val_auc", mode: str = "max", interval_s: float = 15.0):
            self.metric, self.mode, self.interval_s = metric, mode, float(interval_s)
            self._start = None
            self._last_print = 0.0
            self._last_row = None

        def _print(self, trials, force: bool = False) -> None:
            now = time.monotonic()
            if self._start is None:
                self._start = now
                print(HEADER.format(metric=self.metric), flush=True)
            if not force and now - self._last_print < self.interval_s:
                return
            row = format_row(now - self._start, count_states(trials), best_config(trials, self.metric, self.mode))
            if row[10:] != (self._last_row or "")[10:] or force:  # skip rows where only the clock moved
                print(row, file=sys.stdout, flush=True)
                self._last_row = row
            self._last_print = now

        def on_trial_start(self, iteration, trials, trial, **info):
            self._print(trials)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self._print(trials)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._print(trials, force=True)

        def on_trial_error(self, iteration, trials, trial, **info):
            self._print(trials, force=True)

        def on_experiment_end(self, trials, **info):
            self._print(trials, force=True)

    return ProgressTable


__getattr__ = lazy_classes(__name__, {"ProgressTable": _build_callback_class})
