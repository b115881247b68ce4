"""The config vocabulary (spaces/vocabulary.py): every room reads the one table, and every entry holds what
every room needs. The guard: an entry that lacks a field, or whose stage ends and aliases do not match the
real Keras network, fails here."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from spaces import SpaceError, expand, validate_config, vocabulary

EFFICIENTNET = {"backbone": "efficientnetv2s", "image_size": 32, "source_weights": "imagenet", "seed": 0}


def test_every_backbone_entry_has_what_every_room_needs():
    from data.pipeline import PREPROCESSING_MODES
    from trainables.backbones import BACKBONES

    assert vocabulary.PREPROCESSING_MODES == PREPROCESSING_MODES  # spaces may not import data: kept equal here
    for name, entry in vocabulary.BACKBONES.items():
        assert entry.name == name and entry.application and entry.imagenet_file.endswith(".h5")
        assert list(entry.stage_ends) == list(vocabulary.FREEZE_STAGES) and all(entry.stage_ends.values())
        assert sorted(entry.depth_aliases.values()) == sorted(vocabulary.FREEZE_STAGES)  # one alias per stage
        assert list(entry.depth_aliases) == sorted(entry.depth_aliases)  # deeper stage, more convolutions
        assert entry.feature_width > 0
        assert BACKBONES[name].stage_ends == entry.stage_ends  # trainables builds exactly these
    assert vocabulary.study_backbones() == ("resnet50", "densenet121")
    for method in vocabulary.METHODS.values():
        assert method.default_batch_size >= 1 and method.freeze in (None, "all", "none")


def test_an_entry_without_a_field_or_with_a_wrong_stage_is_refused():
    fields = {item.name: getattr(vocabulary.BACKBONES["resnet50"], item.name)
              for item in dataclasses.fields(vocabulary.BackboneEntry)}
    with pytest.raises(TypeError, match="feature_width"):
        vocabulary.BackboneEntry(**{key: value for key, value in fields.items() if key != "feature_width"})
    with pytest.raises(ValueError, match="stage_ends must name exactly conv2, conv3, conv4"):
        vocabulary.BackboneEntry(**{**fields, "stage_ends": {"conv2": "a", "conv3": "b"}})
    with pytest.raises(ValueError, match="depth_aliases keys must be whole numbers"):
        vocabulary.BackboneEntry(**{**fields, "depth_aliases": {"10": "conv2"}})
    with pytest.raises(ValueError, match="preprocessing"):
        vocabulary.BackboneEntry(**{**fields, "preprocessing": "inception"})
    with pytest.raises(ValueError, match="registered already"):
        vocabulary.register_backbone(vocabulary.BACKBONES["resnet50"])


def test_efficientnetv2s_is_searchable_by_name_and_alias_but_not_in_the_paper_grid():
    assert "efficientnetv2s" not in {config["backbone"] for config in expand("paper")}
    configs = expand({"backbone": "efficientnetv2s", "method": ["A", "B", "C", "D"], "freeze": [11, 19, "79"]})
    assert [(c["method"], c["freeze"]) for c in configs] == [
        ("A", "all"), ("B", "conv2"), ("B", "conv3"), ("B", "conv4"), ("C", "none"), ("D", "none")]
    with pytest.raises(SpaceError, match="resnet50 depth"):
        validate_config({"backbone": "efficientnetv2s", "method": "B", "freeze": 22})


def _stage_counts(backbone, entry):
    """{stage: (frozen Conv2D layers, trainable parameters)} with the backbone frozen through each stage."""
    from trainables.model import freeze_backbone, frozen_conv_count

    counts = {}
    for stage in vocabulary.FREEZE_STAGES:
        freeze_backbone(backbone, {"backbone": entry.name, "method": "B", "freeze": stage})
        trainable = sum(int(np.prod(weight.shape)) for weight in backbone.trainable_weights)
        counts[stage] = (frozen_conv_count(backbone), trainable)
    return counts


@pytest.fixture(scope="module")
def efficientnet_model():
    """One EfficientNetV2-S model as a trial builds it (method B through its alias 79, 32 px), for both
    tests below: building it takes seconds."""
    from trainables.model import backbone_of, build_model

    model = build_model({**EFFICIENTNET, "method": "B", "freeze": 79, "n_classes": 3}, load_weights=False)
    layers = backbone_of(model).layers
    end = [layer.name for layer in layers].index("block5i_add")  # conv4's end: frozen, the next layer not
    assert not layers[end].trainable and layers[end + 1].trainable
    return model


@pytest.mark.slow  # builds every Keras network: ~30 s on 2 cores with TensorFlow's import
@pytest.mark.parametrize("name", list(vocabulary.BACKBONES))
def test_stage_ends_aliases_and_width_match_the_keras_network(name, request):
    """Built at 32 px from its table entry, as a trial builds it."""
    from trainables.backbones import get_backbone
    from trainables.model import backbone_of

    entry = get_backbone(name)
    if name == "efficientnetv2s":
        backbone = backbone_of(request.getfixturevalue("efficientnet_model"))
    else:
        backbone = entry.build((32, 32, 3))
    names = [layer.name for layer in backbone.layers]
    assert all(layer in names for layer in entry.stage_ends.values())
    assert backbone.output.shape[-1] == entry.feature_width
    counts = _stage_counts(backbone, entry)
    assert {counts[stage][0]: stage for stage in vocabulary.FREEZE_STAGES} == entry.depth_aliases
    trainable = [counts[stage][1] for stage in vocabulary.FREEZE_STAGES]
    assert trainable == sorted(trainable, reverse=True) and trainable[-1] > 0  # deeper freeze, fewer to train


@pytest.mark.slow  # shares the ~10 s EfficientNetV2-S build
def test_efficientnetv2s_models_count_their_trainable_parameters_consistently(efficientnet_model):
    """The model built through alias 79, refrozen as A, each B depth and C: Keras's trainable count is the
    head's, plus every layer after the stage end, plus all but the BatchNorm moving statistics."""
    from trainables.model import backbone_of, freeze_backbone, parameter_counts

    model, n_classes, entry = efficientnet_model, 3, vocabulary.BACKBONES["efficientnetv2s"]
    backbone = backbone_of(model)
    head = (entry.feature_width + 1) * n_classes
    layer_names = [layer.name for layer in backbone.layers]

    def trainable_as(method, freeze):
        freeze_backbone(backbone, {"backbone": entry.name, "method": method, "freeze": freeze})
        return parameter_counts(model)

    trainable_a, total = trainable_as("A", "all")
    assert trainable_a == head
    trainable_c, total_c = trainable_as("C", "none")
    moving = sum(int(np.prod(weight.shape)) for weight in backbone.non_trainable_weights)
    assert total_c == total and total - trainable_c == moving  # only BatchNorm moving statistics stay fixed
    previous = trainable_c
    for stage, layer_name in entry.stage_ends.items():
        trainable_b, total_b = trainable_as("B", stage)
        after = backbone.layers[layer_names.index(layer_name) + 1:]
        assert all(layer.trainable for layer in after) and not backbone.get_layer(layer_name).trainable
        rest = sum(int(np.prod(weight.shape)) for layer in after for weight in layer.trainable_weights)
        assert total_b == total and trainable_b == rest + head and head < trainable_b < previous
        previous = trainable_b
