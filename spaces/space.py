"""A search space: what may vary, read from a preset or a user's YAML mapping and checked key by key.

Each config key takes one of
- a value (fixed),                          e.g. `epochs: 30`
- a list (a grid over its values),          e.g. `backbone: [resnet50, densenet121]`
- a distribution (continuous keys only),    e.g. `learning_rate: {loguniform: [1.0e-5, 1.0e-3]}`
- a mapping by method of any of the above,  e.g. `batch_size: {A: 128, B: 128, C: 16, D: 16}`
plus `num_samples` (draws of the distributions per grid point), `name` and `description`.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

from spaces import methods, vocabulary
from spaces.configs import CONFIG_KEYS, check_float, check_value
from spaces.errors import SpaceError

DISTRIBUTIONS = ("loguniform", "uniform")
SAMPLED_KEYS = ("learning_rate", "dropout")  # the continuous keys: the only ones a distribution may describe
SPACE_KEYS = CONFIG_KEYS[1:]  # config_id is computed, never given
META_KEYS = ("name", "description", "num_samples")
# Keys that only some methods use; a mapping by method may name only these methods.
METHODS_USING = {
    "freeze": tuple(name for name, method in vocabulary.METHODS.items() if method.freeze is None),
    "source_weights": tuple(name for name, method in vocabulary.METHODS.items() if method.pretrained),
    "frozen_bn": vocabulary.METHODS_WITH_FROZEN_LAYERS,
}
DEFAULT_FREEZE_GRID = list(vocabulary.FREEZE_STAGES)  # B without `freeze` searches every depth
DEFAULT_SOURCES = ["imagenet"]


@dataclass(frozen=True)
class Distribution:
    kind: str  # one of DISTRIBUTIONS
    low: float
    high: float

    def draw(self, unit: float) -> float:
        """The value at `unit` in [0, 1) of the way through the range, on a log scale for loguniform.

        Rounded to 4 significant digits, so configs read well and hash the same on every machine.
        """
        if self.kind == "loguniform":
            value = math.exp(math.log(self.low) + unit * (math.log(self.high) - math.log(self.low)))
        else:
            value = self.low + unit * (self.high - self.low)
        return min(max(float(f"{value:.4g}"), self.low), self.high)


@dataclass(frozen=True)
class Space:
    """A checked search space. `entries` holds plain data only (see `to_dict`)."""

    name: str
    entries: dict = field(default_factory=dict)
    num_samples: int = 1
    description: str = ""

    def to_dict(self) -> dict:
        """The space as a plain mapping (YAML/JSON-able) that `parse_space` reads back to an equal space."""
        mapping = {"name": self.name}
        if self.description:
            mapping["description"] = self.description
        mapping.update(copy.deepcopy(self.entries))  # callers may edit it without changing this space
        mapping["num_samples"] = self.num_samples
        return mapping

    def choices(self, key: str, method: str | None = None) -> list | Distribution:
        """The values `key` takes for `method`: a list (a grid, maybe of one) or a Distribution.

        `backbone` and `method` are the same for every method: ask for them without one.
        """
        if method is not None and method not in METHODS_USING.get(key, tuple(vocabulary.METHODS)):
            return _default_choices(key, method)
        entry = self.entries.get(key)
        if isinstance(entry, dict) and set(entry) <= set(vocabulary.METHODS):
            entry = entry.get(method)
        if entry is None:
            return _default_choices(key, method)
        if isinstance(entry, dict):
            (kind, (low, high)), = entry.items()
            return Distribution(kind, low, high)
        return list(entry) if isinstance(entry, list) else [entry]

    def has_distribution(self) -> bool:
        return any(
            isinstance(self.choices(key, method), Distribution) for key in SAMPLED_KEYS for method in vocabulary.METHODS
        )


def _default_choices(key: str, method: str) -> list:
    if key == "freeze":
        fixed = vocabulary.METHODS[method].freeze
        return list(DEFAULT_FREEZE_GRID) if fixed is None else [fixed]
    if key == "source_weights":
        return [vocabulary.NO_SOURCE] if not vocabulary.METHODS[method].pretrained else list(DEFAULT_SOURCES)
    if key == "batch_size":
        return [vocabulary.default_batch_size(method)]
    if key in ("backbone", "method"):
        return list(vocabulary.study_backbones() if key == "backbone" else vocabulary.METHODS)
    return [vocabulary.DEFAULTS[key]]  # seed's default is replaced by the expansion seed


def parse_space(mapping: dict, *, name: str = "space") -> Space:
    """Check a space mapping (e.g. a YAML file's contents) key by key and return the Space."""
    if not isinstance(mapping, dict):
        raise SpaceError(f"{name}: a space must be a mapping of keys to values, got {type(mapping).__name__}")
    unknown = sorted(set(map(str, mapping)) - set(SPACE_KEYS) - set(META_KEYS))
    if unknown:
        raise SpaceError(
            f"{name}: unknown key(s) {', '.join(map(repr, unknown))}; accepted: {', '.join(SPACE_KEYS + META_KEYS)}"
        )
    entries = {key: _parse_entry(key, mapping[key]) for key in SPACE_KEYS if mapping.get(key) is not None}
    num_samples = mapping.get("num_samples", 1)
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise SpaceError(f"num_samples: {num_samples!r} is not accepted; give a whole number of at least 1")
    space = Space(
        name=str(mapping.get("name", name)),
        entries=entries,
        num_samples=num_samples,
        description=str(mapping.get("description", "") or ""),
    )
    if num_samples > 1 and not space.has_distribution():
        raise SpaceError(
            f"num_samples: {num_samples} draws per grid point need a sampled key "
            f"({' or '.join(SAMPLED_KEYS)} as e.g. {{loguniform: [1.0e-5, 1.0e-3]}}); "
            "without one every draw is the same config"
        )
    return space


def _parse_entry(key: str, value):
    if isinstance(value, dict) and value and set(map(_method_key, value)) <= set(vocabulary.METHODS):
        if key in ("backbone", "method"):
            raise SpaceError(f"{key}: cannot differ by method; give a value or a list, got {value!r}")
        allowed = METHODS_USING.get(key, tuple(vocabulary.METHODS))
        by_method = {}
        for method_name, method_value in value.items():
            method = _method_key(method_name)
            if method not in allowed:
                raise SpaceError(
                    f"{key}: method {method} does not use {key} ({_fixed_text(key, method)}); "
                    f"a mapping by method may name only {', '.join(allowed)}"
                )
            by_method[method] = _parse_simple(key, method_value)
        return by_method
    return _parse_simple(key, value)


def _method_key(name) -> str:
    return name.upper() if isinstance(name, str) else name


def _fixed_text(key: str, method: str) -> str:
    if key == "freeze":
        return f"it is always {vocabulary.METHODS[method].freeze!r}"
    if key == "source_weights":
        return f"it always uses {vocabulary.NO_SOURCE!r}"
    return f"it freezes no layer, so it stays {vocabulary.DEFAULTS['frozen_bn']!r}"


def _parse_simple(key: str, value):
    if isinstance(value, dict):
        return _parse_distribution(key, value)
    if isinstance(value, list):
        if not value:
            raise SpaceError(f"{key}: an empty list gives no configs; list at least one value")
        checked = []
        for item in value:
            item = _check_fixed(key, item)
            if item not in checked:
                checked.append(item)
        return checked
    return _check_fixed(key, value)


def _check_fixed(key: str, value):
    if isinstance(value, (dict, list)):
        raise SpaceError(f"{key}: {value!r} is not accepted inside a list; list plain values")
    if key == "backbone":
        return methods.check_backbone(value)
    if key == "method":
        return methods.check_method(value)
    if key == "freeze":
        return _check_freeze(value)
    if key == "source_weights":
        if value == vocabulary.NO_SOURCE:
            raise SpaceError(
                f"source_weights: {value!r} is method D's (random initialisation), which gets it by itself; "
                f"list pretrained sources for A-C: {', '.join(vocabulary.SOURCES)}"
            )
        return methods.normalise_source("A", value)
    return check_value(key, value)


def _check_freeze(value):
    """A stage name, or a numeric alias of some backbone (which backbone is checked at expansion)."""
    if value in vocabulary.FREEZE_STAGES:
        return value
    for aliases in (entry.depth_aliases for entry in vocabulary.BACKBONES.values()):
        for number in aliases:
            if value == number or value == str(number):
                return number
    raise SpaceError(
        f"freeze: {value!r} is not accepted; give {', '.join(vocabulary.FREEZE_STAGES)} or a backbone's "
        f"numeric alias ({methods.aliases_text()})"
    )


def _parse_distribution(key: str, value: dict) -> dict:
    if len(value) != 1 or next(iter(value)) not in DISTRIBUTIONS:
        raise SpaceError(
            f"{key}: {value!r} is neither a distribution ({', '.join(DISTRIBUTIONS)}: [low, high]) "
            f"nor a mapping by method ({', '.join(vocabulary.METHODS)})"
        )
    if key not in SAMPLED_KEYS:
        raise SpaceError(f"{key}: only {', '.join(SAMPLED_KEYS)} may be sampled; give a value or a list")
    (kind, bounds), = value.items()
    if not isinstance(bounds, list) or len(bounds) != 2:
        raise SpaceError(f"{key}: {kind} needs [low, high], got {bounds!r}")
    low, high = (check_float(key, bound) for bound in bounds)
    if not low < high:
        raise SpaceError(f"{key}: {kind} needs low < high, got {bounds!r}")
    if kind == "loguniform" and low <= 0:
        raise SpaceError(f"{key}: loguniform needs low > 0, got {bounds!r}")
    return {kind: [low, high]}
