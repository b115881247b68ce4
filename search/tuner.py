"""Run and resume a search: configs x folds -> Ray Tune trials, MLflow runs, trials.csv, fold table, front.

The driver expands the space itself (seeded) and grids over whole (config, fold) trial configs under one
Tune key, so every fold of a config sees the same values (see PITFALLS: grid_search beside sampled domains).
Every path is made absolute here, because each trial runs in its own working directory. What a search is
asked to do is one SearchSettings (search/settings.py); where its data comes from, search/search_data.py.
Ray, the Tune callbacks and the scheduler are imported inside the functions: importing this starts nothing.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import shutil
from pathlib import Path

from search.errors import SearchError
from search.quiet import quiet_driver, worker_environment
from search.search_data import data_handle, dataset_folds, reload_handle
from search.settings import (DEFAULT_FOLDS, OBJECTIVES, SEARCH_FILE, SearchSettings, augment_views, read_settings,
                             write_settings)
from search.trials import TRIAL_CONFIG_KEY, trial_identity

SCHEDULER_STATE_FILE = "scheduler_state.pkl"
TUNE_DIR = "tune"
METRIC, MODE = "val_auc", "max"


def _absolute(path) -> str | None:
    return None if path is None else str(Path(path).expanduser().resolve())


def _storage_location(storage: str | None, search_dir: Path) -> tuple[str, str]:
    """(storage_path, experiment name) for Tune: OUT/NAME/tune by default, STORAGE/NAME when given."""
    if storage is None:
        return str(search_dir), TUNE_DIR
    location = storage if "://" in storage else _absolute(storage)
    return location.rstrip("/"), search_dir.name


def _space_name(space) -> str:
    """A preset name, an absolute YAML path, or the Space object's name."""
    if isinstance(space, (str, os.PathLike)):
        return _absolute(space) if os.path.isfile(space) else str(space)
    return str(getattr(space, "name", "space"))


def _trial_configs(configs: list[dict], settings: SearchSettings, n_classes: int, search_dir: Path) -> list[dict]:
    """Each config once per fold, with the keys the driver adds for the trial (spaces.configs.TRIAL_KEYS)."""
    extra = {"checkpoint_every": 1, "n_classes": n_classes}
    if settings.weights_dir:
        extra["weights_dir"] = settings.weights_dir
    # frozen trunks' outputs, computed once per search (trainables/feature_cache.py)
    extra["feature_cache_dir"] = str(search_dir / "feature_cache")
    views = augment_views(settings.augment)
    if views is not None:
        extra["augment_views"] = views
    return [{**config, "fold": fold, **extra} for config in configs for fold in range(settings.n_folds)]


# Tune gives a finished trial's worker to the next trial (reuse_actors: no new process, no second TensorFlow
# import) only once the finished trial's thread has ended, and waits TUNE_FUNCTION_THREAD_TIMEOUT_S for that
# (Ray's default: 2 s). A trial the scheduler stops early unwinds its fit and frees its model first, which
# on a busy machine takes longer, and the *next* trial then fails ("Trainable runner reuse requires
# reset_config() to be implemented and return True"). Ray reads the variable in the worker, so it is set there.
REUSE_WAIT_S = 120


def _in_reusable_worker(trainable):
    @functools.wraps(trainable)
    def run(config, data, **shared):
        os.environ.setdefault("TUNE_FUNCTION_THREAD_TIMEOUT_S", str(REUSE_WAIT_S))
        return trainable(config, data, **shared)

    return run


def _trainable(trainable, handle, settings: SearchSettings, feature_refs: dict | None = None):
    from ray import tune

    if trainable is None:
        from trainables.train import train_fold as trainable
    resources = {"cpu": float(settings.cpus_per_trial), "gpu": float(settings.gpus_per_trial)}
    shared = {"feature_refs": feature_refs} if feature_refs else {}  # small feature caches (feature_share.py)
    return tune.with_resources(tune.with_parameters(_in_reusable_worker(trainable), data=handle, **shared),
                               resources)


def trial_dirname(trial) -> str:
    """'<config_id>-fold<k>_<trial_id>': short, and says which trial it is (Tune's default spells the config)."""
    config_id, fold = trial_identity(trial.config)
    return f"{config_id}-fold{fold}_{trial.trial_id}"


def _callbacks(search_dir: Path, settings: SearchSettings, scheduler, configs: list[dict],
               progress_interval_s: float) -> list:
    from search.callbacks import ProgressTable, TrialsCsvWriter
    from search.checkpoints import CheckpointPruner
    from search.tracking import config_run_names
    from search.tracking_callback import MlflowSearchCallback

    return [MlflowSearchCallback(str(search_dir), settings.n_folds, scheduler, config_run_names(configs)),
            TrialsCsvWriter(str(search_dir / "trials.csv"), scheduler),
            CheckpointPruner(settings.keep_checkpoints),
            ProgressTable(METRIC, MODE, progress_interval_s, n_trials=settings.n_trials)]


def run_search(settings: SearchSettings, *, data, space, out_dir, trainable=None, address: str | None = None,
               progress_interval_s: float = 15.0) -> Path:
    """Run a new search `settings.name` under `out_dir`; returns its folder OUT/NAME (ARCHITECTURE.md §7).

    `data`: a PREPARED folder or a dataset handle; `space`: a preset name, a space YAML or a Space;
    `trainable`: another function trainable (the tests' scripted one); `address`: a Ray cluster (default
    $RAY_ADDRESS, else a local Ray). search.json keeps the settings as the search started them.

    `settings.objectives` are the front's and, with the default scheduler `mo-fold-asha` (`fold-asha` for one
    objective), the scheduler's. `settings.n_folds` None: the dataset's folds when it has them, else 5.
    A search refused before it starts (bad settings, a taken name, unreachable tracking) leaves no folder."""
    quiet_driver()
    out_dir = Path(_absolute(out_dir))
    search_dir = out_dir / settings.name
    if (search_dir / SEARCH_FILE).is_file():
        raise SearchError(f"a search named {settings.name!r} already exists in {out_dir}: continue it with "
                          f"`cxrtune search --resume {settings.name} --out {out_dir}` or choose another --name")
    if settings.n_folds is None:
        found = None if hasattr(data, "load") else dataset_folds(_absolute(data))
        settings = dataclasses.replace(settings, n_folds=found or DEFAULT_FOLDS)
    created = [path for path in (out_dir, search_dir) if not path.exists()]
    try:
        return _start_search(settings, data=data, space=space, out_dir=out_dir, trainable=trainable,
                             address=address, progress_interval_s=progress_interval_s)
    except Exception:
        if not (search_dir / SEARCH_FILE).is_file():  # refused before it started: leave nothing behind
            for path in reversed(created):
                shutil.rmtree(path, ignore_errors=True)
        raise


def _plan(settings: SearchSettings, space, out_dir: Path):
    """(settings with the scheduler, objectives and paths chosen, configs, scheduler): no folder written yet."""
    from search.schedulers import make_scheduler
    from search.tracking import absolute_tracking_uri
    from spaces import expand

    configs = expand(space, seed=settings.seed, overrides=settings.overrides,
                     available_sources=settings.available_sources)
    objectives = dict(settings.objectives or OBJECTIVES)
    settings = dataclasses.replace(
        settings, objectives=objectives, space=_space_name(space), n_configs=len(configs),
        scheduler=settings.scheduler or ("mo-fold-asha" if len(objectives) >= 2 else "fold-asha"),
        tracking_uri=absolute_tracking_uri(settings.tracking_uri, out_dir),
        weights_dir=_absolute(settings.weights_dir))
    scheduler = make_scheduler(settings.scheduler, metric=METRIC, mode=MODE,
                               max_t=max(int(c["epochs"]) for c in configs), grace_period=settings.grace_period,
                               reduction_factor=settings.reduction_factor, objectives=objectives,
                               state_path=str(out_dir / settings.name / SCHEDULER_STATE_FILE))
    if getattr(configs, "dropped_summary", None) and configs.dropped_summary():
        print(configs.dropped_summary(), flush=True)
    return settings, configs, scheduler


def _start_search(settings: SearchSettings, *, data, space, out_dir: Path, trainable, address,
                  progress_interval_s: float) -> Path:
    from ray import tune

    from search.cluster import check_resources, check_weights, connect, preflight
    from search.tracking import open_search_tracking

    settings, configs, scheduler = _plan(settings, space, out_dir)
    search_dir = out_dir / settings.name
    search_dir.mkdir(parents=True, exist_ok=True)
    # Data first: a wrong --data is the cheapest mistake to report, and weights may need a download.
    handle, categories, described = data_handle(data, settings.n_folds, settings.seed, search_dir,
                                                settings.data_mode)
    if trainable is None:  # the real trial loads source weights; a caller's own trainable may not
        check_weights(list(configs), settings.weights_dir)
    trial_configs = _trial_configs(list(configs), settings, len(categories), search_dir)
    cluster = connect(address, worker_environment())
    check_resources(float(settings.cpus_per_trial), float(settings.gpus_per_trial))
    storage_path, experiment = _storage_location(settings.storage, search_dir)
    n_nodes = preflight(data_handle=handle, weights_dir=settings.weights_dir, tracking_uri=settings.tracking_uri,
                        storage=None if settings.storage is None else storage_path,
                        allow_unauthenticated_tracking=settings.allow_unauthenticated_tracking)
    settings = dataclasses.replace(
        settings, data=described, categories=categories, n_trials=len(trial_configs), storage_path=storage_path,
        experiment=experiment, nodes=n_nodes, cluster_cpus=cluster.get("CPU", 0), cluster_gpus=cluster.get("GPU", 0))
    # Tracking first: a refused experiment name then leaves no search.json, so the same --name can be fixed.
    open_search_tracking(search_dir, settings.tracking_uri, settings.name, settings.mlflow_params())
    write_settings(search_dir, settings)

    from search.feature_share import share_features  # small frozen-trunk caches: once, via the object store

    feature_refs = {} if trainable is not None else share_features(
        trial_configs, handle, cpus=float(settings.cpus_per_trial), gpus=float(settings.gpus_per_trial))
    tuner = tune.Tuner(
        _trainable(trainable, handle, settings, feature_refs),
        param_space={TRIAL_CONFIG_KEY: tune.grid_search(trial_configs)},
        tune_config=tune.TuneConfig(scheduler=scheduler, num_samples=1, max_concurrent_trials=settings.max_concurrent,
                                    reuse_actors=True, trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(
            name=experiment, storage_path=storage_path, verbose=0,
            callbacks=_callbacks(search_dir, settings, scheduler, list(configs), progress_interval_s),
            failure_config=tune.FailureConfig(max_failures=int(settings.max_failures)),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
    )
    print(f"search {settings.name}: {len(configs)} config(s) x {settings.n_folds} folds = {len(trial_configs)} "
          f"trials, scheduler {settings.scheduler}, {n_nodes} node(s)", flush=True)
    tuner.fit()
    return finish_search(search_dir)


def resume_search(name: str, out_dir, *, data=None, trainable=None, address: str | None = None,
                  progress_interval_s: float | None = None) -> Path:
    """Continue an interrupted search: finished trials stay finished, unfinished ones restart from their
    last checkpoint, errored ones get another try, and MLflow runs are reused (mlflow_runs.json)."""
    from ray import tune

    from search.cluster import connect, preflight
    from search.tracking import open_search_tracking

    quiet_driver()
    search_dir = Path(_absolute(out_dir)) / str(name)
    if not (search_dir / SEARCH_FILE).is_file():
        known = sorted(p.parent.name for p in Path(_absolute(out_dir)).glob(f"*/{SEARCH_FILE}"))
        raise SearchError(f"no search {name!r} to resume in {_absolute(out_dir)} (no {SEARCH_FILE}); "
                          f"searches there: {', '.join(known) or 'none'}")
    settings = read_settings(search_dir)
    handle = data if data is not None else reload_handle(settings, search_dir)
    connect(address, worker_environment())
    experiment_path = f"{settings.storage_path}/{settings.experiment}"
    if not tune.Tuner.can_restore(experiment_path):
        raise SearchError(f"search {name!r} has no Tune state at {experiment_path} to resume from: it was "
                          "stopped before its first trial started; start it again under a new --name")
    preflight(data_handle=handle, weights_dir=settings.weights_dir, tracking_uri=settings.tracking_uri,
              storage=settings.storage_path if settings.experiment != TUNE_DIR else None,
              allow_unauthenticated_tracking=bool(settings.allow_unauthenticated_tracking))
    open_search_tracking(search_dir, settings.tracking_uri, settings.name, {})
    from search.feature_share import share_features  # the unfinished trials' small caches, as at the start

    feature_refs = {} if trainable is not None else share_features(
        unfinished_trial_configs(experiment_path), handle, cpus=float(settings.cpus_per_trial),
        gpus=float(settings.gpus_per_trial))
    tuner = tune.Tuner.restore(experiment_path, trainable=_trainable(trainable, handle, settings, feature_refs),
                               resume_unfinished=True, resume_errored=True)
    print(f"resuming search {name} from {experiment_path}", flush=True)
    tuner.fit()
    return finish_search(search_dir)


def unfinished_trial_configs(experiment_path: str) -> list[dict]:
    """The trial configs of a saved Tune experiment's trials that have not finished (what a resume runs)."""
    from ray.tune import ExperimentAnalysis

    return [trial.config[TRIAL_CONFIG_KEY] for trial in ExperimentAnalysis(experiment_path).trials
            if trial.status != "TERMINATED"]


def finish_search(search_dir: Path) -> Path:
    """Fold table, Pareto front and report tables from trials.csv; the story on MLflow's parent run;
    print where everything is and how much disk the search holds."""
    import pandas as pd

    from search.aggregate import fold_table
    from search.pareto import export_front
    from search.uncertainty import front_with_uncertainty
    from search.summary import browse_hint, disk_line, log_search_summary, write_csv_table, write_report_tables

    settings = read_settings(search_dir)
    trials = pd.read_csv(search_dir / "trials.csv", dtype={"config_id": str})
    table = fold_table(trials, n_folds=settings.n_folds)
    write_csv_table(table, search_dir / "fold_table.csv")
    objectives = settings.objectives or OBJECTIVES
    if table["full_budget"].any() and len(objectives) >= 2:  # the front of full-budget configs only
        flagged, _, note = front_with_uncertainty(search_dir, table, objectives)
        export_front(flagged, objectives, search_dir, note=note)
        write_report_tables(search_dir)
    log_search_summary(search_dir, table, trials)
    print(f"\n{int(table['full_budget'].sum())} of {len(table)} configs trained every fold for every epoch "
          "(full budget); `cxrtune report` and `cxrtune pareto` show those, --all-configs the others too")
    unfinished = int((~trials["status"].isin(["TERMINATED", "ERROR"])).sum()) if "status" in trials else 0
    if unfinished:  # Ctrl-C: Tune stopped the trials and saved its state
        print(f"\n{unfinished} trial(s) unfinished: continue with "
              f"`cxrtune search --resume {search_dir.name} --out {search_dir.parent}`")
    print(f"\nsearch outputs: {search_dir}  (trials.csv, fold_table.csv, pareto.csv/.png, report/, "
          f"mlflow_runs.json)")
    print(f"disk: {disk_line(search_dir, dataclasses.asdict(settings))}")
    print(f"browse the runs:  {browse_hint(settings.tracking_uri, search_dir)}", flush=True)
    return search_dir
