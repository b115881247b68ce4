"""`cxrtune spaces`: list the presets and show what a space expands to, before spending GPU hours on it."""
from __future__ import annotations

import argparse

from spaces import CONFIG_KEYS, SpaceError, expand, load_space, preset_names


def register(subparsers) -> None:
    """Add `cxrtune spaces show|list` to the `cxrtune` parser."""
    parser = subparsers.add_parser("spaces", help="list the preset search spaces or show one's configs")
    actions = parser.add_subparsers(dest="spaces_command", metavar="ACTION", required=True)

    show = actions.add_parser(
        "show",
        help="print a space's expanded configs and its trial count",
        description="Print the configs a space expands to, as a table, and how many trials they make with folds.",
    )
    show.add_argument("space", metavar="NAME|PATH", help=f"a preset ({', '.join(preset_names())}) or a YAML file")
    show.add_argument("--folds", type=int, default=5, help="cross-validation folds per config (default 5)")
    show.add_argument("--seed", type=int, default=0, help="seed of the sampled keys and configs' seed (default 0)")
    show.add_argument(
        "--available-sources",
        metavar="LIST",
        help="comma-separated source weights that exist (e.g. chestxray8): show only configs a search could run",
    )
    show.set_defaults(func=show_space)

    listing = actions.add_parser("list", help="list the preset spaces", description="List the preset spaces.")
    listing.set_defaults(func=list_presets)


def show_space(args: argparse.Namespace) -> int:
    if args.folds < 1:
        raise SpaceError(f"--folds: {args.folds} is not accepted; give a whole number of at least 1")
    space = load_space(args.space)
    available = None
    if args.available_sources is not None:
        available = [name.strip() for name in args.available_sources.split(",") if name.strip()]
    configs = expand(space, seed=args.seed, available_sources=available)
    print(format_table(configs))
    if configs.dropped:
        print(configs.dropped_summary())
    print(
        f"{space.name}: {len(configs)} config(s) x {args.folds} fold(s) = {len(configs) * args.folds} trial(s)"
    )
    return 0


def list_presets(args: argparse.Namespace) -> int:
    for name in preset_names():
        space = load_space(name)
        print(f"{name:<8} {space.description}")
    return 0


def format_table(configs: list[dict]) -> str:
    """Configs as an aligned text table, one row per config, columns in CONFIG_KEYS order."""
    rows = [list(CONFIG_KEYS)] + [[_cell(config[key]) for key in CONFIG_KEYS] for config in configs]
    widths = [max(len(row[column]) for row in rows) for column in range(len(CONFIG_KEYS))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def _cell(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
