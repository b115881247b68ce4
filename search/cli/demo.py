"""`cxrtune demo`: the whole system end to end on built-in synthetic data."""
from __future__ import annotations

from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the end-to-end demo on synthetic data (a few minutes on 2 CPU cores)",
        description="Synthesize hospital DICOM and NIH-style data, prepare both, pretrain a ChestX-ray14-style "
        "source, search methods A-D on local Ray with MLflow tracking, and print the fold table and Pareto front.",
    )
    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="output folder (default: demo-out)")
    parser.set_defaults(func=_run)


def _run(args) -> int:
    if args.out.exists() and not args.out.is_dir():
        from search.errors import SearchError

        raise SearchError(f"--out {args.out} is a file; give a new or empty folder (or an earlier demo's)")
    from search.demo import run_demo

    run_demo(args.out)
    return 0
