"""Errors raised on bad trial configs and unusable weights. Importing this starts no TensorFlow."""


class TrainableConfigError(ValueError):
    """A config cannot be turned into a model (unknown backbone, bad freeze depth, ...)."""


class WeightsError(ValueError):
    """Source weights are missing or do not fit the model they are loaded into."""
