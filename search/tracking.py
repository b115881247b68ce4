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
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

from search.aggregate import fidelity_tags
from search.errors import SearchError
from search.lazy import lazy_classes
from search.results import trial_predictions_path
from search.trials import (reported_metrics, searched_params, steady_epoch_time_s, stop_reason, trial_config,
                           trial_identity)

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

logger = logging.getLogger(__name__)


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


def _tune_callback_base():
    from ray.tune import Callback

    return Callback


def _build_callback_class():
    Callback = _tune_callback_base()

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
                "failures": trial.num_failures, "last_failure": _error_line(trial)}))

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
                tags["last_failure"] = _error_line(trial)
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

    return MlflowSearchCallback


def _error_line(trial) -> str:
    """Last line of a trial's error (Tune keeps the traceback in error.txt), cut to 250 characters."""
    path = getattr(trial, "error_file", None)
    if path and os.path.isfile(path):
        lines = [line for line in Path(path).read_text(errors="replace").splitlines() if line.strip()]
        if lines:
            return lines[-1][:250]
    return "error (see the trial's error.txt)"


__getattr__ = lazy_classes(__name__, {"MlflowSearchCallback": _build_callback_class})
