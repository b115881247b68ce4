"""The fold-aware ASHA scheduler as Tune sees it: a FIFOScheduler that asks FoldAwareDecisions (in
search/schedulers.py, free of Ray) whether a fold trial goes on, and saves those decisions to a file.

Imports Ray at module import: `make_scheduler` imports this module inside its function.
"""
from __future__ import annotations

import math
import os
import pickle

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from search.schedulers import KNOWN_COSTS, TIME_ATTR, FoldAwareDecisions, rung_milestones
from search.trials import trial_config, trial_identity


class FoldAwareASHAScheduler(FIFOScheduler):
    """ASHA whose contestants are configs (mean over folds), with sticky per-config decisions.

    `objectives` ([(result key, max|min)], two or more) makes it multi-objective (`mo-fold-asha`)."""

    def __init__(self, *, metric: str, mode: str, max_t: int, grace_period: int = 1,
                 reduction_factor: float = 3, state_path: str | None = None,
                 objectives: list[tuple[str, str]] | None = None):
        super().__init__()
        self._metric, self._mode = metric, mode
        self.objectives = list(objectives or [(metric, mode)])
        self.state_path = state_path  # decisions survive a killed driver (Tune does not save schedulers)
        self._steady_times: dict[str, float] = {}  # trial_id -> latest epoch time without graph tracing
        self.decisions = FoldAwareDecisions(
            rung_milestones(grace_period, max_t, reduction_factor), reduction_factor,
            tuple(1.0 if way == "max" else -1.0 for _, way in self.objectives), max_t=max_t,
            cost_columns=tuple(i for i, (key, way) in enumerate(self.objectives)
                               if len(self.objectives) > 1 and way == "min" and key in KNOWN_COSTS))

    def _objective_values(self, trial, result: dict) -> tuple | None:
        """This epoch's value of each objective (costs in log10), or None when one is missing."""
        if "epoch_time_s" in result and not float(result.get("traced", 0.0)):
            self._steady_times[trial.trial_id] = float(result["epoch_time_s"])
        values = []
        for key, way in self.objectives:
            if key in ("epoch_time_s", "gpu_epoch_time_s"):
                seconds = self._steady_times.get(trial.trial_id, result.get("epoch_time_s"))
                value = None if seconds is None else float(seconds) * (
                    float(result.get("gpus", 0.0)) if key == "gpu_epoch_time_s" else 1.0)
            else:
                value = result.get(key)
            if value is None:
                return None
            value = float(value)
            values.append(math.log10(max(value, 1e-9)) if way == "min" and len(self.objectives) > 1 else value)
        return tuple(values)

    def __setstate__(self, state):
        # Tune.restore unpickles the scheduler as it was when the search started: reload later decisions.
        self.__dict__.update(state)
        if self.state_path and os.path.isfile(self.state_path):
            with open(self.state_path, "rb") as stream:
                self.decisions = pickle.load(stream)

    def _save_decisions(self) -> None:
        if self.state_path:
            tmp = self.state_path + ".tmp"
            with open(tmp, "wb") as stream:
                pickle.dump(self.decisions, stream)
            os.replace(tmp, self.state_path)

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return not (metric and metric != self._metric) and not (mode and mode != self._mode)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        values = self._objective_values(trial, result) if TIME_ATTR in result else None
        if values is None:
            return TrialScheduler.CONTINUE
        config_id, fold = trial_identity(trial.config)
        before = self.decisions.records
        stop = self.decisions.on_result(config_id, fold, int(result[TIME_ATTR]), values)
        if self.decisions.records != before:
            self._save_decisions()
        return TrialScheduler.STOP if stop else TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller, trial, result):
        planned = trial_config(trial.config).get("epochs")
        done = int((result or {}).get(TIME_ATTR, 0) or 0)
        self.decisions.on_end(*trial_identity(trial.config), completed=planned is not None and done >= int(planned))

    def on_trial_error(self, tune_controller, trial):
        self.decisions.on_end(*trial_identity(trial.config))

    def on_trial_remove(self, tune_controller, trial):
        self.decisions.on_end(*trial_identity(trial.config))

    def choose_trial_to_run(self, tune_controller):
        # Start folds of live configs first: a stopped config's pending folds would only run one epoch.
        pending = [t for t in tune_controller.get_trials() if t.status == "PENDING"]
        for trial in pending:
            if trial_identity(trial.config)[0] not in self.decisions.stopped:
                return trial
        return super().choose_trial_to_run(tune_controller)

    def stop_reasons(self) -> dict[str, str]:
        return dict(self.decisions.reasons)

    def debug_string(self) -> str:
        kind = "MO-" if len(self.objectives) > 1 else ""
        return (f"{kind}FoldAwareASHA: rungs {self.decisions.milestones}, "
                f"{len(self.decisions.stopped)} configs stopped")
