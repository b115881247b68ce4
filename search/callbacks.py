"""The driver's small Tune callbacks: the live progress table (search/progress.py says what it shows) and
trials.csv kept current (search/trials.py writes it).

Imports Ray at module import: the tuner imports this module inside its functions.
"""
from __future__ import annotations

import time
from pathlib import Path

from ray.tune import Callback

from search.progress import HEADER, best_config, closing_summary, count_states, format_row, running_lines
from search.trials import last_error_line, write_trials_csv


class ProgressTable(Callback):
    """Tune callback printing the progress table to stdout."""

    def __init__(self, metric: str = "val_auc", mode: str = "max", interval_s: float = 15.0,
                 n_trials: int | None = None):
        self.metric, self.mode, self.interval_s, self.n_trials = metric, mode, float(interval_s), n_trials
        self._start = None
        self._last_print = 0.0
        self._last_block: list[str] | None = None

    def _print(self, trials, force: bool = False, starting=None) -> None:
        now = time.monotonic()
        if self._start is None:
            self._start = now
            print(HEADER.format(metric=self.metric), flush=True)
        if not force and now - self._last_print < self.interval_s:
            return
        row = format_row(now - self._start, count_states(trials, self.n_trials, starting),
                         best_config(trials, self.metric, self.mode))
        block = [row[10:]] + running_lines(trials, self.metric, starting=starting)  # the clock is no change
        if block == self._last_block:
            return
        print("\n".join([row] + block[1:]), flush=True)
        self._last_block, self._last_print = block, now

    def on_trial_start(self, iteration, trials, trial, **info):
        self._print(trials, force=True, starting=trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._print(trials)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._print(trials, force=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._print(trials, force=True)

    def on_experiment_end(self, trials, **info):
        self._print(trials, force=True)
        print("\n".join(closing_summary(trials, last_error_line)), flush=True)


class TrialsCsvWriter(Callback):
    """Tune callback keeping trials.csv current: after trial ends (at most every `interval_s`) and at the end."""

    def __init__(self, path: str, scheduler=None, interval_s: float = 20.0):
        self.path, self.scheduler, self.interval_s = str(path), scheduler, float(interval_s)
        self._last_write = 0.0
        self._epoch_times: dict[str, list[dict]] = {}  # trial_id -> [{epoch_time_s, traced}]

    # Tune saves this with its experiment state, so a resumed search keeps the epoch times it saw.
    def get_state(self) -> dict:
        return {"epoch_times": self._epoch_times}

    def set_state(self, state: dict) -> None:
        self._epoch_times = dict(state.get("epoch_times", {}))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if "epoch_time_s" in result:
            self._epoch_times.setdefault(trial.trial_id, []).append(
                {"epoch_time_s": float(result["epoch_time_s"]), "traced": float(result.get("traced", 0.0))})

    def _write(self, trials, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_write >= self.interval_s:
            reasons = self.scheduler.stop_reasons() if hasattr(self.scheduler, "stop_reasons") else {}
            write_trials_csv(trials, Path(self.path), reasons, self._epoch_times)
            self._last_write = now

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._write(trials)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._write(trials)

    def on_experiment_end(self, trials, **info):
        self._write(trials, force=True)
