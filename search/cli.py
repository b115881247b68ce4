"""The `cxrtune` command line: one subcommand per user task, errors printed in one line.

Each area registers its own subcommands (search/cli_*.py) so this file stays a dispatcher.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from data.errors import DataError
from search.errors import SearchError
from spaces.errors import SpaceError
from trainables.errors import TrainableConfigError, WeightsError

# Modules that each define `register(subparsers)`; imported eagerly, so they must import
# TensorFlow/Ray only inside their command functions (keeps `cxrtune --help` fast).
COMMAND_MODULES = (
    "search.cli_synth",
    "search.cli_prepare",
    "search.cli_folds",
    "search.cli_spaces",
    "search.cli_train",
    "search.cli_search",
    "search.cli_results",
    "search.cli_demo",
    "search.cli_evaluate",
    "search.cli_outbox",
)

USER_ERRORS = (DataError, SpaceError, TrainableConfigError, WeightsError, SearchError)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad command line is answered in one line (no usage block), exit status 2.

    Subcommand parsers inherit the class (argparse's add_subparsers uses the parent's type).
    """

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="cxrtune",
        description="Search transfer-learning strategies for small chest X-ray datasets.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def quiet_native_logs() -> None:
    """TensorFlow's C++ start-up chatter (CUDA probing, CPU features) buries the CLI's own output.

    Set before TensorFlow is imported; local Ray workers inherit it from this process. An explicit
    setting by the user wins.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


def main(argv: list[str] | None = None) -> int:
    quiet_native_logs()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except USER_ERRORS as error:
        print(f"cxrtune {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cxrtune {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
