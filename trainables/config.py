"""What a trial config must hold (ARCHITECTURE.md §5-6), checked without TensorFlow.

`check_config` runs where a config becomes a model: in the trial (`fit_fold`, `build_model`), in
pretraining and in scoring fold models. The search driver checks configs before any trial with
`spaces.validate_config`; both read the names, defaults and bounds of spaces/vocabulary.py, so a
config one accepts the other does too. Unlike `validate_config`, this one also accepts backbones
registered in trainables only (test networks) and the trial keys (`n_classes`, `checkpoint_every`).
"""
from __future__ import annotations

from spaces import vocabulary
from trainables.backbones import get_backbone
from trainables.errors import TrainableConfigError

METHODS = vocabulary.METHODS
DEFAULTS = {**vocabulary.DEFAULTS, "checkpoint_every": 1}  # checkpoint_every: epochs between checkpoints


def default_batch_size(method: str) -> int:
    """The study's batch sizes: 128 when the early layers are frozen (A/B), 16 otherwise."""
    return vocabulary.default_batch_size(method)


def check_config(config: dict) -> dict:
    """A copy of `config` with defaults filled in; raises TrainableConfigError on the first problem."""
    resolved = dict(DEFAULTS)
    resolved.update(config)
    for key in ("backbone", "method", "freeze", "source_weights"):
        if key not in resolved:
            raise TrainableConfigError(f"config lacks {key!r}: {_describe(config)}")
    backbone = get_backbone(resolved["backbone"])
    method = resolved["method"]
    if method not in METHODS:
        raise TrainableConfigError(f"method {method!r} is not one of {', '.join(METHODS)}")
    resolved.setdefault("batch_size", default_batch_size(method))
    freeze, source = str(resolved["freeze"]), resolved["source_weights"]
    fixed = METHODS[method].freeze
    if fixed is None:
        resolved["freeze"] = backbone.stage_for(freeze)
    elif freeze != fixed:
        what = "freezes the whole backbone" if fixed == "all" else "freezes nothing"
        raise TrainableConfigError(f"method {method} {what}: freeze must be {fixed!r}, got {freeze!r}")
    if not METHODS[method].pretrained and source != vocabulary.NO_SOURCE:
        raise TrainableConfigError(
            f"method {method} starts from random values: source_weights must be 'none', got {source!r}")
    if METHODS[method].pretrained and source not in vocabulary.SOURCES:
        raise TrainableConfigError(
            f"method {method} needs source weights, one of {', '.join(vocabulary.SOURCES)}; got {source!r}")
    if resolved["frozen_bn"] not in vocabulary.FROZEN_BN_MODES:
        raise TrainableConfigError(
            f"frozen_bn must be one of {', '.join(vocabulary.FROZEN_BN_MODES)}, got {resolved['frozen_bn']!r}")
    for key, (low, high) in vocabulary.INT_BOUNDS.items():
        _check_number(resolved, key, int, low=low, high=high)
    for key, (low, high, low_included, high_included) in vocabulary.FLOAT_RANGES.items():
        _check_number(resolved, key, float, low=low, high=high, low_inclusive=low_included,
                      high_inclusive=high_included)
    _check_number(resolved, "checkpoint_every", int, low=1)
    if "n_classes" in resolved:
        _check_number(resolved, "n_classes", int, low=1)
    return resolved


def _check_number(config, key, kind, *, low=None, high=None, low_inclusive=True, high_inclusive=True):
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
        raise TrainableConfigError(f"{key} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
    too_low = low is not None and (value < low if low_inclusive else value <= low)
    too_high = high is not None and (value > high if high_inclusive else value >= high)
    if too_low or too_high:
        bounds = f"{'>=' if low_inclusive else '>'} {low:g}"
        if high is not None:
            bounds += f" and {'<=' if high_inclusive else '<'} {high:g}"
        raise TrainableConfigError(f"{key} must be {bounds}, got {value!r}")
    config[key] = kind(value)


def _describe(config: dict) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in sorted(config.items())) or "(empty)"


__all__ = ["METHODS", "DEFAULTS", "check_config", "default_batch_size"]
