"""The `cxrtune` command line: one subcommand per user task, errors printed in one line.

Each area registers its own subcommands (search/cli/*.py) so this file stays a dispatcher.
"""
from __future__ import annotations

import argparse
import os
import sys
from importlib import metadata

from data.errors import DataError
from search.cli import demo, evaluate, folds, outbox, prepare, results, search, spaces, synth, train
from search.errors import SearchError
from spaces.errors import SpaceError
from trainables.errors import TrainableConfigError, WeightsError

# Modules that each define `register(subparsers)`, in the order `cxrtune --help` lists their commands. They
# import TensorFlow/Ray only inside their command functions (keeps `cxrtune --help` fast).
COMMAND_MODULES = (synth, prepare, folds, spaces, train, search, results, demo, evaluate, outbox)

USER_ERRORS = (DataError, SpaceError, TrainableConfigError, WeightsError, SearchError)
VERBOSE_HELP = "show the libraries' own logs too (TensorFlow's C++ start-up lines, Ray's worker INFO lines)"
# Versions shown by --version: read from the installed packages' metadata, without importing them.
STACK = ("tensorflow", "keras", "ray", "mlflow", "pydicom")


def version_text() -> str:
    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    stack = ", ".join(f"{name} {version(name)}" for name in STACK)
    return f"cxrtune {version('cxrtune')} (Python {sys.version.split()[0]}; {stack})"


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
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keeps --version on one line
    )
    parser.add_argument("--version", action="version", version=version_text())
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.register(subparsers)
    for command in subparsers.choices.values():  # `cxrtune demo --verbose` as well as `cxrtune --verbose demo`
        if "--verbose" not in command._option_string_actions:  # a command may define its own
            command.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
    return parser


def set_verbosity(argv: list[str]) -> None:
    """Before anything imports TensorFlow: quiet environment unless --verbose (see search/quiet.py)."""
    from search.quiet import VERBOSE_VARIABLE, quiet_driver

    if "--verbose" in argv:
        os.environ[VERBOSE_VARIABLE] = "1"
    quiet_driver()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    set_verbosity(argv)
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

