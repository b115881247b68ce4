"""A space -> the finite, seeded list of configs that `search` crosses with folds.

Grid keys are crossed in CONFIG_KEYS order, backbone and method outermost. Distributions are drawn
`num_samples` times per grid point from a random generator seeded by the expansion seed *and* the grid
point itself, so the same seed gives the same configs in any process, and adding a value to one list
does not change the draws of the other grid points.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import random

from spaces import methods, vocabulary
from spaces.configs import CONFIG_KEYS, validate_config
from spaces.errors import SpaceError
from spaces.presets import load_space
from spaces.space import Distribution, Space, parse_space

# The keys expanded per (backbone, method), in the order configs list them.
PER_METHOD_KEYS = CONFIG_KEYS[3:]


class Expansion(list):
    """The configs (a plain list of dicts), plus `dropped`: configs left out because their source
    weights are not available, so the caller can say so (see `dropped_summary`)."""

    def __init__(self, configs=(), dropped=()):
        super().__init__(configs)
        self.dropped = list(dropped)

    def dropped_summary(self) -> str:
        """One line naming what was left out and why, or "" when nothing was."""
        if not self.dropped:
            return ""
        counts: dict[str, int] = {}
        for config in self.dropped:
            counts[config["source_weights"]] = counts.get(config["source_weights"], 0) + 1
        sources = ", ".join(f"{source} ({count})" for source, count in counts.items())
        return f"left out {len(self.dropped)} config(s) whose source weights are not available: {sources}"


def expand(space, seed: int = 0, *, overrides: dict | None = None, available_sources=None) -> Expansion:
    """The configs of `space` (a Space, a preset name, a YAML path or a mapping), each with its config_id.

    `overrides` replaces top-level keys of the space before expansion (same forms as the YAML; None
    values are ignored), e.g. `{"epochs": 2, "image_size": 64}`. `available_sources`, when given, keeps
    only configs whose `source_weights` is in it (`none`, method D's, is always available); the rest are
    in the result's `dropped`. Configs without an explicit `seed` in the space get `seed`.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SpaceError(f"seed: {seed!r} is not accepted; give a whole number of at least 0")
    space = load_space(space)
    if overrides is not None and not isinstance(overrides, dict):
        raise SpaceError(f"overrides: give a mapping of space keys to values, got {type(overrides).__name__}")
    if overrides:
        given = {key: value for key, value in overrides.items() if value is not None}
        space = parse_space({**space.to_dict(), **given}, name=space.name)
    configs = _all_configs(space, seed)
    if available_sources is None:
        return Expansion(configs)
    if isinstance(available_sources, str):  # one name, not its characters
        available_sources = [available_sources]
    available = set(available_sources) | {vocabulary.NO_SOURCE}
    unknown = sorted(available - set(vocabulary.SOURCES) - {vocabulary.NO_SOURCE})
    if unknown:
        raise SpaceError(
            f"available_sources: {', '.join(map(repr, unknown))} not known; "
            f"accepted: {', '.join(vocabulary.SOURCES)}"
        )
    kept = [config for config in configs if config["source_weights"] in available]
    dropped = [config for config in configs if config["source_weights"] not in available]
    if not kept:
        missing = sorted({config["source_weights"] for config in dropped})
        raise SpaceError(
            f"space {space.name!r}: every config needs source weights that are not available "
            f"({', '.join(missing)}); available: {', '.join(sorted(available_sources)) or 'none'}"
        )
    return Expansion(kept, dropped)


def _all_configs(space: Space, seed: int) -> list[dict]:
    configs: dict[str, dict] = {}  # by config_id: a grid point without draws repeats for num_samples
    for backbone, method in itertools.product(space.choices("backbone"), space.choices("method")):
        grid, sampled = {}, {}
        for key in PER_METHOD_KEYS:
            choices = space.choices(key, method)
            if key == "freeze":
                choices = _unique(methods.normalise_freeze(backbone, method, value) for value in choices)
            if key == "seed" and "seed" not in space.entries:
                choices = [seed]
            if isinstance(choices, Distribution):
                sampled[key] = choices
            else:
                grid[key] = choices
        for values in itertools.product(*grid.values()):
            point = {"backbone": backbone, "method": method, **dict(zip(grid, values))}
            draws = random.Random(_point_seed(seed, point))
            for _ in range(space.num_samples if sampled else 1):
                # Draw in a fixed key order; rng.random() is the same on every platform for a given seed.
                drawn = {key: sampled[key].draw(draws.random()) for key in sorted(sampled)}
                config = validate_config({**point, **drawn})
                configs.setdefault(config["config_id"], _in_key_order(config))
    return list(configs.values())


def _point_seed(seed: int, point: dict) -> int:
    canonical = json.dumps([seed, point], sort_keys=True, separators=(",", ":"))
    return int.from_bytes(hashlib.sha256(canonical.encode("utf-8")).digest()[:8], "big")


def _unique(values) -> list:
    result = []
    for value in values:
        if value not in result:
            result.append(value)
    return result


def _in_key_order(config: dict) -> dict:
    return {key: config[key] for key in CONFIG_KEYS}
