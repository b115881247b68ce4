"""Checks of a config's vocabulary values: backbone, method, frozen depth, source weights, frozen_bn.

The names themselves (and what each means) are in spaces/vocabulary.py, the one table every room reads;
this module turns a user's value into the canonical name or a SpaceError that lists what is accepted.
"""
from __future__ import annotations

from spaces.errors import SpaceError
from spaces.vocabulary import BACKBONES, FREEZE_STAGES, FROZEN_BN_MODES, METHODS, NO_SOURCE, SOURCES


def check_backbone(value) -> str:
    name = value.lower() if isinstance(value, str) else value
    if name not in BACKBONES:
        raise SpaceError(f"backbone: {value!r} is not known; accepted: {', '.join(BACKBONES)}")
    return name


def check_method(value) -> str:
    name = value.upper() if isinstance(value, str) else value
    if name not in METHODS:
        raise SpaceError(f"method: {value!r} is not known; accepted: {', '.join(METHODS)}")
    return name


def check_frozen_bn(value) -> str:
    if value not in FROZEN_BN_MODES:
        raise SpaceError(f"frozen_bn: {value!r} is not known; accepted: {', '.join(FROZEN_BN_MODES)}")
    return value


def aliases_text() -> str:
    return "; ".join(
        f"{name} aliases " + "/".join(str(number) for number in entry.depth_aliases)
        for name, entry in BACKBONES.items()
    )


def normalise_freeze(backbone: str, method: str, value) -> str:
    """The stage name method B freezes through (`conv2`..`conv4`); `all`/`none` for A, C and D.

    `value` may be a stage name or the backbone's numeric alias (int or digit string).
    """
    fixed = METHODS[method].freeze
    if fixed is not None:
        if value is not None and value != fixed:
            raise SpaceError(f"freeze: method {method} always uses {fixed!r}, got {value!r}")
        return fixed
    if value is None:
        raise SpaceError(
            f"freeze: method B needs a depth: one of {', '.join(FREEZE_STAGES)} ({aliases_text()})"
        )
    if value in FREEZE_STAGES:
        return value
    number = _as_int(value)
    aliases = BACKBONES[backbone].depth_aliases
    if number in aliases:
        return aliases[number]
    for other, entry in BACKBONES.items():
        if number in entry.depth_aliases:
            raise SpaceError(
                f"freeze: {value!r} is a {other} depth ({entry.depth_aliases[number]}), not one of {backbone}'s; "
                f"use the stage names {', '.join(FREEZE_STAGES)} when a grid has several backbones"
            )
    raise SpaceError(
        f"freeze: {value!r} is not a depth for {backbone}; accepted: {', '.join(FREEZE_STAGES)} "
        f"or {'/'.join(str(number) for number in aliases)}"
    )


def normalise_source(method: str, value) -> str:
    """The source weights of one config; method D takes `none` and nothing else."""
    if not METHODS[method].pretrained:
        if value not in (None, NO_SOURCE):
            raise SpaceError(
                f"source_weights: method {method} trains from random initialisation and takes {NO_SOURCE!r}, "
                f"got {value!r}; use method C for pretrained weights with all layers trained"
            )
        return NO_SOURCE
    if value is None:
        return "imagenet"
    if value not in SOURCES:
        hint = " (that is method D)" if value == NO_SOURCE else ""
        raise SpaceError(
            f"source_weights: {value!r} is not accepted for method {method}{hint}; "
            f"accepted: {', '.join(SOURCES)}"
        )
    return value


def _as_int(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None
