"""Run and resume a search: configs x folds -> Ray Tune trials, MLflow runs, trials.csv, fold table, front.

The driver expands the space itself (seeded) and grids over whole (config, fold) trial configs under one
Tune key, so every fold of a config sees the same values (see PITFALLS: grid_search beside sampled domains).
Every path is made absolute here, because each trial runs in its own working directory.
"""
from __future__ import annotations

import json
import os
import pickle
import re
import shutil
from pathlib import Path

from search.errors import SearchError
from search.quiet import quiet_driver, worker_environment
from search.trials import TRIAL_CONFIG_KEY, trial_identity

SEARCH_FILE = "search.json"
FOLDS_FILE = "folds.csv"
HANDLE_FILE = "data_handle.pkl"
SCHEDULER_STATE_FILE = "scheduler_state.pkl"
TUNE_DIR = "tune"
METRIC, MODE = "val_auc", "max"
OBJECTIVES = {"cv_val_auc_mean": "max", "trainable_params": "min"}
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DEFAULT_FOLDS = 5  # when neither --folds nor the dataset says how many
# What a finished trial keeps (search/checkpoints.py): its final weights (no optimizer state), or nothing.
KEEP_CHECKPOINTS = ("final", "none")


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


def dataset_folds(data_path) -> int | None:
    """How many cv folds a PREPARED dataset already has (None when it has none yet)."""
    from data.manifest import load_prepared

    manifest = load_prepared(data_path).manifest
    if "fold" not in manifest.columns or manifest["fold"].isna().any():
        return None
    return int(manifest.loc[manifest["split"] == "cv", "fold"].nunique()) or None


def _prepared_handle(data_path: str, n_folds: int, seed: int, search_dir: Path, data_mode: str):
    """(handle, folds note) for a PREPARED path.

    Folds live in PREPARED/manifest.csv, where trials (PathHandle reads it on each node), `report` and
    `train-final` all find them; a search assigns them there when the data has none, and keeps a copy in
    NAME/folds.csv so that a resumed search can tell whether someone reassigned them meanwhile.
    """
    import pandas as pd

    from data.handle import make_handle
    from data.manifest import load_prepared

    manifest = load_prepared(data_path).manifest
    folds_file = search_dir / FOLDS_FILE
    if "fold" not in manifest.columns or manifest["fold"].isna().any():
        from data.folds import assign_prepared_folds

        manifest, _ = assign_prepared_folds(data_path, n_folds=n_folds, seed=seed)
        note = f"folds assigned by the search (seed {seed}), written to its manifest.csv"
    else:
        note = "folds from its manifest.csv"
    found = sorted(int(f) for f in manifest.loc[manifest["split"] == "cv", "fold"].unique())
    if len(found) != n_folds:
        raise SearchError(f"{data_path} has {len(found)} cv folds ({found}) but the search asks for "
                          f"--folds {n_folds}: pass --folds {len(found)}, or reassign with `cxrtune folds`")
    current = manifest[["image_id", "split", "fold"]].astype({"image_id": str, "fold": int})
    if folds_file.is_file():
        saved = pd.read_csv(folds_file, dtype={"image_id": str})
        if not saved.sort_values("image_id").reset_index(drop=True).equals(
                current.sort_values("image_id").reset_index(drop=True)):
            raise SearchError(f"the folds in {data_path}/manifest.csv differ from those this search started "
                              f"with ({folds_file}): restore them, or start a new search")
    else:
        current.to_csv(folds_file, index=False)
    return make_handle(data_path, mode=data_mode), note


def _data_handle(data, n_folds: int, seed: int, search_dir: Path, data_mode: str):
    """(handle, categories, description for search.json) from a PREPARED path or a ready handle."""
    if hasattr(data, "load"):  # a DatasetHandle given by the caller (tests, notebooks): kept for resume
        (search_dir / HANDLE_FILE).write_bytes(pickle.dumps(data))
        categories = list(getattr(data, "categories", None) or data.load()[3])
        return data, categories, {"kind": "handle", "file": HANDLE_FILE}
    path = _absolute(data)
    handle, note = _prepared_handle(path, n_folds, seed, search_dir, data_mode)
    print(f"data: {path} ({type(handle).__name__}; {note})", flush=True)
    categories = list(getattr(handle, "categories", None) or handle.load()[3])
    return handle, categories, {"kind": "prepared", "path": path, "mode": data_mode}


def _reload_handle(settings: dict, search_dir: Path):
    described = settings["data"]
    if described["kind"] == "handle":
        return pickle.loads((search_dir / described["file"]).read_bytes())
    return _prepared_handle(described["path"], settings["n_folds"], settings["seed"], search_dir,
                            described.get("mode", "auto"))[0]


def _trial_configs(configs: list[dict], n_folds: int, n_classes: int, weights_dir: str | None) -> list[dict]:
    extra = {"checkpoint_every": 1, "n_classes": n_classes}
    if weights_dir:
        extra["weights_dir"] = weights_dir
    return [{**config, "fold": fold, **extra} for config in configs for fold in range(n_folds)]


def _trainable(trainable, handle, cpus: float, gpus: float, feature_refs: dict | None = None):
    from ray import tune

    if trainable is None:
        from trainables.train import train_fold as trainable
    shared = {"feature_refs": feature_refs} if feature_refs else {}  # small feature caches (feature_share.py)
    return tune.with_resources(tune.with_parameters(trainable, data=handle, **shared), {"cpu": cpus, "gpu": gpus})


def trial_dirname(trial) -> str:
    """'<config_id>-fold<k>_<trial_id>': short, and says which trial it is (Tune's default spells the config)."""
    config_id, fold = trial_identity(trial.config)
    return f"{config_id}-fold{fold}_{trial.trial_id}"


def _callbacks(search_dir: Path, n_folds: int, scheduler, progress_interval_s: float, configs: list[dict],
               n_trials: int, keep_checkpoints: str) -> list:
    from search.checkpoints import CheckpointPruner
    from search.progress import ProgressTable
    from search.tracking import MlflowSearchCallback, config_run_names
    from search.trials import TrialsCsvWriter

    return [MlflowSearchCallback(str(search_dir), n_folds, scheduler, config_run_names(configs)),
            TrialsCsvWriter(str(search_dir / "trials.csv"), scheduler),
            CheckpointPruner(keep_checkpoints),
            ProgressTable(METRIC, MODE, progress_interval_s, n_trials=n_trials)]


def run_search(*, data, space, name: str, out_dir, n_folds: int | None = None, scheduler: str | None = None,
               gpus_per_trial: float = 0, cpus_per_trial: float = 1, max_concurrent: int | None = None,
               address: str | None = None, storage: str | None = None, tracking_uri: str | None = None,
               max_failures: int = 1, overrides: dict | None = None, available_sources=None,
               weights_dir=None, trainable=None, seed: int = 0, grace_period: int = 1,
               reduction_factor: float = 3, progress_interval_s: float = 15.0, data_mode: str = "auto",
               objectives: dict[str, str] | None = None, allow_unauthenticated_tracking: bool = False,
               keep_checkpoints: str = "final", augment: str = "random") -> Path:
    """Run a new search named `name` under `out_dir`; returns the search folder (ARCHITECTURE.md §7).

    `objectives` (fold-table column -> max|min; default cv_val_auc_mean:max, trainable_params:min) are the
    front's and, with the default scheduler `mo-fold-asha` (`fold-asha` for one objective), the scheduler's.

    `n_folds` None: the dataset's folds when it has them, else 5. A search refused before it starts
    (bad settings, a taken name, unreachable tracking) leaves no folder behind."""
    quiet_driver()
    if not NAME_PATTERN.match(str(name)):
        raise SearchError(f"--name {name!r}: use 1-64 letters, digits, '_', '-' or '.', starting with a letter "
                          "or digit (it names a folder and an MLflow experiment)")
    if keep_checkpoints not in KEEP_CHECKPOINTS:
        raise SearchError(f"--keep-checkpoints {keep_checkpoints!r}: choose one of {', '.join(KEEP_CHECKPOINTS)}")
    if n_folds is None:
        n_folds = (None if hasattr(data, "load") else dataset_folds(_absolute(data))) or DEFAULT_FOLDS
    if int(n_folds) < 2:
        raise SearchError(f"--folds {n_folds}: cross-validation needs at least 2 folds")
    if augment not in ("random", "off"):
        raise SearchError(f"--augment {augment!r}: use 'random' or 'off'")
    out_dir = Path(_absolute(out_dir))
    search_dir = out_dir / name
    if (search_dir / SEARCH_FILE).is_file():
        raise SearchError(f"a search named {name!r} already exists in {out_dir}: continue it with "
                          f"`cxrtune search --resume {name} --out {out_dir}` or choose another --name")
    created = [path for path in (out_dir, search_dir) if not path.exists()]
    try:
        return _start_search(data=data, space=space, name=name, out_dir=out_dir, search_dir=search_dir,
                             n_folds=int(n_folds), scheduler=scheduler, gpus_per_trial=gpus_per_trial,
                             cpus_per_trial=cpus_per_trial, max_concurrent=max_concurrent, address=address,
                             storage=storage, tracking_uri=tracking_uri, max_failures=max_failures,
                             overrides=overrides, available_sources=available_sources, weights_dir=weights_dir,
                             trainable=trainable, seed=seed, grace_period=grace_period,
                             reduction_factor=reduction_factor, progress_interval_s=progress_interval_s,
                             data_mode=data_mode, keep_checkpoints=keep_checkpoints, objectives=objectives,
                             allow_unauthenticated_tracking=allow_unauthenticated_tracking, augment=augment)
    except Exception:
        if not (search_dir / SEARCH_FILE).is_file():  # refused before it started: leave nothing behind
            for path in reversed(created):
                shutil.rmtree(path, ignore_errors=True)
        raise


def _start_search(*, data, space, name, out_dir: Path, search_dir: Path, n_folds: int, scheduler,
                  gpus_per_trial, cpus_per_trial, max_concurrent, address, storage, tracking_uri, max_failures,
                  overrides, available_sources, weights_dir, trainable, seed, grace_period, reduction_factor,
                  progress_interval_s, data_mode, keep_checkpoints, objectives,
                  allow_unauthenticated_tracking, augment) -> Path:
    from ray import tune

    from search.cluster import check_resources, check_weights, connect, preflight
    from search.schedulers import make_scheduler
    from search.tracking import absolute_tracking_uri, open_search_tracking
    from spaces import expand

    configs = expand(space, seed=seed, overrides=overrides, available_sources=available_sources)
    objectives = dict(objectives or OBJECTIVES)
    scheduler = scheduler or ("mo-fold-asha" if len(objectives) >= 2 else "fold-asha")
    chosen = make_scheduler(scheduler, metric=METRIC, mode=MODE, max_t=max(int(c["epochs"]) for c in configs),
                            grace_period=grace_period, reduction_factor=reduction_factor,
                            state_path=str(search_dir / SCHEDULER_STATE_FILE), objectives=objectives)
    if getattr(configs, "dropped_summary", None) and configs.dropped_summary():
        print(configs.dropped_summary(), flush=True)
    search_dir.mkdir(parents=True, exist_ok=True)
    tracking_uri = absolute_tracking_uri(tracking_uri, out_dir)
    weights_dir = _absolute(weights_dir)
    # Data first: a wrong --data is the cheapest mistake to report, and weights may need a download.
    handle, categories, data_described = _data_handle(data, int(n_folds), seed, search_dir, data_mode)
    if trainable is None:  # the real trial loads source weights; a caller's own trainable may not
        check_weights(list(configs), weights_dir)
    trial_configs = _trial_configs(list(configs), int(n_folds), len(categories), weights_dir)
    for trial in trial_configs:  # frozen trunks' outputs, computed once per search (trainables/feature_cache.py)
        trial["feature_cache_dir"] = str(search_dir / "feature_cache")
        if augment == "off":
            trial["augment_views"] = 0

    cluster = connect(address, worker_environment())
    check_resources(float(cpus_per_trial), float(gpus_per_trial))
    storage_path, experiment = _storage_location(storage, search_dir)
    n_nodes = preflight(data_handle=handle, weights_dir=weights_dir, tracking_uri=tracking_uri,
                        storage=None if storage is None else storage_path,
                        allow_unauthenticated_tracking=allow_unauthenticated_tracking)
    settings = {
        "name": name, "data": data_described, "space": _space_name(space), "seed": seed,
        "overrides": overrides or {},
        "available_sources": list(available_sources) if available_sources else None,
        "n_configs": len(configs), "n_folds": int(n_folds), "n_trials": len(trial_configs),
        "categories": categories, "scheduler": scheduler, "objectives": objectives, "grace_period": grace_period,
        "reduction_factor": reduction_factor, "gpus_per_trial": gpus_per_trial,
        "cpus_per_trial": cpus_per_trial, "max_concurrent": max_concurrent, "max_failures": max_failures,
        "weights_dir": weights_dir, "tracking_uri": tracking_uri, "storage_path": storage_path,
        "experiment": experiment, "nodes": n_nodes, "cluster_cpus": cluster.get("CPU", 0),
        "cluster_gpus": cluster.get("GPU", 0), "allow_unauthenticated_tracking": allow_unauthenticated_tracking,
        "keep_checkpoints": keep_checkpoints,
        "augment": augment,
    }
    # Tracking first: a refused experiment name then leaves no search.json, so the same --name can be fixed.
    open_search_tracking(search_dir, tracking_uri, name, {k: v for k, v in settings.items()
                                                          if k not in ("categories", "data")})
    (search_dir / SEARCH_FILE).write_text(json.dumps(settings, indent=1, default=str))

    from trainables.feature_share import share_features  # small frozen-trunk caches: once, via the object store

    feature_refs = {} if trainable is not None else share_features(
        trial_configs, handle, cpus=float(cpus_per_trial), gpus=float(gpus_per_trial))
    tuner = tune.Tuner(
        _trainable(trainable, handle, float(cpus_per_trial), float(gpus_per_trial), feature_refs),
        param_space={TRIAL_CONFIG_KEY: tune.grid_search(trial_configs)},
        tune_config=tune.TuneConfig(scheduler=chosen, num_samples=1, max_concurrent_trials=max_concurrent,
                                    reuse_actors=True, trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(
            name=experiment, storage_path=storage_path, verbose=0,
            callbacks=_callbacks(search_dir, int(n_folds), chosen, progress_interval_s, list(configs),
                                 len(trial_configs), keep_checkpoints),
            failure_config=tune.FailureConfig(max_failures=int(max_failures)),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
    )
    print(f"search {name}: {len(configs)} config(s) x {n_folds} folds = {len(trial_configs)} trials, scheduler "
          f"{scheduler}, {n_nodes} node(s)", flush=True)
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
    settings_file = search_dir / SEARCH_FILE
    if not settings_file.is_file():
        known = sorted(p.parent.name for p in Path(_absolute(out_dir)).glob(f"*/{SEARCH_FILE}"))
        raise SearchError(f"no search {name!r} to resume in {_absolute(out_dir)} (no {SEARCH_FILE}); "
                          f"searches there: {', '.join(known) or 'none'}")
    settings = json.loads(settings_file.read_text())
    handle = data if data is not None else _reload_handle(settings, search_dir)
    connect(address, worker_environment())
    experiment_path = f"{settings['storage_path']}/{settings['experiment']}"
    if not tune.Tuner.can_restore(experiment_path):
        raise SearchError(f"search {name!r} has no Tune state at {experiment_path} to resume from: it was "
                          "stopped before its first trial started; start it again under a new --name")
    preflight(data_handle=handle, weights_dir=settings.get("weights_dir"),
              tracking_uri=settings["tracking_uri"],
              storage=settings["storage_path"] if settings["experiment"] != TUNE_DIR else None,
              allow_unauthenticated_tracking=bool(settings.get("allow_unauthenticated_tracking")))
    open_search_tracking(search_dir, settings["tracking_uri"], settings["name"], {})
    tuner = tune.Tuner.restore(
        experiment_path,
        trainable=_trainable(trainable, handle, float(settings["cpus_per_trial"]),
                             float(settings["gpus_per_trial"])),
        resume_unfinished=True, resume_errored=True)
    print(f"resuming search {name} from {experiment_path}", flush=True)
    tuner.fit()
    return finish_search(search_dir)


def finish_search(search_dir: Path) -> Path:
    """Fold table, Pareto front and report tables from trials.csv; the story on MLflow's parent run;
    print where everything is and how much disk the search holds."""
    import pandas as pd

    from search.aggregate import fold_table
    from search.pareto import export_front
    from search.uncertainty import front_with_uncertainty
    from search.summary import browse_hint, disk_line, log_search_summary, write_csv_table, write_report_tables

    settings = json.loads((search_dir / SEARCH_FILE).read_text())
    trials = pd.read_csv(search_dir / "trials.csv", dtype={"config_id": str})
    table = fold_table(trials, n_folds=settings["n_folds"])
    write_csv_table(table, search_dir / "fold_table.csv")
    objectives = settings.get("objectives") or OBJECTIVES
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
    print(f"disk: {disk_line(search_dir, settings)}")
    print(f"browse the runs:  {browse_hint(settings['tracking_uri'], search_dir)}", flush=True)
    return search_dir
