"""argparse value types that refuse bad values while the command line is parsed, before any work, and the
arguments several commands share (a search's NAME and --out).

argparse prefixes their message with the flag ("argument --workers: ..."), so each error names the flag,
what was given and what is accepted, in the user's terms, before TensorFlow or Ray is imported.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

DEFAULT_OUT = Path("cxrtune-runs")  # where searches are written, and read from, without --out


def add_out_argument(parser: argparse.ArgumentParser, help_text: str = "the folder searches were written to") -> None:
    """--out: the folder that holds searches (one folder per search NAME)."""
    parser.add_argument("--out", metavar="DIR", type=Path, default=DEFAULT_OUT,
                        help=f"{help_text} (default: ./{DEFAULT_OUT})")


def add_search_arguments(parser: argparse.ArgumentParser) -> None:
    """NAME and --out of a command that reads a search someone ran."""
    parser.add_argument("name", metavar="NAME", help="search name under --out, or a search folder")
    add_out_argument(parser)


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def at_least(minimum: int):
    """A type: a whole number >= minimum."""
    def parse(text: str) -> int:
        value = _whole_number(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is not accepted; give a whole number >= {minimum}")
        return value

    parse.__name__ = f"whole number >= {minimum}"
    return parse


positive_int = at_least(1)
non_negative_int = at_least(0)


def number_at_least(minimum: float, *, inclusive: bool = True):
    """A type: a finite number >= minimum (or > minimum)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value < minimum or (not inclusive and value == minimum):
            relation = ">=" if inclusive else ">"
            raise argparse.ArgumentTypeError(f"{text} is not accepted; give a finite number {relation} {minimum:g}")
        return value

    parse.__name__ = "number"
    return parse


def fraction_between_0_and_1(text: str) -> float:
    """A type: a number strictly between 0 and 1 (a share of the images)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not accepted; give a number between 0 and 1 (exclusive)")
    return value
