"""`cxrtune report | pareto | train-final | predict`: what users take away from a search.

TensorFlow, Ray and MLflow are imported inside the command functions (keeps `cxrtune --help` fast).
"""
from __future__ import annotations

from pathlib import Path

from search.cli.arguments import add_search_arguments, positive_int
from search.errors import SearchError

DEFAULT_OBJECTIVES = "cv_val_auc_mean:max,trainable_params:min"


def register(subparsers) -> None:
    """Add `report`, `pareto`, `train-final` and `predict` to the `cxrtune` parser."""
    _register_report(subparsers)
    _register_pareto(subparsers)
    _register_train_final(subparsers)
    _register_predict(subparsers)


def _register_report(subparsers) -> None:
    parser = subparsers.add_parser(
        "report", help="study-layout tables of a search (Markdown + CSV), logged to MLflow",
        description="Fold-aggregated tables in the study's layout (source weights x method, one per backbone and "
        "metric: binary accuracy and AUC, mean ± std over folds) and per-class AUC, of the full-budget configs. "
        "Written to OUT/NAME/report/ and logged to the search's parent MLflow run. --test adds the study's own "
        "tables: each fold's final model scored on the held-out test part.",
    )
    add_search_arguments(parser)
    parser.add_argument("--to", type=Path, default=None, help="write the files here (default: OUT/NAME/report)")
    parser.add_argument("--all-configs", action="store_true",
                        help="also show configs the scheduler stopped early, marked with the epoch they reached")
    parser.add_argument("--test", action="store_true",
                        help="score each fold's final model (full-budget configs) on the test part: the study's "
                             "tables, mean ± std over the fold models, written to test_table.csv")
    parser.add_argument("--data", type=Path, default=None,
                        help="prepared dataset for --test (default: the search's, from search.json)")
    parser.set_defaults(func=_report)


def _report(args) -> int:
    from search.report import write_report
    from search.results import load_search, log_to_parent_run

    results = load_search(args.name, args.out)
    paths = write_report(results, args.to or results.search_dir / "report", all_configs=args.all_configs)
    print(paths["markdown"].read_text())
    if args.test:
        from search.heldout import write_test_tables

        paths.update(write_test_tables(results, args.to or results.search_dir / "report", data_path=args.data))
        print(paths["test_markdown"].read_text())
    run_id = log_to_parent_run(results, paths.values(), "report")
    print(f"written: {paths['markdown'].parent}" + (f"; logged to MLflow run {run_id}" if run_id else ""))
    return 0


def _register_pareto(subparsers) -> None:
    parser = subparsers.add_parser(
        "pareto", help="cost-vs-accuracy Pareto front of a search (CSV, JSON, PNG), logged to MLflow",
        description="Flag the configs on the Pareto front of two or more fold-table columns. Costs: "
        "trainable_params, steady_epoch_time_s, gpu_seconds_per_epoch, total_gpu_seconds; metrics: "
        "cv_<metric>_mean (e.g. cv_val_auc_mean). The front is over full-budget configs (every fold trained every "
        "epoch); --all-configs adds the others, marked with the epoch they reached, never on the front. Each "
        "config gets a 95% patient-bootstrap interval of its pooled out-of-fold AUC and a paired test against the "
        "front's best (p_vs_best, tie_group).",
    )
    add_search_arguments(parser)
    parser.add_argument("--objectives", default=DEFAULT_OBJECTIVES,
                        help=f"COLUMN:max|min, comma-separated (default: {DEFAULT_OBJECTIVES})")
    parser.add_argument("--all-configs", action="store_true",
                        help="also show configs the scheduler stopped early (marked, never on the front)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="patient-bootstrap resamples (default 1000)")
    parser.add_argument("--to", type=Path, default=None, help="write the files here (default: OUT/NAME)")
    parser.set_defaults(func=_pareto)


def _pareto(args) -> int:
    from search.pareto import export_front, front_over_full_budget, parse_objectives
    from search.report import summary_lines
    from search.results import load_search, log_to_parent_run
    from search.uncertainty import add_uncertainty

    objectives = parse_objectives(args.objectives)
    if args.bootstrap < 100:
        raise SearchError(f"--bootstrap {args.bootstrap}: use at least 100 resamples (default 1000)")
    results = load_search(args.name, args.out)
    flagged = front_over_full_budget(results.table, objectives, all_configs=args.all_configs)
    flagged, note = add_uncertainty(flagged, results, n_resamples=args.bootstrap)
    paths = export_front(flagged, objectives, args.to or results.search_dir, note=note)
    front = flagged[flagged["on_front"].astype(bool)]
    print(f"Pareto front of the full-budget configs ({','.join(f'{k}:{v}' for k, v in objectives.items())}): "
          f"{len(front)} of {len(flagged)} configs")
    print("\n".join(summary_lines(front)))
    print(note)
    # One artifact folder per objective set, so fronts over different costs sit side by side in MLflow.
    folder = "pareto/" + "_".join(f"{name}-{way}" for name, way in objectives.items())
    run_id = log_to_parent_run(results, paths.values(), folder)
    print(f"written: {', '.join(str(path) for path in paths.values())}"
          + (f"; logged to MLflow run {run_id}" if run_id else ""))
    return 0


def _register_train_final(subparsers) -> None:
    parser = subparsers.add_parser(
        "train-final", help="retrain a config on all non-test data, evaluate on the test part, register it",
        description="Retrain one config of a search (default: the best by cv_val_auc_mean among complete configs) "
        "on every cv row, evaluate on the held-out test rows (per-class AUC, macro AUC with a bootstrap "
        "confidence interval, binary accuracy), save a .keras model with its settings beside it, and log and "
        "register it in MLflow.",
    )
    add_search_arguments(parser)
    parser.add_argument("--config", dest="config_id", default=None, help="config_id to train (default: the best)")
    parser.add_argument("--epochs", type=positive_int, default=None, help="epochs (default: the config's)")
    parser.add_argument("--bootstrap", type=positive_int, default=1000, help="bootstrap resamples for the AUC interval")
    parser.add_argument("--to", type=Path, default=None,
                        help="write the model here (default: OUT/NAME/final/CONFIG_ID)")
    parser.add_argument("--data", type=Path, default=None,
                        help="prepared dataset (default: the search's, from search.json)")
    parser.add_argument("--weights-dir", type=Path, default=None,
                        help="source weights folder (default: the search's, from search.json)")
    parser.add_argument("--model-name", default=None,
                        help="MLflow registered model name (default: cxrtune-NAME)")
    parser.set_defaults(func=_train_final)


def _train_final(args) -> int:
    from search.final import train_final

    outcome = train_final(args.name, out_dir=args.out, config_id=args.config_id, epochs=args.epochs,
                          n_bootstrap=args.bootstrap, model_dir=args.to, data_path=args.data,
                          weights_dir=args.weights_dir, registered_name=args.model_name)
    print("\n".join(outcome.summary_lines()))
    if outcome.clinical is not None:
        print(outcome.clinical if isinstance(outcome.clinical, str) else "\n".join(outcome.clinical.summary_lines()))
    return 0


def _register_predict(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict", help="per-category probabilities for DICOM or PNG files from a train-final model",
        description="Convert each file exactly as training did (DICOM or PNG), apply the model's preprocessing and "
        "print one row of per-category probabilities per file; optionally write a Grad-CAM heatmap per image.",
    )
    parser.add_argument("model", metavar="MODEL", type=Path, help="a .keras file written by train-final")
    parser.add_argument("files", metavar="FILE", type=Path, nargs="+", help="DICOM or PNG files")
    parser.add_argument("--format", choices=("json", "csv"), default="json", help="output format (default: json)")
    parser.add_argument("--gradcam", type=Path, default=None, metavar="DIR",
                        help="write a Grad-CAM heatmap PNG per image into DIR")
    parser.add_argument("--output", type=Path, default=None, help="write to this file instead of stdout")
    parser.add_argument("--calls", default=None, metavar="POINT",
                        help="add 0/1 calls at an operating point saved by `cxrtune evaluate` "
                             "(youden, specificity_0.90, specificity_0.95)")
    parser.set_defaults(func=_predict)


def _predict(args) -> int:
    from search.predict import format_predictions, predict_files

    predictions = predict_files(args.model, args.files, gradcam_dir=args.gradcam, calls=args.calls)
    text = format_predictions(predictions, args.format)
    if args.output:
        args.output.write_text(text)
    else:
        print(text, end="")
    failed = [row["file"] for row in predictions if row["error"]]
    if failed:
        import sys

        print(f"cxrtune predict: {len(failed)} of {len(predictions)} file(s) could not be read; "
              "see their `error` field", file=sys.stderr)
        return 2
    return 0
