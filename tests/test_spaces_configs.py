"""One config: validation, defaults, aliases, and a config_id that is the same everywhere."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from spaces import CONFIG_KEYS, SpaceError, config_id, validate_config

# The paper preset's first config (ResNet50, method A, ImageNet weights, the study's defaults).
PAPER_FIRST = {
    "backbone": "resnet50",
    "method": "A",
    "freeze": "all",
    "source_weights": "imagenet",
    "image_size": 512,
    "epochs": 30,
    "batch_size": 128,
    "learning_rate": 0.0001,
    "dropout": 0.5,
    "frozen_bn": "inference",
    "seed": 0,
}
PAPER_FIRST_ID = "fb7b3cff36"


def test_config_id_is_a_fixed_sha256_prefix_of_the_sorted_items():
    canonical = (
        '{"backbone":"resnet50","batch_size":128,"dropout":0.5,"epochs":30,"freeze":"all",'
        '"frozen_bn":"inference","image_size":512,"learning_rate":0.0001,"method":"A","seed":0,'
        '"source_weights":"imagenet"}'
    )
    assert hashlib.sha256(canonical.encode()).hexdigest()[:10] == PAPER_FIRST_ID
    assert config_id(PAPER_FIRST) == PAPER_FIRST_ID
    # Key order, config_id itself and the driver's trial keys do not change the id.
    shuffled = dict(reversed(list(PAPER_FIRST.items())))
    assert config_id({**shuffled, "config_id": "x", "fold": 3, "weights_dir": "/w", "n_classes": 9}) == PAPER_FIRST_ID


def test_config_id_changes_with_any_value():
    ids = {config_id({**PAPER_FIRST, key: changed}) for key, changed in [
        ("seed", 1), ("dropout", 0.4), ("learning_rate", 0.001), ("batch_size", 64), ("source_weights", "chestxray8"),
    ]}
    assert len(ids) == 5 and PAPER_FIRST_ID not in ids


def test_config_id_is_the_same_in_another_process_with_another_hash_seed():
    code = (
        "import json, sys; from spaces import expand; "
        "print(json.dumps([c['config_id'] for c in expand('paper')]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    output = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    from spaces import expand

    assert json.loads(output) == [config["config_id"] for config in expand("paper")]


def test_validate_config_fills_the_study_defaults_by_method():
    config = validate_config({"backbone": "resnet50", "method": "A"})
    assert config == {"config_id": PAPER_FIRST_ID, **PAPER_FIRST}
    assert list(config) == list(CONFIG_KEYS)
    d = validate_config({"backbone": "densenet121", "method": "D"})
    assert (d["freeze"], d["source_weights"], d["batch_size"]) == ("none", "none", 16)
    c = validate_config({"backbone": "DenseNet121", "method": "c", "source_weights": "chestxray8"})
    assert (c["backbone"], c["method"], c["freeze"], c["batch_size"]) == ("densenet121", "C", "none", 16)


@pytest.mark.parametrize(
    "backbone, alias, stage",
    [("resnet50", 10, "conv2"), ("resnet50", "22", "conv3"), ("resnet50", 40, "conv4"),
     ("densenet121", 14, "conv2"), ("densenet121", 39, "conv3"), ("densenet121", "88", "conv4"),
     ("densenet121", "conv3", "conv3")],
)
def test_depth_aliases_become_stage_names(backbone, alias, stage):
    config = validate_config({"backbone": backbone, "method": "B", "freeze": alias})
    assert config["freeze"] == stage
    assert config["config_id"] == validate_config({"backbone": backbone, "method": "B", "freeze": stage})["config_id"]


def test_driver_keys_are_kept_but_not_hashed():
    config = validate_config({"backbone": "resnet50", "method": "A", "fold": 2, "n_classes": 8})
    assert (config["fold"], config["n_classes"], config["config_id"]) == (2, 8, PAPER_FIRST_ID)


def test_yaml_style_number_strings_are_read_as_numbers():
    # PyYAML reads `1e-4` (no dot) as a string; the config must still hold the float.
    config = validate_config({"backbone": "resnet50", "method": "A", "learning_rate": "1e-4", "image_size": "512"})
    assert config["learning_rate"] == 1e-4 and config["image_size"] == 512
    assert config["config_id"] == PAPER_FIRST_ID


@pytest.mark.parametrize(
    "config, words",
    [
        ({"backbone": "resnet50", "method": "D", "source_weights": "imagenet"},
         ["source_weights", "method D", "'imagenet'", "'none'"]),
        ({"backbone": "resnet50", "method": "B"}, ["freeze", "method B", "conv2", "10/22/40", "14/39/88"]),
        ({"backbone": "densenet121", "method": "B", "freeze": 22}, ["freeze", "22", "resnet50", "densenet121"]),
        ({"backbone": "resnet50", "method": "B", "freeze": "conv5"}, ["freeze", "'conv5'", "conv2", "10/22/40"]),
        ({"backbone": "resnet50", "method": "A", "freeze": "conv3"}, ["freeze", "method A", "'all'", "'conv3'"]),
        ({"backbone": "resnet50", "method": "C", "freeze": "all"}, ["freeze", "method C", "'none'"]),
        ({"backbone": "resnet50", "method": "C", "source_weights": "none"}, ["source_weights", "'none'", "method D"]),
        ({"backbone": "resnet50", "method": "A", "source_weights": "nih"},
         ["source_weights", "'nih'", "imagenet-F+chestxray8"]),
        ({"backbone": "vgg16", "method": "A"}, ["backbone", "'vgg16'", "resnet50, densenet121"]),
        ({"backbone": "resnet50", "method": "E"}, ["method", "'E'", "A, B, C, D"]),
        ({"backbone": "resnet50", "method": "A", "lr": 0.1}, ["unknown", "'lr'", "learning_rate"]),
        ({"method": "A"}, ["'backbone'", "required"]),
        ({"backbone": "resnet50", "method": "A", "dropout": 1.0}, ["dropout", "1.0", "not including, 1"]),
        ({"backbone": "resnet50", "method": "A", "learning_rate": 0}, ["learning_rate", "0", "above 0"]),
        ({"backbone": "resnet50", "method": "A", "epochs": 2.5}, ["epochs", "2.5", "whole number"]),
        ({"backbone": "resnet50", "method": "A", "image_size": 16}, ["image_size", "16", "32"]),
        ({"backbone": "resnet50", "method": "A", "batch_size": True}, ["batch_size", "True"]),
        ({"backbone": "resnet50", "method": "A", "frozen_bn": "frozen"}, ["frozen_bn", "'frozen'", "inference, train"]),
        ({"backbone": "resnet50", "method": "D", "frozen_bn": "train"}, ["frozen_bn", "method D", "freezes no layer"]),
        ({"backbone": "resnet50", "method": "A", "config_id": "0000000000"}, ["config_id", "0000000000", "fb7b3cff36"]),
    ],
)
def test_invalid_configs_are_rejected_with_a_message_naming_key_value_and_accepted(config, words):
    with pytest.raises(SpaceError) as raised:
        validate_config(config)
    message = str(raised.value)
    for word in words:
        assert word in message, f"{word!r} missing from {message!r}"


def test_a_valid_config_round_trips_through_json_unchanged():
    config = validate_config({"backbone": "densenet121", "method": "B", "freeze": 88, "learning_rate": 3e-5})
    assert validate_config(json.loads(json.dumps(config))) == config
