"""`cxrtune folds PATH`: patient-grouped, stratified test split and CV folds for a prepared dataset."""
from __future__ import annotations

from search.cli.arguments import at_least, fraction_between_0_and_1

import argparse


def register(subparsers) -> None:
    """Add `folds` to the `cxrtune` parser."""
    parser = subparsers.add_parser(
        "folds",
        help="assign the test split and cross-validation folds to a prepared dataset",
        description="Hold out a test part, then cut the rest into folds: grouped by patient, stratified "
                    "over every category. Writes `split`/`fold` into manifest.csv and `folds` into "
                    "summary.json, then prints positive images per part. NIH-prepared data keeps NIH's "
                    "official test split; only its cv images get folds.",
    )
    parser.add_argument("path", metavar="PATH", help="a prepared dataset folder (from `cxrtune prepare`)")
    parser.add_argument("--folds", dest="n_folds", metavar="K", type=at_least(2), default=5,
                        help="number of CV folds (default: 5)")
    # The flag's old spelling, kept so that scripts written before `--folds` (the other commands') still run.
    parser.add_argument("--n-folds", dest="n_folds", type=at_least(2), default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)
    parser.add_argument("--test-fraction", type=fraction_between_0_and_1, default=0.1,
                        help="share of images held out as the test part (default: 0.1; ignored for NIH)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the assignment (default: 0)")
    parser.set_defaults(func=run_folds)


def run_folds(args: argparse.Namespace) -> int:
    import warnings

    from data.folds import assign_prepared_folds, part_positive_counts

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        manifest, categories = assign_prepared_folds(args.path, args.n_folds, args.test_fraction, args.seed)
    for warning in caught:
        print(f"warning: {warning.message}")
    counts = part_positive_counts(manifest, categories)
    print(f"folds written to {args.path}: {args.n_folds} folds, seed {args.seed}; positive images per part:")
    print(counts.T.to_string())
    return 0
