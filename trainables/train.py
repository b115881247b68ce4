"""The trial: one config and one fold -> a trained model and one report per epoch (ARCHITECTURE §6).

`fit_fold` is the whole trial without Tune (report is any callable), so it is testable on its own;
`train_fold` is the Ray Tune function trainable that wires it to tune.report / tune.Checkpoint /
tune.get_checkpoint. TensorFlow and Ray are imported inside the functions.
"""
from __future__ import annotations

import functools
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from trainables.backbones import get_backbone
from trainables.config import check_config
from trainables.errors import TrainableConfigError

# search/ nests the flat trial config under this key of Tune's param space (search/trials.py).
TUNE_CONFIG_KEY = "trial_config"


@dataclass
class FoldData:
    """One fold's split of a dataset handle's rows."""
    train_x: object       # uint8 array (N x H x W) or list of paths
    train_y: np.ndarray
    val_x: object
    val_y: np.ndarray
    categories: list[str]
    val_ids: list[str] = field(default_factory=list)  # manifest image_id of each validation row


def split_fold(data, fold: int) -> FoldData:
    """Train on the `cv` rows of other folds, validate on the `cv` rows of `fold` (`test` rows unused)."""
    return split_rows(*data.load(), fold=fold)


def split_rows(images_or_paths, labels, manifest, categories, *, fold: int) -> FoldData:
    """`split_fold` on the four parts a handle's `load()` returns."""
    if "split" not in manifest or "fold" not in manifest:
        raise TrainableConfigError("the dataset has no folds yet (manifest lacks split/fold): run `cxrtune folds`")
    in_cv = (manifest["split"] == "cv").to_numpy()
    folds = manifest["fold"].to_numpy()
    train_rows = np.flatnonzero(in_cv & (folds != fold))
    val_rows = np.flatnonzero(in_cv & (folds == fold))
    if len(train_rows) == 0 or len(val_rows) == 0:
        present = sorted(set(folds[in_cv].tolist()))
        raise TrainableConfigError(
            f"fold {fold} leaves {len(train_rows)} training and {len(val_rows)} validation images; "
            f"the dataset's cv folds are {present}")

    def take(rows):
        if isinstance(images_or_paths, np.ndarray):
            return images_or_paths[rows]
        return [images_or_paths[row] for row in rows]

    labels = np.asarray(labels)
    val_ids = manifest["image_id"].astype(str).to_numpy()[val_rows].tolist() if "image_id" in manifest else []
    return FoldData(take(train_rows), labels[train_rows], take(val_rows), labels[val_rows], list(categories),
                    val_ids)


def fit_fold(config: dict, data, *, report: Callable[[dict, Path | None], None],
             resume_from: str | Path | None = None, checkpoint_root: str | Path | None = None,
             cpus: int | None = None, feature_refs: dict | None = None):
    """Train `config` (a flat config plus `fold`) on `data` (a data.handle handle).

    Calls `report(metrics, checkpoint_dir_or_None)` once per epoch; checkpoint folders are made
    under `checkpoint_root` (a temporary folder when None) and belong to the caller afterwards.
    `resume_from` is a checkpoint folder to continue from. `feature_refs`: small feature caches shared by
    the search ({cache key: (meta, fetch)}, fetch() returns the features; trainables/feature_share.py).
    Returns the trained Keras model.

    Over 60 lines on purpose: this is the one training loop (trials, pretraining and train-final all call
    it), and it reads top to bottom as the recipe: data, model, loss, callbacks, fit."""
    from trainables.native_logs import import_tensorflow_quietly

    import_tensorflow_quietly()  # first in a trial worker: no native start-up lines on the terminal
    import keras

    from data.class_balance import beta_weights
    from data.pipeline import make_dataset
    from trainables.checkpoint import restore_checkpoint, save_checkpoint
    from trainables.losses import weighted_bce
    from trainables.model import build_model, logits_view, parameter_counts
    from trainables.predictions import write_predictions
    from trainables.report import epoch_reporter
    from trainables.runtime import apply_runtime, plan_runtime, visible_gpus

    if "fold" not in config:
        raise TrainableConfigError("trial config lacks 'fold' (the driver adds it per trial)")
    config = check_config(config)
    from trainables.trunk import fit_from_cache  # a frozen trunk's output computed once (feature_cache.py)

    cached = fit_from_cache(config, data, report=report, resume_from=resume_from,
                            checkpoint_root=checkpoint_root, cpus=cpus, feature_refs=feature_refs)
    if cached is not None:
        return cached
    fold = split_fold(data, int(config["fold"]))
    if config.get("n_classes", len(fold.categories)) != len(fold.categories):
        raise TrainableConfigError(
            f"config says n_classes={config['n_classes']}, the dataset has {len(fold.categories)} categories")
    config["n_classes"] = len(fold.categories)

    plan = plan_runtime(visible_gpus(), mixed_precision=config.get("mixed_precision", "auto"),
                        xla=config.get("xla", "auto"))
    strategy = apply_runtime(plan, cpus=cpus)
    keras.utils.set_random_seed(int(config["seed"]))
    beta_p, beta_n = beta_weights(fold.train_y)
    preprocessing = get_backbone(config["backbone"]).preprocessing
    common = dict(image_size=config["image_size"], batch_size=config["batch_size"],
                  preprocessing=preprocessing, seed=int(config["seed"]))
    train_data = make_dataset(fold.train_x, fold.train_y, training=True, drop_remainder=plan.drop_remainder,
                              augment=False if config.get("augment_views") == 0 else None, **common)
    val_data = make_dataset(fold.val_x, fold.val_y, training=False, **common)

    with strategy.scope():
        model = build_model(config)
        trainer = logits_view(model)  # the loss reads logits; `model` (probabilities) shares its weights
        trainer.compile(optimizer=keras.optimizers.Adam(learning_rate=config["learning_rate"]),
                        loss=weighted_bce(beta_p, beta_n),
                        # threshold 0 on logits is 0.5 on probabilities
                        metrics=[keras.metrics.BinaryAccuracy(name="binary_accuracy", threshold=0.0)],
                        jit_compile=plan.jit_compile)
        initial_epoch = restore_checkpoint(trainer, resume_from, config=config) if resume_from else 0
    trainable, total = parameter_counts(model)
    root = Path(checkpoint_root) if checkpoint_root else Path(tempfile.mkdtemp(prefix="cxrtune-ckpt-"))

    reporter = epoch_reporter(
        validation_data=val_data, validation_labels=fold.val_y, categories=fold.categories,
        beta_p=beta_p, beta_n=beta_n, n_train=len(fold.train_y), report=report,
        # The last epoch's checkpoint is never trained from again: weights only (a third of the disk).
        save_checkpoint=lambda epoch: save_checkpoint(trainer, root / f"epoch_{epoch:04d}", epoch=epoch,
                                                      config=config, optimizer_state=epoch < config["epochs"]),
        checkpoint_every=config["checkpoint_every"], last_epoch=config["epochs"],
        fixed_metrics={"trainable_params": trainable, "total_params": total, "gpus": plan.gpus},
        # Out-of-fold predictions beside each checkpoint's weights (trainables/predictions.py).
        save_predictions=lambda folder, scores, epoch: write_predictions(
            folder, image_ids=fold.val_ids, categories=fold.categories, probabilities=scores,
            labels=fold.val_y, epoch=epoch) if fold.val_ids else None,
    )
    if initial_epoch < config["epochs"]:
        trainer.fit(train_data, epochs=config["epochs"], initial_epoch=initial_epoch,
                  callbacks=[reporter], verbose=0, shuffle=False)  # the pipeline shuffles
    return model


def train_fold(config: dict, data, feature_refs: dict | None = None) -> None:
    """Ray Tune function trainable: `tune.with_parameters(train_fold, data=handle[, feature_refs=...])`."""
    from trainables.native_logs import import_tensorflow_quietly

    import_tensorflow_quietly()  # before `import keras`, which imports TensorFlow: no native start-up lines
    import ray
    from ray import tune

    import keras

    keras.backend.clear_session()  # a reused actor (search reuses them): forget the previous trial's models
    flat = dict(config.get(TUNE_CONFIG_KEY, config))
    # Small feature caches in Ray's object store (search/feature_share.py): fetched only if this trial's
    # trunk is among them (ray.get: zero-copy on this node).
    feature_refs = {key: (meta, functools.partial(ray.get, ref)) for key, (meta, ref) in (feature_refs or {}).items()}
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")

    def report(metrics: dict, checkpoint_dir: Path | None) -> None:
        if checkpoint_dir is None:
            tune.report(metrics)
            return
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(checkpoint_dir)))
        shutil.rmtree(checkpoint_dir, ignore_errors=True)  # Tune has copied it into its storage

    work = Path(tempfile.mkdtemp(prefix="cxrtune-trial-"))
    try:
        resume_from = None
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            resume_from = Path(checkpoint.to_directory(str(work / "resume")))
        fit_fold(flat, data, report=report, resume_from=resume_from, checkpoint_root=work / "out",
                 cpus=int(cpus) if cpus else None, feature_refs=feature_refs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
