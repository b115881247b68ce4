"""Errors raised on bad search-space input (presets, YAML files, invalid combinations)."""


class SpaceError(ValueError):
    """A search space or config is invalid. The message names the key and the accepted values."""
