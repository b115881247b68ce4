"""One config: a flat dict of plain values (ARCHITECTURE.md §5), checked, completed and identified.

`config_id` is the first 10 hex chars of sha256 over the sorted items (canonical JSON), so it is the
same in every process and on every machine, and changes whenever any value does.
"""
from __future__ import annotations

import hashlib
import json
import math

from spaces import methods
from spaces.errors import SpaceError

# Every config has exactly these keys, in this order (the order tables and MLflow params show).
CONFIG_KEYS = (
    "config_id",
    "backbone",
    "method",
    "freeze",
    "source_weights",
    "image_size",
    "epochs",
    "batch_size",
    "learning_rate",
    "dropout",
    "frozen_bn",
    "seed",
)
# Keys the search driver adds to a trial's config (ARCHITECTURE.md §6); never part of config_id.
DRIVER_KEYS = ("fold", "weights_dir", "checkpoint_every", "n_classes")

# Inclusive bounds of the numeric keys. ResNet50/DenseNet121 need at least 32 px without their top.
INT_BOUNDS = {"image_size": (32, 4096), "epochs": (1, 10_000), "batch_size": (1, 65_536), "seed": (0, 2**32 - 1)}
# Accepted range of the float keys: (test, wording for the error message).
FLOAT_RANGES = {
    "learning_rate": (lambda number: 0.0 < number <= 1.0, "above 0 and at most 1"),
    "dropout": (lambda number: 0.0 <= number < 1.0, "from 0 up to, not including, 1"),
}


def config_id(config: dict) -> str:
    """10 hex chars of sha256 over the config's sorted items, without `config_id` and driver keys."""
    items = {key: value for key, value in config.items() if key != "config_id" and key not in DRIVER_KEYS}
    canonical = json.dumps(items, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:10]


def check_int(key: str, value) -> int:
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        number = int(value)
    low, high = INT_BOUNDS[key]
    if number is None or not low <= number <= high:
        raise SpaceError(f"{key}: {value!r} is not accepted; give a whole number from {low} to {high}")
    return number


def check_float(key: str, value) -> float:
    """A float in the key's range. Accepts numeric strings because YAML 1.1 reads `1e-4` as a string."""
    number = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    in_range, wording = FLOAT_RANGES[key]
    if number is None or not math.isfinite(number) or not in_range(number):
        raise SpaceError(f"{key}: {value!r} is not accepted; give a number {wording}")
    return number


def check_value(key: str, value):
    """One value of a plain config key (not backbone/method/freeze/source_weights), normalised."""
    if key in INT_BOUNDS:
        return check_int(key, value)
    if key in FLOAT_RANGES:
        return check_float(key, value)
    if key == "frozen_bn":
        return methods.check_frozen_bn(value)
    raise SpaceError(f"{key}: not a config key; accepted: {', '.join(CONFIG_KEYS[1:])}")


def validate_config(config: dict) -> dict:
    """A complete, normalised copy of one config, with its `config_id`.

    Missing keys get the study's defaults (batch size by method, source weights `imagenet` for A-C,
    `none` for D); B needs `freeze`. Depth aliases become stage names. Driver keys (`fold`, ...) are
    kept but do not enter the id. A `config_id` that does not match the values is an error.
    """
    if not isinstance(config, dict):
        raise SpaceError(f"a config must be a mapping of keys to values, got {type(config).__name__}")
    unknown = sorted(set(config) - set(CONFIG_KEYS) - set(DRIVER_KEYS))
    if unknown:
        raise SpaceError(
            f"config: unknown key(s) {', '.join(map(repr, unknown))}; accepted: {', '.join(CONFIG_KEYS)}"
            f" (plus the driver's {', '.join(DRIVER_KEYS)})"
        )
    for key in ("backbone", "method"):
        if key not in config:
            raise SpaceError(f"config: {key!r} is required")
    backbone = methods.check_backbone(config["backbone"])
    method = methods.check_method(config["method"])
    result = {
        "backbone": backbone,
        "method": method,
        "freeze": methods.normalise_freeze(backbone, method, config.get("freeze")),
        "source_weights": methods.normalise_source(method, config.get("source_weights")),
    }
    defaults = dict(methods.DEFAULTS, batch_size=methods.DEFAULT_BATCH_SIZE[method])
    for key in CONFIG_KEYS[5:]:
        result[key] = check_value(key, config.get(key, defaults[key]))
    if method not in methods.METHODS_WITH_FROZEN_LAYERS and result["frozen_bn"] != methods.DEFAULTS["frozen_bn"]:
        raise SpaceError(
            f"frozen_bn: method {method} freezes no layer, so only {methods.DEFAULTS['frozen_bn']!r} is accepted, "
            f"got {result['frozen_bn']!r}"
        )
    identifier = config_id(result)
    given = config.get("config_id")
    if given is not None and given != identifier:
        raise SpaceError(f"config_id: {given!r} does not match the config's values (their id is {identifier!r})")
    ordered = {"config_id": identifier, **result}
    ordered.update({key: config[key] for key in DRIVER_KEYS if key in config})
    return ordered
