"""Files on disk -> a prepared, validated dataset. Importing this package starts no TensorFlow."""
from data.manifest import PreparedDataset, load_prepared

__all__ = ["PreparedDataset", "load_prepared"]
