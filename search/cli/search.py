"""`cxrtune search`: run a search of configs x folds on Ray Tune, or resume an interrupted one."""
from __future__ import annotations

import argparse

from search.cli.arguments import add_out_argument, non_negative_int, number_at_least, positive_int
from search.errors import SearchError
from search.settings import SearchSettings


def register(subparsers) -> None:
    """Add `cxrtune search` to the `cxrtune` parser."""
    parser = subparsers.add_parser(
        "search", help="search configs x folds on Ray Tune (local or a cluster), logged to MLflow",
        description="Run one Ray Tune trial per (config, fold) with fold-aware ASHA, log to MLflow, and write "
                    "trials.csv, fold_table.csv and the Pareto front. `--resume NAME` continues a search "
                    "whose driver was interrupted.")
    parser.add_argument("--data", metavar="PREPARED", help="a prepared dataset folder (cxrtune prepare/synth)")
    parser.add_argument("--space", metavar="NAME|FILE.yaml", help="a preset (demo, paper) or a space YAML")
    parser.add_argument("--name", help="the search's name: a folder under --out and the MLflow experiment")
    parser.add_argument("--resume", metavar="NAME", help="continue the interrupted search NAME instead")
    add_out_argument(parser, "output folder: one folder per search, and the default MLflow store")
    parser.add_argument("--folds", metavar="K", type=int, default=None,
                        help="cross-validation folds per config (default: the dataset's folds, else 5)")
    parser.add_argument("--scheduler", default=None, choices=("mo-fold-asha", "fold-asha", "asha", "fifo"),
                        help="trial scheduler (default mo-fold-asha for 2+ objectives, else fold-asha: a config's "
                             "folds are kept or stopped together; fifo trains every config fully)")
    parser.add_argument("--objectives", default="cv_val_auc_mean:max,trainable_params:min", metavar="COL:max|min,...",
                        help="fold-table columns the front (and mo-fold-asha) ranks configs on "
                             "(default cv_val_auc_mean:max,trainable_params:min)")
    parser.add_argument("--grace-period", metavar="EPOCHS", type=positive_int, default=1, help="epochs before ASHA may stop (default 1)")
    parser.add_argument("--reduction-factor", metavar="RF", type=number_at_least(1.0, inclusive=False), default=3, help="ASHA's halving rate (default 3)")
    parser.add_argument("--gpus-per-trial", metavar="F", type=number_at_least(0.0), default=0, help="GPUs per trial, fractions allowed")
    parser.add_argument("--cpus-per-trial", metavar="N", type=number_at_least(0.0, inclusive=False), default=1, help="CPUs per trial (default 1)")
    parser.add_argument("--max-concurrent", metavar="N", type=positive_int, help="at most this many trials at once")
    parser.add_argument("--address", metavar="ADDR", help="Ray cluster address (default $RAY_ADDRESS, else a local Ray)")
    parser.add_argument("--storage", metavar="PATH|URI", help="shared path or URI (s3://, gs://) for checkpoints and results")
    parser.add_argument("--tracking-uri", metavar="URI", help="MLflow tracking URI (default sqlite in --out; a server on a cluster)")
    parser.add_argument("--allow-unauthenticated-tracking", action="store_true",
                        help="log to an MLflow server that answers without authentication on a non-loopback "
                             "address (refused otherwise: anyone reaching it can read and delete runs and models)")
    parser.add_argument("--max-failures", metavar="N", type=non_negative_int, default=1, help="retries of a failed trial (default 1)")
    parser.add_argument("--weights-dir", metavar="DIR", help="folder of source weight files (trainables' registry)")
    parser.add_argument("--available-sources", metavar="LIST",
                        help="comma-separated source weights that exist; configs needing others are left out")
    parser.add_argument("--data-mode", default="auto", choices=("auto", "memory", "path"),
                        help="how data reaches trials: object store (memory), a shared path, or by size (auto)")
    parser.add_argument("--keep-checkpoints", default="final", choices=("final", "none"),
                        help="what a finished trial keeps: its final weights without optimizer state (final, "
                             "default) or nothing (none); running trials always keep their last checkpoint")
    parser.add_argument("--seed", metavar="N", type=int, default=0, help="seed of sampled keys and folds (default 0)")
    parser.add_argument("--augment", default="random", metavar="random|off|views:K",
                        help="training augmentation (default random: new every epoch); off, or views:K (K fixed "
                             "augmented views per image, 1-64), lets methods A/B train from a frozen trunk's "
                             "cached features, computed once per search")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a space key, YAML-valued (e.g. --set epochs=2 --set image_size=64)")
    parser.set_defaults(func=search_command)


def parse_overrides(items: list[str]) -> dict:
    """`key=value` strings -> {key: YAML value}; `--set learning_rate=[1e-4,1e-3]` gives a grid."""
    import yaml

    overrides = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise SearchError(f"--set {item!r}: expected KEY=VALUE, e.g. --set epochs=2")
        try:
            overrides[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise SearchError(f"--set {item!r}: the value is not valid YAML ({error})") from error
    return overrides


def search_command(args: argparse.Namespace) -> int:
    from search.tuner import resume_search, run_search

    if args.resume:
        given = [flag for flag in ("data", "space", "name") if getattr(args, flag)]
        if given:
            raise SearchError(f"--resume continues a search with its saved settings; leave out "
                              f"{', '.join('--' + flag for flag in given)}")
        resume_search(args.resume, args.out, address=args.address)
        return 0
    missing = [f"--{flag}" for flag in ("data", "space", "name") if not getattr(args, flag)]
    if missing:
        raise SearchError(f"a new search needs {', '.join(missing)} (or --resume NAME to continue one)")
    from search.pareto import parse_objectives

    objectives = parse_objectives(args.objectives)
    if (args.scheduler or "mo-fold-asha") == "mo-fold-asha" and len(objectives) >= 2:
        from search.schedulers import result_objectives

        result_objectives(objectives)  # an objective the scheduler cannot follow: one line, before Ray starts
    available = None
    if args.available_sources:
        available = [name.strip() for name in args.available_sources.split(",") if name.strip()]
    settings = SearchSettings(
        name=args.name, n_folds=args.folds, scheduler=args.scheduler, objectives=objectives,
        grace_period=args.grace_period, reduction_factor=args.reduction_factor, gpus_per_trial=args.gpus_per_trial,
        cpus_per_trial=args.cpus_per_trial, max_concurrent=args.max_concurrent, max_failures=args.max_failures,
        tracking_uri=args.tracking_uri, allow_unauthenticated_tracking=args.allow_unauthenticated_tracking,
        overrides=parse_overrides(args.overrides), available_sources=available, weights_dir=args.weights_dir,
        seed=args.seed, data_mode=args.data_mode, keep_checkpoints=args.keep_checkpoints, augment=args.augment,
        storage=args.storage)
    run_search(settings, data=args.data, space=args.space, out_dir=args.out, address=args.address)
    return 0
