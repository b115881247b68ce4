"""One config: a flat dict of plain values (ARCHITECTURE.md §5), checked, completed and identified.

`config_id` is the first 10 hex chars of sha256 over the sorted items (canonical JSON), so it is the
same in every process and on every machine, and changes whenever any value does.
"""
from __future__ import annotations

import hashlib
import json
import math

from spaces import methods, vocabulary
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
# Settings the search driver adds to every trial's config (ARCHITECTURE.md §6): not searched, so never
# part of config_id, never MLflow params (search/trials.py leaves them out).
DRIVER_SETTING_KEYS = ("weights_dir", "checkpoint_every", "n_classes", "feature_cache_dir")
# Keys a trial config holds beyond a config's: its fold and the driver's settings. validate_config keeps
# them; config_id leaves them out.
TRIAL_KEYS = ("fold", *DRIVER_SETTING_KEYS)


def config_id(config: dict) -> str:
    """10 hex chars of sha256 over the config's sorted items, without `config_id` and the trial keys."""
    items = {key: value for key, value in config.items() if key != "config_id" and key not in TRIAL_KEYS}
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
    low, high = vocabulary.INT_BOUNDS[key]
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
    if number is None or not math.isfinite(number) or not vocabulary.in_float_range(key, number):
        raise SpaceError(f"{key}: {value!r} is not accepted; give a number {vocabulary.float_range_text(key)}")
    return number


def check_value(key: str, value):
    """One value of a plain config key (not backbone/method/freeze/source_weights), normalised."""
    if key in vocabulary.INT_BOUNDS:
        return check_int(key, value)
    if key in vocabulary.FLOAT_RANGES:
        return check_float(key, value)
    if key == "frozen_bn":
        return methods.check_frozen_bn(value)
    raise SpaceError(f"{key}: not a config key; accepted: {', '.join(CONFIG_KEYS[1:])}")


def validate_config(config: dict) -> dict:
    """A complete, normalised copy of one config, with its `config_id`.

    Missing keys get the study's defaults (batch size by method, source weights `imagenet` for A-C,
    `none` for D); B needs `freeze`. Depth aliases become stage names. Trial keys (`fold`, the driver's
    settings) are kept but do not enter the id. A `config_id` that does not match the values is an error.
    """
    if not isinstance(config, dict):
        raise SpaceError(f"a config must be a mapping of keys to values, got {type(config).__name__}")
    unknown = sorted(set(config) - set(CONFIG_KEYS) - set(TRIAL_KEYS))
    if unknown:
        raise SpaceError(
            f"config: unknown key(s) {', '.join(map(repr, unknown))}; accepted: {', '.join(CONFIG_KEYS)}"
            f" (plus the driver's {', '.join(TRIAL_KEYS)})"
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
    defaults = dict(vocabulary.DEFAULTS, batch_size=vocabulary.default_batch_size(method))
    for key in CONFIG_KEYS[5:]:
        result[key] = check_value(key, config.get(key, defaults[key]))
    if not vocabulary.METHODS[method].freezes_layers and result["frozen_bn"] != vocabulary.DEFAULTS["frozen_bn"]:
        raise SpaceError(
            f"frozen_bn: method {method} freezes no layer, so only {vocabulary.DEFAULTS['frozen_bn']!r} is accepted, "
            f"got {result['frozen_bn']!r}"
        )
    identifier = config_id(result)
    given = config.get("config_id")
    if given is not None and given != identifier:
        raise SpaceError(f"config_id: {given!r} does not match the config's values (their id is {identifier!r})")
    ordered = {"config_id": identifier, **result}
    ordered.update({key: config[key] for key in TRIAL_KEYS if key in config})
    return ordered
