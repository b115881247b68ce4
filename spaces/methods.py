"""The vocabulary of a config: backbones, transfer methods A-D, frozen depths, source weights.

Names only, no objects: `trainables` turns these names into models inside a trial. Kept here (and not
imported from `trainables`) so that `spaces` stays pure Python and imports no other package.
"""
from __future__ import annotations

from spaces.errors import SpaceError

# The study's frozen depths, named by the last frozen stage. Each backbone also accepts the study's
# numbers (convolutions frozen up to that stage's output) as aliases.
FREEZE_STAGES = ("conv2", "conv3", "conv4")
DEPTH_ALIASES = {
    "resnet50": {10: "conv2", 22: "conv3", 40: "conv4"},
    "densenet121": {14: "conv2", 39: "conv3", 88: "conv4"},
}
BACKBONES = tuple(DEPTH_ALIASES)

METHODS = {
    "A": "backbone frozen, head trained",
    "B": "backbone frozen through `freeze`, the rest and the head trained",
    "C": "all layers trained, pretrained initialisation",
    "D": "all layers trained, random initialisation",
}
# What `freeze` is for each method; B alone takes a choice.
FIXED_FREEZE = {"A": "all", "C": "none", "D": "none"}

PRETRAINED_SOURCES = ("imagenet", "chestxray8", "imagenet-F+chestxray8", "imagenet-I+chestxray8")
NO_SOURCE = "none"  # method D's only value: random initialisation

FROZEN_BN_MODES = ("inference", "train")
# Only methods that freeze something have frozen BatchNorm layers; for C and D the mode has no effect,
# so configs fix it to the default instead of repeating identical trainings.
METHODS_WITH_FROZEN_LAYERS = ("A", "B")

# Training defaults (the study's values); batch size depends on the method.
DEFAULT_BATCH_SIZE = {"A": 128, "B": 128, "C": 16, "D": 16}
DEFAULTS = {
    "image_size": 512,
    "epochs": 30,
    "learning_rate": 1e-4,
    "dropout": 0.5,
    "frozen_bn": "inference",
    "seed": 0,
}


def check_backbone(value) -> str:
    value = value.lower() if isinstance(value, str) else value
    if value not in BACKBONES:
        raise SpaceError(f"backbone: {value!r} is not known; accepted: {', '.join(BACKBONES)}")
    return value


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
        f"{backbone} aliases " + "/".join(str(number) for number in aliases)
        for backbone, aliases in DEPTH_ALIASES.items()
    )


def normalise_freeze(backbone: str, method: str, value) -> str:
    """The stage name method B freezes through (`conv2`..`conv4`); `all`/`none` for A, C and D.

    `value` may be a stage name or the backbone's numeric alias (int or digit string).
    """
    if method in FIXED_FREEZE:
        fixed = FIXED_FREEZE[method]
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
    aliases = DEPTH_ALIASES[backbone]
    if number in aliases:
        return aliases[number]
    for other, other_aliases in DEPTH_ALIASES.items():
        if number in other_aliases:
            raise SpaceError(
                f"freeze: {value!r} is a {other} depth ({other_aliases[number]}), not one of {backbone}'s; "
                f"use the stage names {', '.join(FREEZE_STAGES)} when a grid has both backbones"
            )
    raise SpaceError(
        f"freeze: {value!r} is not a depth for {backbone}; accepted: {', '.join(FREEZE_STAGES)} "
        f"or {'/'.join(str(number) for number in aliases)}"
    )


def normalise_source(method: str, value) -> str:
    """The source weights of one config; method D takes `none` and nothing else."""
    if method == "D":
        if value not in (None, NO_SOURCE):
            raise SpaceError(
                f"source_weights: method D trains from random initialisation and takes {NO_SOURCE!r}, "
                f"got {value!r}; use method C for pretrained weights with all layers trained"
            )
        return NO_SOURCE
    if value is None:
        return "imagenet"
    if value not in PRETRAINED_SOURCES:
        hint = " (that is method D)" if value == NO_SOURCE else ""
        raise SpaceError(
            f"source_weights: {value!r} is not accepted for method {method}{hint}; "
            f"accepted: {', '.join(PRETRAINED_SOURCES)}"
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
