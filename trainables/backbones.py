"""The backbone registry: which keras.applications networks a config may name, and their stages.

Importing this module starts no TensorFlow: `search` lists backbones and checks freeze depths with it.
Each entry knows the Keras application that builds it, its preprocessing mode, the exact file name
Keras caches its ImageNet weights under, and the layer names where its stages end (freeze by name:
indices shift between Keras versions, names have not).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from trainables.errors import TrainableConfigError

STAGES = ("conv2", "conv3", "conv4")


@dataclass(frozen=True)
class Backbone:
    name: str
    application: str            # attribute of keras.applications
    preprocessing: str          # keras.applications mode: "caffe" or "torch"
    imagenet_file: str          # file name under $KERAS_HOME/models (include_top=False)
    stage_ends: dict[str, str]  # stage -> last layer of that stage (frozen inclusive)
    study_aliases: dict[str, str] = field(default_factory=dict)  # study's conv count -> stage
    build: Callable = field(default=None, repr=False, compare=False)

    def stage_for(self, freeze: str) -> str:
        """The stage name for a freeze depth given as a stage (`conv3`) or the study's alias (`22`)."""
        depth = str(freeze)
        if depth in self.stage_ends:
            return depth
        if depth in self.study_aliases:
            return self.study_aliases[depth]
        accepted = list(self.stage_ends) + list(self.study_aliases)
        raise TrainableConfigError(
            f"freeze depth {freeze!r} is not a stage of {self.name}; accepted: {', '.join(accepted)}"
        )


BACKBONES: dict[str, Backbone] = {}


def register_backbone(**fields):
    """Decorate a `build(input_shape) -> keras.Model` function to add it to the registry."""

    def decorate(build):
        entry = Backbone(build=build, **fields)
        BACKBONES[entry.name] = entry
        return build

    return decorate


def get_backbone(name: str) -> Backbone:
    try:
        return BACKBONES[name]
    except KeyError:
        raise TrainableConfigError(
            f"unknown backbone {name!r}; registered: {', '.join(sorted(BACKBONES))}"
        ) from None


def list_backbones() -> list[str]:
    return sorted(BACKBONES)


@register_backbone(
    name="resnet50",
    application="ResNet50",
    preprocessing="caffe",
    imagenet_file="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    # First trainable layer indices 39/81/143, as in the study; 10/22/40 frozen convs.
    stage_ends={"conv2": "conv2_block3_out", "conv3": "conv3_block4_out", "conv4": "conv4_block6_out"},
    study_aliases={"10": "conv2", "22": "conv3", "40": "conv4"},
)
def build_resnet50(input_shape):
    import keras

    return keras.applications.ResNet50(include_top=False, weights=None, input_shape=input_shape)


@register_backbone(
    name="densenet121",
    application="DenseNet121",
    preprocessing="torch",
    imagenet_file="densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
    # Transition blocks end at layer 53/141/313 (14/39/88 frozen convs). The study froze 55/143/315,
    # i.e. also the next dense block's first BatchNorm+ReLU; those hold no convolution.
    stage_ends={"conv2": "pool2_pool", "conv3": "pool3_pool", "conv4": "pool4_pool"},
    study_aliases={"14": "conv2", "39": "conv3", "88": "conv4"},
)
def build_densenet121(input_shape):
    import keras

    return keras.applications.DenseNet121(include_top=False, weights=None, input_shape=input_shape)
