"""`cxrtune replay-mlflow NAME`: send MLflow what a search kept while the tracking server was away."""
from __future__ import annotations

import argparse
from pathlib import Path

from search.cli.arguments import add_search_arguments
from search.errors import SearchError


def register(subparsers) -> None:
    """Add `replay-mlflow` to the `cxrtune` parser."""
    parser = subparsers.add_parser(
        "replay-mlflow", help="log what a search kept in its outbox while the MLflow server was away",
        description="A search whose MLflow server went away keeps training and appends what it could not log "
                    "to NAME/mlflow_outbox.jsonl. This sends it, in order, to the search's tracking URI (or "
                    "--tracking-uri), replacing placeholder run ids by real ones. Safe to run again.")
    add_search_arguments(parser)
    parser.add_argument("--tracking-uri", default=None, help="send to this server instead of the search's own")
    parser.set_defaults(func=run_replay)


def run_replay(args: argparse.Namespace) -> int:
    from search.tracking import read_runs
    from search.tracking_outbox import OUTBOX_FILE, replay_outbox

    search_dir = Path(args.name) if Path(args.name).is_dir() else args.out / args.name
    runs = read_runs(search_dir) if search_dir.is_dir() else None
    if runs is None:
        raise SearchError(f"{search_dir} is not a search folder with MLflow runs (mlflow_runs.json); "
                          "give NAME under --out or the search folder")
    if not (search_dir / OUTBOX_FILE).is_file():
        print(f"nothing to replay: {search_dir} has no {OUTBOX_FILE}")
        return 0
    left = replay_outbox(search_dir, args.tracking_uri or runs["tracking_uri"])
    if left:
        raise SearchError(f"the MLflow server at {args.tracking_uri or runs['tracking_uri']} did not take all "
                          f"calls; {left} kept in {search_dir / OUTBOX_FILE}; run this again when it answers")
    print(f"replayed {search_dir / OUTBOX_FILE} to MLflow; the search's runs are complete")
    return 0
