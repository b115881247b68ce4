"""`cxrtune evaluate`: the clinical evaluation of a train-final model (search/evaluation/clinical.py).

TensorFlow and MLflow are imported inside the command function (keeps `cxrtune --help` fast).
"""
from __future__ import annotations

from pathlib import Path

from search.errors import SearchError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="clinical evaluation of a train-final model: intervals, calibration, operating points, "
                         "subgroups, external data, model card",
        description="Per-category and macro AUC and average precision with patient-bootstrap 95%% intervals, "
        "ECE, Brier score and a reliability diagram (optionally after per-category temperature scaling), "
        "sensitivity/specificity/PPV/NPV at thresholds chosen on validation predictions, subgroup gaps by sex, "
        "age band and view position, and a Markdown model card. Thresholds and temperatures are saved in the "
        "model's model.json (predict --calls uses them).")
    parser.add_argument("model", metavar="MODEL", type=Path, help="a model.keras written by train-final")
    parser.add_argument("--data", required=True, type=Path, help="prepared dataset to evaluate on")
    parser.add_argument("--split", choices=("test", "all"), default="test", help="rows evaluated (default: test)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: MODEL_DIR/evaluation)")
    parser.add_argument("--val-predictions", type=Path, default=None,
                        help="CSV of out-of-fold validation predictions (image_id + one column per category) to "
                             "choose thresholds and temperatures on (default: the model on cv fold --val-fold)")
    parser.add_argument("--val-fold", type=int, default=0, help="cv fold used when no --val-predictions (default 0)")
    parser.add_argument("--specificity", default="0.90,0.95",
                        help="target specificities for operating points, comma-separated (default 0.90,0.95)")
    parser.add_argument("--temperature", action="store_true",
                        help="fit one temperature per category on the validation predictions and save it")
    parser.add_argument("--gap", type=float, default=0.05, help="subgroup AUC gap to flag (default 0.05)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="patient resamples for intervals (default 1000)")
    parser.add_argument("--min-positives", type=int, default=10,
                        help="categories with fewer positives are reported but left out of the macro (default 10)")
    parser.add_argument("--mapping", default=None,
                        help="external data with another taxonomy: a YAML mapping file, or study-nih / nih-study")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--no-save", action="store_true", help="do not write thresholds/temperatures into model.json")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI of --run-id")
    parser.add_argument("--run-id", default=None, help="MLflow run to log figures, files and the model card to")
    parser.set_defaults(func=run_evaluate)


def parse_specificities(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise SearchError(f"--specificity {text!r}: comma-separated numbers between 0 and 1 (e.g. 0.90,0.95)") from None


def run_evaluate(args) -> int:
    from search.evaluation.clinical import evaluate_model

    if bool(args.tracking_uri) != bool(args.run_id):
        raise SearchError("--tracking-uri and --run-id go together (the run to log the evaluation to)")
    outcome = evaluate_model(args.model, args.data, split=args.split, out_dir=args.out,
                             val_predictions=args.val_predictions, val_fold=args.val_fold,
                             specificities=parse_specificities(args.specificity), temperature=args.temperature,
                             gap=args.gap, n_bootstrap=args.bootstrap, min_positives=args.min_positives,
                             mapping=args.mapping, seed=args.seed, save_to_model=not args.no_save)
    print("\n".join(outcome.summary_lines()))
    if args.run_id:
        from search.evaluation.figures import log_evaluation

        log_evaluation(args.tracking_uri, args.run_id, outcome.evaluation, outcome.paths, outcome.model_card,
                       args.model.with_suffix(".json"))
        print(f"logged to MLflow run {args.run_id}")
    return 0
