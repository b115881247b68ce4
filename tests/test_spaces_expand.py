"""Expanding spaces: the presets' exact grids, seeded samples, overrides and unavailable sources."""
from __future__ import annotations

import math
from collections import Counter

import pytest

from spaces import CONFIG_KEYS, SpaceError, expand, parse_space, validate_config

SOURCES = ("imagenet", "chestxray8", "imagenet-F+chestxray8", "imagenet-I+chestxray8")


def test_paper_is_the_studys_42_config_grid():
    configs = expand("paper")
    assert len(configs) == 42 == len({config["config_id"] for config in configs})
    for backbone in ("resnet50", "densenet121"):
        mine = [config for config in configs if config["backbone"] == backbone]
        combos = Counter((config["method"], config["freeze"], config["source_weights"]) for config in mine)
        expected = {("A", "all", source) for source in SOURCES}
        expected |= {("B", depth, source) for depth in ("conv2", "conv3", "conv4") for source in SOURCES}
        expected |= {("C", "none", source) for source in SOURCES} | {("D", "none", "none")}
        assert set(combos) == expected and set(combos.values()) == {1}
    for config in configs:
        assert list(config) == list(CONFIG_KEYS)
        assert config["batch_size"] == (128 if config["method"] in "AB" else 16)
        assert (config["epochs"], config["image_size"], config["learning_rate"], config["dropout"]) == (30, 512, 1e-4, 0.5)
        assert validate_config(config) == config  # every expanded config is valid and its id is right


def test_demo_is_small_and_has_each_method():
    configs = expand("demo")
    assert Counter(config["method"] for config in configs) == {"A": 2, "B": 2, "C": 2, "D": 1}
    assert {config["backbone"] for config in configs} == {"resnet50"}
    assert {config["source_weights"] for config in configs} == {"chestxray8", "imagenet", "none"}
    assert {config["freeze"] for config in configs if config["method"] == "B"} == {"conv4"}
    for config in configs:
        assert 32 <= config["image_size"] <= 64 and 2 <= config["epochs"] <= 3 and 16 <= config["batch_size"] <= 32


def test_expanded_configs_pass_the_trainables_check():
    # Both read spaces/vocabulary.py; this keeps their checks (defaults, bounds, aliases) in agreement.
    check_config = pytest.importorskip("trainables.config").check_config
    for config in expand("paper") + expand("demo"):
        check_config({key: value for key, value in config.items() if key != "config_id"})


SWEEP = {
    "backbone": ["resnet50", "densenet121"],
    "method": ["B", "C"],
    "freeze": ["conv3"],
    "source_weights": "chestxray8",
    "learning_rate": {"loguniform": [1e-5, 1e-3]},
    "dropout": {"C": {"uniform": [0.2, 0.6]}},
    "num_samples": 5,
}


def test_same_seed_same_configs_other_seed_other_draws():
    first, again, other = expand(SWEEP, seed=7), expand(SWEEP, seed=7), expand(SWEEP, seed=8)
    assert first == again
    assert len(first) == 2 * 2 * 5
    assert not {config["config_id"] for config in first} & {config["config_id"] for config in other}
    assert {config["seed"] for config in first} == {7} and {config["seed"] for config in other} == {8}


def test_draws_stay_in_range_and_spread_on_a_log_scale():
    configs = expand({**SWEEP, "num_samples": 40}, seed=0)
    rates = [config["learning_rate"] for config in configs]
    assert all(1e-5 <= rate <= 1e-3 for rate in rates)
    logs = [math.log10(rate) for rate in rates]
    # loguniform over 1e-5..1e-3: about half the draws below 1e-4 (uniform would put ~9% there)
    assert 0.3 < sum(log < -4 for log in logs) / len(logs) < 0.7
    dropouts_c = {config["dropout"] for config in configs if config["method"] == "C"}
    assert all(0.2 <= dropout <= 0.6 for dropout in dropouts_c) and len(dropouts_c) > 30
    assert {config["dropout"] for config in configs if config["method"] == "B"} == {0.5}  # B keeps the default


def test_adding_a_grid_value_does_not_change_the_other_points_draws():
    before = expand(SWEEP, seed=3)
    after = expand({**SWEEP, "method": ["B", "C", "A"]}, seed=3)
    assert [config for config in after if config["method"] != "A"] == before


def test_a_point_without_draws_gives_one_config_not_num_samples_copies():
    configs = expand({**SWEEP, "learning_rate": {"C": {"loguniform": [1e-5, 1e-3]}}, "dropout": 0.5}, seed=0)
    assert Counter(config["method"] for config in configs) == {"B": 2, "C": 10}


def test_grid_keys_cross_and_aliases_normalise_per_backbone():
    configs = expand({"backbone": "densenet121", "method": "B", "freeze": [14, "conv2", 88],
                      "source_weights": ["imagenet", "chestxray8"], "seed": [0, 1], "epochs": [1, 2]})
    assert len(configs) == 2 * 2 * 2 * 2  # 14 and conv2 are the same depth: one config, not two
    assert {config["freeze"] for config in configs} == {"conv2", "conv4"}
    assert {config["seed"] for config in configs} == {0, 1}  # a seed list in the space: repeats of each config


def test_a_numeric_depth_of_the_other_backbone_is_an_error_in_a_two_backbone_grid():
    with pytest.raises(SpaceError, match=r"freeze: 22 is a resnet50 depth \(conv3\), not one of densenet121's"):
        expand({"backbone": ["resnet50", "densenet121"], "method": "B", "freeze": [22]})


def test_overrides_replace_space_keys_and_are_checked():
    configs = expand("paper", overrides={"epochs": 2, "image_size": 64, "batch_size": None, "backbone": "resnet50"})
    assert len(configs) == 21
    assert {(config["epochs"], config["image_size"]) for config in configs} == {(2, 64)}
    assert {config["batch_size"] for config in configs} == {128, 16}  # None leaves the per-method sizes
    assert {config["config_id"] for config in configs}.isdisjoint(config["config_id"] for config in expand("paper"))
    with pytest.raises(SpaceError, match=r"epochs: 0 is not accepted"):
        expand("demo", overrides={"epochs": 0})
    with pytest.raises(SpaceError, match=r"unknown key\(s\) 'epoch'"):
        expand("demo", overrides={"epoch": 2})


def test_unavailable_sources_are_dropped_and_reported():
    configs = expand("paper", available_sources={"imagenet", "chestxray8"})
    assert len(configs) == 2 * (1 + 3 + 1) * 2 + 2 and len(configs.dropped) == 42 - len(configs)
    assert {config["source_weights"] for config in configs} == {"imagenet", "chestxray8", "none"}
    assert configs.dropped_summary() == (
        "left out 20 config(s) whose source weights are not available: "
        "imagenet-F+chestxray8 (10), imagenet-I+chestxray8 (10)"
    )
    everything = expand("paper")
    assert everything.dropped == [] and everything.dropped_summary() == ""
    assert expand("demo", available_sources="chestxray8") == expand("demo", available_sources=["chestxray8"])
    only_d = expand("demo", available_sources=[])
    assert [config["method"] for config in only_d] == ["D"] and len(only_d.dropped) == 6


def test_no_config_left_or_an_unknown_source_is_an_error():
    space = {"method": "A", "source_weights": ["imagenet", "chestxray8"]}
    with pytest.raises(SpaceError, match=r"every config needs source weights that are not available \(chestxray8, "):
        expand(space, available_sources=["imagenet-F+chestxray8"])
    with pytest.raises(SpaceError, match=r"available_sources: 'nih' not known"):
        expand(space, available_sources=["nih"])


@pytest.mark.parametrize("seed", [-1, 1.5, True, "0"])
def test_bad_expansion_seeds_are_rejected(seed):
    with pytest.raises(SpaceError, match="seed"):
        expand("demo", seed=seed)


def test_the_expansion_is_a_plain_list_of_plain_values():
    configs = expand(parse_space(SWEEP), seed=1)
    assert isinstance(configs, list) and all(type(config) is dict for config in configs)
    for config in configs:
        assert all(type(value) in (str, int, float) for value in config.values())


def test_the_expansion_and_its_dropped_configs_survive_pickling():
    import pickle

    configs = expand("demo", available_sources=["chestxray8"])
    copied = pickle.loads(pickle.dumps(configs))
    assert copied == configs and copied.dropped == configs.dropped and len(copied.dropped) == 3


README_EXAMPLE = """\
name: lr-sweep
backbone: [resnet50, densenet121]
method: [B, C]
freeze: [conv3, conv4]
source_weights: [chestxray8, imagenet-I+chestxray8]
batch_size: {B: 64, C: 16}
learning_rate: {loguniform: [1.0e-5, 1.0e-3]}
dropout: {uniform: [0.2, 0.6]}
frozen_bn: [inference, train]
num_samples: 4
"""


def test_the_readme_example_expands_to_the_count_it_states(tmp_path):
    path = tmp_path / "lr-sweep.yaml"
    path.write_text(README_EXAMPLE)
    configs = expand(path)
    assert len(configs) == 80  # 2 backbones x (B 2 x 2 x 2 + C 2) grid points x 4 draws
    assert Counter((config["method"], config["frozen_bn"]) for config in configs) == {
        ("B", "inference"): 32, ("B", "train"): 32, ("C", "inference"): 16,
    }


def test_the_seed_may_be_given_by_position_as_the_first_contract_had_it():
    assert expand("paper", 3) == expand("paper", seed=3)
