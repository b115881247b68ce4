"""Subcommands of `cxrtune` (see search/cli.py). Filled in by the area that owns them."""


def register(subparsers) -> None:
    """Add this area's subcommands to the `cxrtune` parser."""
