"""The backbones a config may name, with how to build each: spaces/vocabulary.py's table plus Keras.

The names, stage ends, aliases and preprocessing modes are the vocabulary's entries (written once, read
by every room); this module adds only the building, which needs Keras. Importing it starts no
TensorFlow: `search` lists backbones and checks freeze depths with it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

from spaces import vocabulary
from trainables.errors import TrainableConfigError

STAGES = vocabulary.FREEZE_STAGES


@dataclass(frozen=True)
class Backbone(vocabulary.BackboneEntry):
    """A vocabulary entry that can be built. `builder` is for networks outside keras.applications
    (tests register small ones with `register_backbone`); None builds keras.applications.<application>."""

    builder: Callable | None = field(default=None, repr=False, compare=False)

    def build(self, input_shape):
        """The backbone without its top, random values (weights are loaded by trainables.weights)."""
        if self.builder is not None:
            return self.builder(input_shape)
        import keras

        application = getattr(keras.applications, self.application)
        return application(include_top=False, weights=None, input_shape=tuple(input_shape),
                           **self.application_options)

    def stage_for(self, freeze) -> str:
        """The stage name for a freeze depth given as a stage (`conv3`) or the study's alias (`22`)."""
        stage = super().stage_for(freeze)
        if stage is None:
            raise TrainableConfigError(
                f"freeze depth {freeze!r} is not a stage of {self.name}; "
                f"accepted: {', '.join(self.accepted_depths())}")
        return stage


def _buildable(entry: vocabulary.BackboneEntry) -> Backbone:
    return Backbone(**{item.name: getattr(entry, item.name) for item in dataclasses.fields(entry)})


BACKBONES: dict[str, Backbone] = {name: _buildable(entry) for name, entry in vocabulary.BACKBONES.items()}


def register_backbone(**fields):
    """Decorate a `build(input_shape) -> keras.Model` function to add a network outside keras.applications
    (a test's small one; trainables only, spaces does not search it). Real backbones are vocabulary entries."""

    def decorate(build):
        entry = Backbone(builder=build, **{"depth_aliases": {}, "feature_width": 0, **fields})
        BACKBONES[entry.name] = entry
        return build

    return decorate


def get_backbone(name: str) -> Backbone:
    try:
        return BACKBONES[name]
    except (KeyError, TypeError):
        raise TrainableConfigError(
            f"unknown backbone {name!r}; registered: {', '.join(sorted(BACKBONES))}"
        ) from None


def list_backbones() -> list[str]:
    return sorted(BACKBONES)
