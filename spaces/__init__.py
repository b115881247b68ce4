"""Search spaces: what may be searched -> a finite, seeded list of flat configs (pure Python + PyYAML).

    space = load_space("paper")            # or "demo", a YAML path, a mapping
    configs = expand(space, seed=0, overrides={"epochs": 2}, available_sources={"chestxray8"})
    configs.dropped                        # configs left out for missing source weights
    validate_config({"backbone": "resnet50", "method": "B", "freeze": 22})   # -> complete config + config_id
    vocabulary.BACKBONES["resnet50"].stage_ends  # the one table of names every room reads (spaces/vocabulary.py)
"""
from spaces import vocabulary
from spaces.configs import CONFIG_KEYS, DRIVER_SETTING_KEYS, TRIAL_KEYS, config_id, validate_config
from spaces.errors import SpaceError
from spaces.expand import Expansion, expand
from spaces.presets import load_space, preset_names
from spaces.space import Space, parse_space

__all__ = [
    "CONFIG_KEYS",
    "DRIVER_SETTING_KEYS",
    "Expansion",
    "Space",
    "SpaceError",
    "TRIAL_KEYS",
    "config_id",
    "expand",
    "load_space",
    "parse_space",
    "preset_names",
    "validate_config",
    "vocabulary",
]
