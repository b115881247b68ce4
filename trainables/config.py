"""What a trial config must hold (ARCHITECTURE.md §5-6), checked without TensorFlow.

`search` calls `check_config` before starting trials so a bad config fails in the driver, in one
line, instead of in a Ray worker.
"""
from __future__ import annotations

from trainables.backbones import STAGES, get_backbone
from trainables.errors import TrainableConfigError
from trainables.weights import SOURCES

METHODS = {
    "A": "backbone frozen, head trained",
    "B": "frozen through a stage (freeze), the rest trained",
    "C": "all trainable, pretrained initial values",
    "D": "all trainable, random initial values",
}
FROZEN_BN = ("inference", "train")
DEFAULTS = {
    "image_size": 512,
    "epochs": 30,
    "learning_rate": 1e-4,
    "dropout": 0.5,
    "frozen_bn": "inference",  # Keras 3's behaviour: a frozen BatchNorm uses its moving statistics
    "seed": 0,
    "checkpoint_every": 1,
}


def default_batch_size(method: str) -> int:
    """The study's batch sizes: 128 when the early layers are frozen (A/B), 16 otherwise."""
    return 128 if method in ("A", "B") else 16


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
    if method == "A" and freeze != "all":
        raise TrainableConfigError(f"method A freezes the whole backbone: freeze must be 'all', got {freeze!r}")
    if method == "B":
        resolved["freeze"] = backbone.stage_for(freeze)
    if method in ("C", "D") and freeze != "none":
        raise TrainableConfigError(f"method {method} freezes nothing: freeze must be 'none', got {freeze!r}")
    if method == "D" and source != "none":
        raise TrainableConfigError(f"method D starts from random values: source_weights must be 'none', got {source!r}")
    if method != "D" and source not in SOURCES:
        raise TrainableConfigError(
            f"method {method} needs source weights, one of {', '.join(SOURCES)}; got {source!r}")
    if resolved["frozen_bn"] not in FROZEN_BN:
        raise TrainableConfigError(f"frozen_bn must be one of {', '.join(FROZEN_BN)}, got {resolved['frozen_bn']!r}")
    _check_number(resolved, "image_size", int, low=32)
    _check_number(resolved, "epochs", int, low=1)
    _check_number(resolved, "batch_size", int, low=1)
    _check_number(resolved, "checkpoint_every", int, low=1)
    _check_number(resolved, "learning_rate", float, low=0.0, low_inclusive=False)
    _check_number(resolved, "dropout", float, low=0.0, high=1.0)
    if "n_classes" in resolved:
        _check_number(resolved, "n_classes", int, low=1)
    return resolved


def freeze_stage(config: dict) -> str | None:
    """The stage a B config freezes through, 'all' for A, None for C/D."""
    return {"A": "all", "B": config.get("freeze")}.get(config["method"])


def _check_number(config, key, kind, *, low=None, high=None, low_inclusive=True):
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
        raise TrainableConfigError(f"{key} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
    too_low = low is not None and (value < low if low_inclusive else value <= low)
    too_high = high is not None and value >= high
    if too_low or too_high:
        bounds = f"{'>=' if low_inclusive else '>'} {low}" + (f" and < {high}" if high is not None else "")
        raise TrainableConfigError(f"{key} must be {bounds}, got {value!r}")
    config[key] = kind(value)


def _describe(config: dict) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in sorted(config.items())) or "(empty)"


__all__ = ["METHODS", "STAGES", "DEFAULTS", "check_config", "default_batch_size", "freeze_stage"]
