"""The Tune callback that logs a search to MLflow from the driver, as search/tracking.py describes: the
only writer, reusing the runs in mlflow_runs.json on resume and skipping epochs a run already has.

Imports Ray at module import: the tuner imports this module inside its functions.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

from ray.tune import Callback

from search.aggregate import fidelity_tags
from search.errors import SearchError
from search.results import trial_predictions_path
from search.tracking import (BOOKKEEPING_KEYS, CONFIG_ID_TAG, PARENT_TAG, RUNS_FILE, TRIAL_KEY_TAG, _metrics,
                             _params, _tags, config_run_names, fold_aggregates, read_runs, write_runs)
from search.trials import (last_error_line, reported_metrics, searched_params, steady_epoch_time_s, stop_reason,
                           trial_config, trial_identity)

logger = logging.getLogger(__name__)


class MlflowSearchCallback(Callback):
    """Tune callback in the driver: the only MLflow writer of a search."""

    def __init__(self, search_dir: str, n_folds: int, scheduler=None, run_names: dict | None = None):
        self.search_dir = str(search_dir)
        self.n_folds = int(n_folds)
        self.scheduler = scheduler  # asked for its stop reasons, when it keeps them
        self.run_names = dict(run_names or {})  # config_id -> readable run name (config_run_names)
        self._client = None
        self._runs: dict | None = None
        self._finals: dict[str, dict[int, dict[str, float]]] = {}
        self._epochs: dict[str, list[tuple[float, float]]] = {}  # trial key -> [(epoch_time_s, traced)]
        self._last_step: dict[str, int] = {}
        self._traced: dict[str, list[int]] = {}  # trial key -> epochs that included graph tracing

    def __getstate__(self):
        # Tune pickles callbacks with the experiment; the client and run cache are rebuilt on setup.
        state = dict(self.__dict__)
        state.update(_client=None, _runs=None, _finals={}, _epochs={}, _last_step={}, _traced={})
        return state

    def _run_name(self, config_id: str, flat: dict) -> str:
        if config_id not in self.run_names:
            self.run_names[config_id] = f"{config_run_names([flat])[config_id]} {config_id[:6]}"
        return self.run_names[config_id]

    # ----- run bookkeeping -----
    @property
    def client(self):
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._runs = read_runs(Path(self.search_dir))
            if self._runs is None:
                raise SearchError(f"{self.search_dir}/{RUNS_FILE} is missing: open tracking first")
            from search.tracking_outbox import OutboxClient  # a server gone away costs no training

            self._client = OutboxClient(MlflowClient(self._runs["tracking_uri"]), Path(self.search_dir))
            self._load_existing_runs()
        return self._client

    def _load_existing_runs(self) -> None:
        """On resume: finished folds' final metrics and each run's last logged epoch."""
        for key, run_id in self._runs["trials"].items():
            run = self._client.get_run(run_id)
            latest = dict(run.data.metrics)
            self._last_step[key] = int(run.data.tags.get("epochs_logged", 0))
            traced = run.data.tags.get("traced_epochs", "")
            self._traced[key] = [int(epoch) for epoch in traced.split(",") if epoch]
            if run.info.status == "FINISHED":
                config_id, fold = key.rsplit("/", 1)
                latest["epochs_done"] = int(run.data.tags.get("epochs_done", 0))
                self._finals.setdefault(config_id, {})[int(fold)] = latest

    def _config_run(self, config_id: str, flat: dict) -> str:
        run_id = self._runs["configs"].get(config_id)
        if run_id is None:
            run = self.client.create_run(
                self._runs["experiment_id"], run_name=self._run_name(config_id, flat),
                tags={PARENT_TAG: self._runs["parent_run_id"], CONFIG_ID_TAG: config_id,
                      "cxrtune.kind": "config"})
            run_id = run.info.run_id
            params = {k: v for k, v in searched_params(flat).items() if k != "fold"}
            self.client.log_batch(run_id, params=_params(params))
            self._runs["configs"][config_id] = run_id
            write_runs(Path(self.search_dir), self._runs)
        return run_id

    def _trial_run(self, trial) -> str:
        flat = trial_config(trial.config)
        config_id, fold = trial_identity(trial.config)
        key = f"{config_id}/{fold}"
        client = self.client
        run_id = self._runs["trials"].get(key)
        if run_id is None:
            parent = self._config_run(config_id, flat)
            run = client.create_run(
                self._runs["experiment_id"], run_name=f"{self._run_name(config_id, flat)} fold {fold}",
                tags={PARENT_TAG: parent, TRIAL_KEY_TAG: key, CONFIG_ID_TAG: config_id,
                      "cxrtune.kind": "fold"})
            run_id = run.info.run_id
            client.log_batch(run_id, params=_params(searched_params(flat)))
            self._runs["trials"][key] = run_id
            write_runs(Path(self.search_dir), self._runs)
        return run_id

    def _safely(self, action, *args) -> None:
        # A tracking hiccup must not kill a search that may have run for days; it is logged loudly.
        try:
            action(*args)
        except SearchError:
            raise
        except Exception as error:
            logger.warning("MLflow logging failed (%s): %s", action.__name__, error)

    # ----- Tune hooks -----
    def on_trial_start(self, iteration, trials, trial, **info):
        self._safely(self._start, trial)

    def _start(self, trial) -> None:
        run_id = self._trial_run(trial)
        self.client.update_run(run_id, status="RUNNING")
        self.client.set_tag(run_id, "trial_id", trial.trial_id)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._safely(self._result, trial, result)

    def _result(self, trial, result: dict) -> None:
        key = "{}/{}".format(*trial_identity(trial.config))
        step = int(result.get("training_iteration", result.get("epoch", 0)))
        reported = reported_metrics(result)
        if "epoch_time_s" in reported:
            self._epochs.setdefault(key, []).append((reported["epoch_time_s"], reported.get("traced", 0.0)))
        if step <= self._last_step.get(key, 0):
            return  # already logged before the driver was restarted
        metrics = {k: v for k, v in reported.items() if k not in BOOKKEEPING_KEYS}
        tags = {"epochs_logged": step}  # what a resumed driver reads to skip logged epochs
        if reported.get("traced"):
            self._traced.setdefault(key, []).append(step)
            tags["traced_epochs"] = ",".join(map(str, self._traced[key]))
        if "gpus" in reported:
            tags["gpus_visible"] = int(reported["gpus"])
        self.client.log_batch(self._trial_run(trial), metrics=_metrics(metrics, step), tags=_tags(tags))
        self._last_step[key] = step

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._safely(self._end, trial, "FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._safely(self._end, trial, "FAILED")

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._safely(self._recover, trial)

    def _recover(self, trial) -> None:
        run_id = self._trial_run(trial)
        self.client.log_batch(run_id, tags=_tags({
            "failures": trial.num_failures, "last_failure": last_error_line(trial)}))

    def _end(self, trial, status: str) -> None:
        flat = trial_config(trial.config)
        config_id, fold = trial_identity(trial.config)
        key = f"{config_id}/{fold}"
        run_id = self._trial_run(trial)
        last = reported_metrics(trial.last_result or {})
        epochs_done = int((trial.last_result or {}).get("training_iteration", 0) or 0)
        reasons = self.scheduler.stop_reasons() if hasattr(self.scheduler, "stop_reasons") else {}
        planned = int(flat["epochs"]) if "epochs" in flat else None
        reason = stop_reason("ERROR" if status == "FAILED" else "TERMINATED", epochs_done, planned,
                             reasons.get(key))
        tags = {"stop_reason": reason, "epochs_done": epochs_done, "failures": trial.num_failures}
        if status == "FAILED":
            tags["last_failure"] = last_error_line(trial)
        final = dict(last)
        epoch_rows = [{"epoch_time_s": t, "traced": traced} for t, traced in self._epochs.get(key, [])]
        steady = steady_epoch_time_s(epoch_rows)
        gpus = float(trial.placement_group_factory.required_resources.get("GPU", 0.0))
        extra = {}
        if math.isfinite(steady):
            extra["steady_epoch_time_s"] = steady
        if gpus > 0:  # on a CPU trial GPU-seconds do not apply: absent, not 0
            if math.isfinite(steady):
                extra["gpu_seconds_per_epoch"] = steady * gpus
            extra["gpu_seconds"] = gpus * sum(t for t, _ in self._epochs.get(key, []))
        final = {k: v for k, v in final.items() if k not in BOOKKEEPING_KEYS}
        final["epochs_done"] = epochs_done  # fidelity tags of the config run; not a logged metric
        final.update(extra)
        self.client.log_batch(run_id, metrics=_metrics(extra, epochs_done), tags=_tags(tags))
        predictions = trial_predictions_path(trial)  # out-of-fold predictions, docs/results.md
        if predictions:
            self.client.log_artifact(run_id, predictions, artifact_path="predictions")
        self.client.set_terminated(run_id, status=status)
        if status == "FINISHED":
            self._finals.setdefault(config_id, {})[fold] = final
            self._update_config(config_id, flat)

    def _update_config(self, config_id: str, flat: dict) -> None:
        finals = self._finals.get(config_id, {})
        run_id = self._config_run(config_id, flat)
        epochs = {fold: int(final.get("epochs_done", 0)) for fold, final in finals.items()}
        tags = {"folds_done": f"{len(finals)}/{self.n_folds}",
                **fidelity_tags(epochs, int(flat["epochs"]) if "epochs" in flat else None, self.n_folds)}
        # One step (0): the value is replaced as folds finish, not a curve over "folds done".
        self.client.log_batch(run_id, metrics=_metrics(fold_aggregates(finals), 0), tags=_tags(tags))
        if len(finals) >= self.n_folds:
            self.client.set_terminated(run_id, status="FINISHED")

    def on_experiment_end(self, trials, **info):
        self._safely(self._finish_search, trials)

    def _finish_search(self, trials) -> None:
        done = all(t.status in ("TERMINATED", "ERROR") for t in trials)
        self.client.set_terminated(self._runs["parent_run_id"], status="FINISHED" if done else "KILLED")
        for config_id, run_id in self._runs["configs"].items():
            if self.client.get_run(run_id).info.status == "RUNNING":
                self.client.set_terminated(run_id, status="FINISHED" if done else "KILLED")
