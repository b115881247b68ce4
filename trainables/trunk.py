"""Training a method A/B model from cached trunk features (feature_cache.py) instead of images.

The model is the one `build_model` makes, built the same way (same seed, same draws); it is then seen as
two models that share its layers and variables:

    trunk  image -> the frozen part's output: A the pooled vector (avg_pool), B the activation at the
           freeze boundary (e.g. conv4_block6_out)
    part   that output -> logits: A dropout + dense; B the backbone's remaining stages + head (without the
           sigmoid: the loss reads logits, as in fit_fold's `logits_view`)

Only `part` is trained, on batches drawn from the cached features in the same seeded order as the image
pipeline would draw images, so the trained weights match training on images (augmentation off) within
float tolerance (A exactly up to summation order; B up to the float16 rounding of the stored features).
Because the variables are shared, the full model holds the trained values: checkpoints and the returned
model are the full network, loaded by `train-final`, `predict` and Grad-CAM as before.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import numpy as np

from trainables.errors import TrainableConfigError
from trainables.feature_cache import (cache_identity, cache_key, dataset_identity, feature_dtype,
                                      get_or_compute, n_views, weights_sha256, why_not_cached, why_not_fits)

PASS_BATCH_SIZE = 32  # images per trunk call in the one-off feature pass: bounded memory at 512 px
VIEW_SEED_STRIDE = 1000  # view v of a config with seed s is drawn with pipeline seed s * 1000 + v
_TENSORS: dict[str, object] = {}  # key -> features as a TF tensor, one entry per worker (reused actors)


def split_model(model, config: dict):
    """(trunk, part) sharing `model`'s layers; see the module docstring."""
    import keras

    from trainables.backbones import get_backbone
    from trainables.model import LOGITS_LAYER, backbone_of

    if config["method"] == "A":
        boundary = model.get_layer("avg_pool").output
        trunk = keras.Model(model.input, boundary, name="trunk")
        features = keras.Input(tuple(boundary.shape[1:]), name="features")
        hidden = features
    else:
        backbone = backbone_of(model)
        end = backbone.get_layer(get_backbone(config["backbone"]).stage_ends[config["freeze"]]).output
        trunk = keras.Model(backbone.input, end, name="trunk")
        rest = keras.Model(end, backbone.output, name="trainable_stages")  # the sub-graph after the boundary
        features = keras.Input(tuple(end.shape[1:]), name="features")
        hidden = model.get_layer("avg_pool")(rest(features))
    outputs = model.get_layer(LOGITS_LAYER)(model.get_layer("dropout")(hidden))
    return trunk, keras.Model(features, outputs, name="trainable_part")


def fold_positions(manifest, fold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cv rows of the manifest, train positions, val positions), positions counted within the cv rows."""
    if "split" not in manifest or "fold" not in manifest:
        raise TrainableConfigError("the dataset has no folds yet (manifest lacks split/fold): run `cxrtune folds`")
    cv_rows = np.flatnonzero((manifest["split"] == "cv").to_numpy())
    folds = manifest["fold"].to_numpy()[cv_rows]
    return cv_rows, np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)


def fit_from_cache(config: dict, data, *, report: Callable, resume_from=None, checkpoint_root=None,
                   cpus: int | None = None, feature_refs: dict | None = None):
    """`fit_fold` on cached features: the trained full model, or None (caller trains on images) when the
    config cannot use the cache or the cache would not fit (said in one line). `feature_refs`
    ({key: (meta, fetch)}, fetch() returns the features; trainables/feature_share.py) holds small shared caches;
    other keys are read from (or computed into) the feature cache folder."""
    if why_not_cached(config) is not None:
        return None
    import keras

    from data.class_balance import beta_weights
    from trainables.model import build_model
    from trainables.runtime import apply_runtime, plan_runtime, visible_gpus

    images, labels, manifest, categories = data.load()
    cv_rows, train_at, val_at = fold_positions(manifest, int(config["fold"]))
    val_ids = (manifest["image_id"].astype(str).to_numpy()[cv_rows][val_at].tolist()
               if "image_id" in manifest else [])
    labels = np.asarray(labels, dtype=np.float32)[cv_rows]
    if len(train_at) == 0 or len(val_at) == 0:
        return None  # fit_fold explains the empty fold
    config["n_classes"] = len(categories)
    plan = plan_runtime(visible_gpus(), mixed_precision=config.get("mixed_precision", "auto"),
                        xla=config.get("xla", "auto"))
    strategy = apply_runtime(plan, cpus=cpus)
    keras.utils.set_random_seed(int(config["seed"]))  # the same draws, in the same order, as fit_fold
    beta_p, beta_n = beta_weights(labels[train_at].astype(np.uint8))
    with strategy.scope():
        model = build_model(config)
        trunk, part = split_model(model, config)
    identity, key, shape, dtype = trunk_entry(config, images, manifest, cv_rows, trunk)
    shared = (feature_refs or {}).get(key)
    if shared is not None:  # computed once by the search's driver step; every trial reads the same object
        meta, computed_here = shared[0], False
        if key not in _TENSORS:
            features = shared[1]()  # fetch (train_fold: ray.get from the object store)
    else:
        cache_dir = Path(config["feature_cache_dir"])
        too_big = None if key in _TENSORS else why_not_fits(int(np.prod(shape)) * dtype.itemsize, cache_dir)
        if too_big:
            print(f"feature cache: {too_big}; training config {config.get('config_id')} on images instead",
                  file=sys.stderr, flush=True)
            return None
        features, meta, computed_here = get_or_compute(
            cache_dir, key, identity, shape, dtype,
            lambda out: _feature_pass(trunk, _take(images, cv_rows), labels, config, out))
    if key not in _TENSORS:
        import tensorflow as tf

        _TENSORS.clear()
        _TENSORS[key] = tf.constant(np.asarray(features))
    return _fit_part(model, part, _TENSORS[key], labels, train_at, val_at, categories, config, plan, strategy,
                     beta_p=beta_p, beta_n=beta_n, report=report, resume_from=resume_from, val_ids=val_ids,
                     checkpoint_root=checkpoint_root,
                     cache_metrics={"feature_cache_hit": 1.0, "feature_pass_s": float(meta["pass_seconds"]),
                                    "feature_pass_here": 1.0 if computed_here else 0.0,
                                    "feature_cache_object_store": 1.0 if shared is not None else 0.0})


def trunk_entry(config: dict, images, manifest, cv_rows, trunk) -> tuple[dict, str, tuple, np.dtype]:
    """(identity, key, shape, dtype) of the cache entry holding `trunk`'s output for the `cv_rows`."""
    identity = cache_identity(config, dataset_identity(images, manifest, cv_rows), weights_sha256(config))
    # K views: block 0 un-augmented (validation), blocks 1..K the views (training draws one per image).
    shape = ((n_views(config) + 1) * len(cv_rows), *trunk.output.shape[1:])
    return identity, cache_key(identity), shape, feature_dtype(config)


def _take(images_or_paths, rows):
    if isinstance(images_or_paths, np.ndarray):
        return images_or_paths[rows]
    return [images_or_paths[row] for row in rows]


def _feature_pass(trunk, images, labels, config: dict, out: np.ndarray) -> None:
    """Fill `out` with the trunk's output for every image, in order: un-augmented, then (with K views)
    view 1..K of every image, each block drawn by the image pipeline's default augmentation."""
    from data.pipeline import make_dataset
    from trainables.backbones import get_backbone

    common = dict(image_size=config["image_size"], batch_size=PASS_BATCH_SIZE,
                  preprocessing=get_backbone(config["backbone"]).preprocessing)
    n_images = len(labels)
    start = 0
    for batch, _ in make_dataset(images, labels, training=False, seed=int(config["seed"]), **common):
        values = np.asarray(trunk.predict_on_batch(batch))
        out[start:start + len(values)] = values.astype(out.dtype)
        start += len(values)
    # The pipeline augments only when training, and training shuffles: the "labels" are row numbers, so
    # each augmented batch says where its rows go. One seed per view: K different, reproducible views.
    rows = np.arange(n_images, dtype=np.float32)[:, None]  # exact in float32 below 2**24 images
    for view in range(1, n_views(config) + 1):
        views = make_dataset(images, rows, training=True, augment=None, seed=view_seed(config, view), **common)
        for batch, where in views:
            values = np.asarray(trunk.predict_on_batch(batch))
            out[view * n_images + np.asarray(where)[:, 0].astype(np.int64)] = values.astype(out.dtype)


def view_seed(config: dict, view: int) -> int:
    """The image pipeline's seed for view `view` (1..K) of a config: distinct per view and per seed."""
    return int(config["seed"]) * VIEW_SEED_STRIDE + view


def feature_batches(features, labels, positions, *, batch_size: int, training: bool, seed: int,
                    drop_remainder: bool = False, views: int = 0):
    """(float32 features, float32 labels) batches of `positions`, shuffled as data.pipeline shuffles images
    (same seed, same op), so that batch k holds the same images in both. With `views` K > 0, `features`
    holds K + 1 blocks of len(labels) rows: training draws one of blocks 1..K per image and batch (seeded,
    a new draw every epoch); validation reads block 0 (un-augmented)."""
    import tensorflow as tf

    positions_tensor, label_tensor = tf.constant(positions, tf.int64), tf.constant(labels)
    n_images = len(labels)
    indices = tf.data.Dataset.range(len(positions))
    if training:
        indices = indices.shuffle(len(positions), seed=seed, reshuffle_each_iteration=True)
    draw_views = training and views > 0

    def gather(index, view_seed_pair):
        rows = tf.gather(positions_tensor, index)
        cache_rows = rows
        if draw_views:
            view = tf.random.stateless_uniform(tf.shape(rows), view_seed_pair, minval=1, maxval=views + 1,
                                               dtype=tf.int64)
            cache_rows = rows + view * n_images
        return tf.cast(tf.gather(features, cache_rows), tf.float32), tf.gather(label_tensor, rows)

    # One seed pair per batch, a new stream each epoch (as data.pipeline draws its augmentation).
    view_seeds = tf.data.Dataset.random(seed=seed + 1, rerandomize_each_iteration=True).batch(2)
    batches = tf.data.Dataset.zip((indices.batch(batch_size, drop_remainder=drop_remainder), view_seeds))
    return batches.map(gather).prefetch(tf.data.AUTOTUNE)


def _fit_part(model, part, features, labels, train_at, val_at, categories, config, plan, strategy, *,
              beta_p, beta_n, report, resume_from, checkpoint_root, cache_metrics, val_ids):
    import tempfile

    import keras

    from trainables.checkpoint import restore_checkpoint, save_checkpoint
    from trainables.losses import weighted_bce
    from trainables.model import logits_view, parameter_counts
    from trainables.predictions import write_predictions
    from trainables.report import epoch_reporter

    seed, batch_size = int(config["seed"]), int(config["batch_size"])
    train_data = feature_batches(features, labels, train_at, batch_size=batch_size, training=True, seed=seed,
                                 drop_remainder=plan.drop_remainder, views=n_views(config))
    val_data = feature_batches(features, labels, val_at, batch_size=batch_size, training=False, seed=seed)
    with strategy.scope():
        optimizer = keras.optimizers.Adam(learning_rate=config["learning_rate"])
        loss = weighted_bce(beta_p, beta_n)
        part.compile(optimizer=optimizer, loss=loss, jit_compile=plan.jit_compile,
                     # threshold 0 on logits is 0.5 on probabilities
                     metrics=[keras.metrics.BinaryAccuracy(name="binary_accuracy", threshold=0.0)])
        # Checkpoints as fit_fold writes them: the full network's logits view with the (shared) optimizer.
        trainer = logits_view(model)
        trainer.compile(optimizer=optimizer, loss=loss)
        initial_epoch = restore_checkpoint(trainer, resume_from, config=config) if resume_from else 0
    trainable, total = parameter_counts(model)
    root = Path(checkpoint_root) if checkpoint_root else Path(tempfile.mkdtemp(prefix="cxrtune-ckpt-"))
    reporter = epoch_reporter(
        validation_data=val_data, validation_labels=labels[val_at], categories=list(categories),
        beta_p=beta_p, beta_n=beta_n, n_train=len(train_at), report=report,
        save_checkpoint=lambda epoch: save_checkpoint(trainer, root / f"epoch_{epoch:04d}", epoch=epoch,
                                                      config=config, optimizer_state=epoch < config["epochs"]),
        checkpoint_every=config["checkpoint_every"], last_epoch=config["epochs"],
        fixed_metrics={"trainable_params": trainable, "total_params": total, "gpus": plan.gpus, **cache_metrics},
        save_predictions=lambda folder, scores, epoch: write_predictions(
            folder, image_ids=val_ids, categories=list(categories), probabilities=scores,
            labels=labels[val_at], epoch=epoch) if val_ids else None,
    )
    if initial_epoch < config["epochs"]:
        part.fit(train_data, epochs=config["epochs"], initial_epoch=initial_epoch, callbacks=[reporter],
                 verbose=0, shuffle=False)
    return model
