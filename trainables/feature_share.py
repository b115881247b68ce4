"""Small feature caches through Ray's object store instead of the shared filesystem: the trial side.

A search's driver calls `search.feature_share.share_features(trial_configs, data, cpus=..., gpus=...)` before
its trials start (Ray lives in search/).
For each frozen trunk that cacheable trials share (same backbone, source weights, frozen depth, image size,
views), one Ray task with a trial's resources builds the trunk and runs the one-off feature pass. When the
features take at most OBJECT_STORE_MAX_BYTES, the task returns them as a Ray object, and every trial on
every node reads that one object (`ray.get`: zero-copy on its node); nothing is written to the cache
folder, so a cluster without a shared filesystem still computes each trunk once. Larger caches are left to
the trials, which compute them once into the feature cache folder under its file lock (feature_cache.py).

The bound, 256 MiB: Ray's object store takes 30% of a node's memory by default (7 GB on a 24 GB node), and
each trial copies the features once more into its own TensorFlow tensor; 256 MiB is ~32,000 ResNet50
pooled vectors (method A on a hospital-sized set at any image size), or B through conv4 at 128 px on
~2,000 images; a 512 px B cache (3.8 GiB for 1,924 images) goes through the filesystem.
TensorFlow is imported inside the functions; this module imports no Ray.
"""
from __future__ import annotations

import time

import numpy as np

from trainables.config import check_config
from trainables.feature_cache import n_views, why_not_cached

OBJECT_STORE_MAX_BYTES = 256 * 2**20


def trunk_groups(trial_configs: list[dict]) -> list[dict]:
    """One config per frozen trunk that cacheable trials share, in the trials' order."""
    representatives = {}
    for config in trial_configs:
        config = check_config(config)
        if why_not_cached(config) is not None:
            continue
        trunk = (config["backbone"], config["source_weights"], config.get("weights_dir"), config["method"] == "A",
                 config["freeze"], config["image_size"], n_views(config), config["seed"] if n_views(config) else None)
        representatives.setdefault(trunk, config)
    return list(representatives.values())


def shared_pass(config: dict, data, max_bytes: int, cpus: int | None) -> tuple[dict, np.ndarray | None]:
    """(meta, features or None): the trunk's output for the dataset's cv rows, when at most `max_bytes`."""
    from trainables.native_logs import import_tensorflow_quietly

    import_tensorflow_quietly()
    import keras

    from trainables.model import build_model
    from trainables.runtime import apply_runtime, plan_runtime, visible_gpus
    from trainables.trunk import _feature_pass, _take, fold_positions, split_model, trunk_entry

    config = check_config(config)
    images, labels, manifest, categories = data.load()
    config["n_classes"] = len(categories)
    cv_rows = fold_positions(manifest, fold=-1)[0]  # the cv rows do not depend on the fold
    strategy = apply_runtime(plan_runtime(visible_gpus(), mixed_precision=config.get("mixed_precision", "auto"),
                                          xla=config.get("xla", "auto")), cpus=cpus)
    keras.utils.set_random_seed(int(config["seed"]))
    with strategy.scope():
        trunk, _ = split_model(build_model(config), config)
    identity, key, shape, dtype = trunk_entry(config, images, manifest, cv_rows, trunk)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    meta = {**identity, "key": key, "shape": list(shape), "dtype": str(dtype), "nbytes": nbytes}
    if nbytes > max_bytes:
        return {**meta, "in_object_store": False}, None
    features = np.empty(shape, dtype)
    started = time.perf_counter()
    _feature_pass(trunk, _take(images, cv_rows), np.asarray(labels, np.float32)[cv_rows], config, features)
    return {**meta, "in_object_store": True, "pass_seconds": time.perf_counter() - started}, features
