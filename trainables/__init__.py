"""One config + one fold -> a trained Keras model and per-epoch metrics.

Importing this package starts no TensorFlow: Keras is imported inside the functions that build or
train models, so `search` and the CLI can list backbones and sources and check configs cheaply.
"""
from trainables.backbones import get_backbone, list_backbones
from trainables.config import check_config
from trainables.losses import weighted_bce
from trainables.model import build_model
from trainables.weights import available_weights, fetch_imagenet, imagenet_cached, list_sources

__all__ = [
    "available_weights", "build_model", "check_config", "fetch_imagenet", "get_backbone",
    "imagenet_cached", "list_backbones", "list_sources", "weighted_bce",
]
