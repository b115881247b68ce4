"""Reading spaces: presets, YAML files and mappings, and the errors a bad space gets."""
from __future__ import annotations

import json

import pytest
import yaml

from spaces import SpaceError, expand, load_space, parse_space, preset_names

USER_YAML = """\
name: lr-sweep
description: ResNet50 B at two depths and D, sampled learning rate and dropout
backbone: resnet50
method: [B, D]
freeze: [22, conv4]
learning_rate: {loguniform: [1e-5, 1e-3]}   # no dot: PyYAML reads these as strings
dropout: {uniform: [0.2, 0.6]}
batch_size: {B: 64, D: 8}
image_size: 64
epochs: 2
num_samples: 3
"""


def test_presets_are_listed_and_load_by_name():
    assert preset_names() == ["demo", "paper"]
    paper = load_space("paper")
    assert paper.name == "paper" and paper.num_samples == 1
    assert load_space(paper) is paper


def test_a_user_yaml_file_loads_with_its_choices(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(USER_YAML)
    space = load_space(path)
    assert space.name == "lr-sweep" and space.num_samples == 3
    assert space.choices("freeze", "B") == [22, "conv4"]
    assert space.choices("freeze", "D") == ["none"]
    assert space.choices("batch_size", "D") == [8]
    assert space.choices("source_weights", "B") == ["imagenet"]  # the default source for A-C
    assert space.choices("source_weights", "D") == ["none"]
    rate = space.choices("learning_rate", "B")
    assert (rate.kind, rate.low, rate.high) == ("loguniform", 1e-5, 1e-3)
    assert load_space(str(path)) == space


def test_to_dict_round_trips_through_json_and_yaml(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(USER_YAML)
    space = load_space(path)
    from_json = parse_space(json.loads(json.dumps(space.to_dict())))
    from_yaml = parse_space(yaml.safe_load(yaml.safe_dump(space.to_dict())))
    assert from_json == space == from_yaml
    assert expand(from_json, seed=4) == expand(space, seed=4)


def test_an_unknown_name_lists_the_presets():
    with pytest.raises(SpaceError, match=r"'papers': not a preset \(demo, paper\) and no such file"):
        load_space("papers")


def test_invalid_yaml_names_the_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("backbone: resnet50\nmethod: [A, B\nepochs: 3\n")
    with pytest.raises(SpaceError) as raised:
        load_space(path)
    assert str(path) in str(raised.value) and "line" in str(raised.value)


def test_errors_from_a_file_name_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("backbone: resnet18\n")
    with pytest.raises(SpaceError, match=r"bad\.yaml: backbone: 'resnet18' is not known; accepted: resnet50"):
        load_space(path)


@pytest.mark.parametrize(
    "mapping, words",
    [
        ("- a list", ["mapping", "list"]),
        ({"backbones": ["resnet50"]}, ["unknown", "'backbones'", "backbone", "num_samples"]),
        ({"method": []}, ["method", "empty list"]),
        ({"method": ["A", "X"]}, ["method", "'X'", "A, B, C, D"]),
        ({"source_weights": ["imagenet", "none"]}, ["source_weights", "'none'", "method D", "chestxray8"]),
        ({"source_weights": {"D": "imagenet"}}, ["source_weights", "method D", "'none'", "A, B, C"]),
        ({"freeze": {"A": "conv2"}}, ["freeze", "method A", "'all'", "only B"]),
        ({"freeze": ["conv2", 99]}, ["freeze", "99", "conv2", "10/22/40", "14/39/88"]),
        ({"frozen_bn": {"C": "train"}}, ["frozen_bn", "method C", "A, B"]),
        ({"backbone": {"A": "resnet50"}}, ["backbone", "cannot differ by method"]),
        ({"epochs": {"loguniform": [1, 10]}}, ["epochs", "only learning_rate, dropout"]),
        ({"learning_rate": {"normal": [1e-4, 1e-5]}}, ["learning_rate", "'normal'", "loguniform, uniform", "A, B"]),
        ({"learning_rate": {"uniform": [1e-3, 1e-4]}}, ["learning_rate", "low < high"]),
        ({"learning_rate": {"uniform": [1e-4]}}, ["learning_rate", "[low, high]"]),
        ({"dropout": {"loguniform": [0.0, 0.5]}}, ["dropout", "low > 0"]),
        ({"dropout": {"uniform": [0.2, 1.5]}}, ["dropout", "1.5", "not including, 1"]),
        ({"batch_size": {"C": [16, "big"]}}, ["batch_size", "'big'", "whole number"]),
        ({"image_size": [[64]]}, ["image_size", "plain values"]),
        ({"num_samples": 0}, ["num_samples", "0", "at least 1"]),
        ({"num_samples": 4, "learning_rate": [1e-4, 1e-3]}, ["num_samples", "sampled key", "same config"]),
    ],
)
def test_bad_spaces_say_which_key_which_value_and_what_is_accepted(mapping, words):
    with pytest.raises(SpaceError) as raised:
        parse_space(mapping if not isinstance(mapping, str) else yaml.safe_load(mapping))
    message = str(raised.value)
    for word in words:
        assert word in message, f"{word!r} missing from {message!r}"


def test_keys_given_for_unused_methods_are_ignored_not_invented():
    # `freeze` applies to B only and `source_weights` to A-C; D keeps `none`/`none`.
    space = parse_space({"method": ["A", "D"], "freeze": "conv3", "source_weights": "chestxray8"})
    assert space.choices("freeze", "A") == ["all"] and space.choices("freeze", "D") == ["none"]
    assert space.choices("source_weights", "D") == ["none"]
    assert space.choices("source_weights", "A") == ["chestxray8"]
