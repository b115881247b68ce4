"""Pretraining a backbone on ChestX-ray14 (a prepared NIH dataset): the study's three sources.

    chestxray8              random initial values, nothing frozen            (method D on NIH)
    imagenet-F+chestxray8   ImageNet values, frozen through `freeze` (conv4)  (method B on NIH)
    imagenet-I+chestxray8   ImageNet values as initial values, nothing frozen (method C on NIH)

Only the backbone's weights are kept (the finding head is dropped), in the weights directory
beside a card (weights.WeightCard). Defaults are the study's: 30 epochs, Adam at 1e-4, batch 16 when
everything trains (chestxray8, imagenet-I+chestxray8) and 128 when early stages are frozen
(imagenet-F+chestxray8). `drop_least_class=True` is the study's least-class drop (14 -> 13 outputs:
Hernia on ChestX-ray14) when prepare did not drop it already. Validation uses one fold of the `cv` rows; NIH's official
`test` rows are never used. With a tracking URI the run is logged to MLflow.
"""
from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from trainables.errors import WeightsError
from trainables.weights import (WeightCard, get_source, imagenet_cached, imagenet_path, sha256_of, weights_file,
                                write_card)

PRETRAIN_METHOD = {"random": "D", "imagenet": "C"}  # frozen (imagenet-F) uses B
EXPERIMENT = "cxrtune-pretrain"


def pretrain_config(*, backbone: str, source: str, image_size: int, epochs: int, batch_size: int | None,
                    learning_rate: float, freeze: str, seed: int, dropout: float = 0.5) -> dict:
    """The trial-style config that pretraining trains (checked like any config); batch_size None is the
    study's for the method (16 for C/D, 128 for B)."""
    from trainables.config import check_config, default_batch_size

    spec = get_source(source)
    if not spec.pretrained_here:
        raise WeightsError(
            f"source {source!r} is not made by pretraining; choose one of chestxray8, imagenet-F+chestxray8, "
            "imagenet-I+chestxray8")
    frozen = source.startswith("imagenet-F")
    method = "B" if frozen else PRETRAIN_METHOD[spec.initial_values]
    return check_config({
        "backbone": backbone, "method": method, "freeze": freeze if frozen else "none",
        "source_weights": "imagenet" if spec.initial_values == "imagenet" else "none",
        "image_size": image_size, "epochs": epochs,
        "batch_size": default_batch_size(method) if batch_size is None else batch_size,
        "learning_rate": learning_rate, "dropout": dropout, "seed": seed,
    })


def pretrain(prepared, *, backbone: str, source: str, weights_dir, image_size: int | None = None,
             epochs: int = 30, batch_size: int | None = None, learning_rate: float = 1e-4, freeze: str = "conv4",
             val_fold: int = 0, seed: int = 0, tracking_uri: str | None = None, data_mode: str = "auto",
             drop_least_class: bool = False, progress=print) -> WeightCard:
    """Train `backbone` on the prepared dataset at `prepared` and save `<backbone>.<source>` weights
    and card in `weights_dir`; returns the card. `freeze` applies to imagenet-F+chestxray8 only;
    batch_size None is the study's (see pretrain_config)."""
    pretrain_config(backbone=backbone, source=source, image_size=image_size or 512, epochs=epochs,
                    batch_size=batch_size, learning_rate=learning_rate, freeze=freeze, seed=seed)  # fail early
    spec = get_source(source)
    if spec.initial_values == "imagenet" and not imagenet_cached(backbone):
        raise WeightsError(
            f"{source} starts from ImageNet weights, which are not in the Keras cache ({imagenet_path(backbone)}); "
            f"fetch them first on a machine with internet (trainables.weights.fetch_imagenet('{backbone}')) "
            "or pretrain --source chestxray8, which needs no download")

    import keras

    from data.class_balance import beta_weights
    from data.handle import make_handle
    from data.pipeline import make_dataset
    from trainables.backbones import get_backbone
    from trainables.losses import weighted_bce
    from trainables.model import backbone_of, build_model, logits_view
    from trainables.report import epoch_reporter
    from trainables.runtime import apply_runtime, plan_runtime, visible_gpus

    handle = make_handle(prepared, mode=data_mode)
    loaded = handle.load()
    loaded, dropped = _drop_least_class(loaded, prepared, progress) if drop_least_class else (loaded, None)
    categories = list(loaded[3])
    image_size = int(image_size or _summary_image_size(prepared))
    config = pretrain_config(backbone=backbone, source=source, image_size=image_size, epochs=epochs,
                             batch_size=batch_size, learning_rate=learning_rate, freeze=freeze, seed=seed)
    fold = _validation_split(loaded, val_fold=val_fold, seed=seed)
    config.update(n_classes=len(categories), fold=val_fold)

    plan = plan_runtime(visible_gpus())
    strategy = apply_runtime(plan, cpus=os.cpu_count())
    keras.utils.set_random_seed(seed)
    beta_p, beta_n = beta_weights(fold.train_y)
    batch_size = config["batch_size"]
    common = dict(image_size=image_size, batch_size=batch_size, seed=seed,
                  preprocessing=get_backbone(backbone).preprocessing)
    train_data = make_dataset(fold.train_x, fold.train_y, training=True, drop_remainder=plan.drop_remainder, **common)
    val_data = make_dataset(fold.val_x, fold.val_y, training=False, **common)
    with strategy.scope():
        model = build_model(config, weights_dir=None)
        trainer = logits_view(model)  # the loss reads the head's logits (trainables/losses.py)
        trainer.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
                        loss=weighted_bce(beta_p, beta_n), jit_compile=plan.jit_compile)

    history: list[dict] = []

    def record(metrics, _checkpoint):
        history.append(metrics)
        progress(f"pretrain {backbone}.{source} epoch {int(metrics['epoch'])}/{epochs}: "
                 f"train_loss {metrics['train_loss']:.4f} val_auc {metrics['val_auc']:.3f} "
                 f"({metrics['epoch_time_s']:.1f} s)")

    reporter = epoch_reporter(
        validation_data=val_data, validation_labels=fold.val_y, categories=categories, beta_p=beta_p,
        beta_n=beta_n, n_train=len(fold.train_y), report=record, save_checkpoint=lambda epoch: None,
        checkpoint_every=epochs + 1, last_epoch=epochs, fixed_metrics={"gpus": plan.gpus})
    trainer.fit(train_data, epochs=epochs, callbacks=[reporter], verbose=0, shuffle=False)

    weights_dir = Path(weights_dir).resolve()
    weights_dir.mkdir(parents=True, exist_ok=True)
    path = weights_file(weights_dir, backbone, source)
    partial = path.with_name(f".{path.stem}.partial.weights.h5")  # readers never see a half-written file
    backbone_of(model).save_weights(str(partial))
    os.replace(partial, path)
    card = WeightCard(
        backbone=backbone, source=source, source_dataset=_dataset_name(prepared, len(categories), dropped),
        initial_values=spec.initial_values, frozen_depth=config["freeze"] if config["method"] == "B" else "none",
        epochs=epochs, val_auc=float(history[-1]["val_auc"]), sha256=sha256_of(path), image_size=image_size,
        weights_file=path.name, categories=categories, n_train=len(fold.train_y), n_val=len(fold.val_y),
        created_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"), keras_version=keras.__version__,
    )
    if tracking_uri:
        card = _log_to_mlflow(tracking_uri, card, config, history, weights_dir)
    write_card(weights_dir, card)
    return card


def _drop_least_class(loaded, prepared, progress):
    """`loaded` without the category that has the fewest images in the whole prepared set, and its name;
    unchanged (name None) when prepare dropped the least class already."""
    import pandas as pd

    from data.labels import drop_least_category
    from data.manifest import load_prepared

    images_or_paths, labels, manifest, categories = loaded
    already = load_prepared(prepared).summary.get("least_class_dropped")
    if already:
        progress(f"pretrain: the least class ({already}) was dropped by prepare already; keeping {len(categories)} "
                 "categories")
        return loaded, None
    kept, dropped = drop_least_category(pd.DataFrame(np.asarray(labels), columns=list(categories)))
    keep = [list(categories).index(name) for name in kept]
    name = next(iter(dropped))
    progress(f"pretrain: least class {name} ({dropped[name]} images) dropped: {len(kept)} outputs")
    return (images_or_paths, np.asarray(labels)[:, keep], manifest, kept), name


def _validation_split(loaded, *, val_fold: int, seed: int):
    """The prepared folds when assigned; else 5 patient-grouped folds over the `cv` rows (or all rows)."""
    from data.folds import assign_folds
    from trainables.train import split_rows

    images_or_paths, labels, manifest, categories = loaded
    has_folds = "fold" in manifest and "split" in manifest and (manifest["fold"] >= 0).any()
    if not has_folds:
        cv = manifest[manifest["split"] == "cv"] if "split" in manifest else manifest
        folded = assign_folds(cv.drop(columns=["split", "fold"], errors="ignore"), n_folds=5,
                              test_fraction=0.0, seed=seed, label_cols=list(categories))
        manifest = manifest.copy()
        manifest["split"], manifest["fold"] = "test", -1
        manifest.loc[folded.index, "split"] = "cv"
        manifest.loc[folded.index, "fold"] = folded["fold"].to_numpy()
    return split_rows(images_or_paths, np.asarray(labels), manifest.reset_index(drop=True), categories,
                      fold=val_fold)


def _summary_image_size(prepared) -> int:
    from data.manifest import load_prepared

    return int(load_prepared(prepared).summary["image_size"])


def _dataset_name(prepared, n_categories: int, dropped: str | None = None) -> str:
    from data.manifest import load_prepared

    summary = load_prepared(prepared).summary
    least = dropped or summary.get("least_class_dropped")
    return (f"{summary.get('format', 'unknown')} dataset ({summary.get('taxonomy', 'unknown')} taxonomy, "
            f"{n_categories} categories{f', least class {least} dropped' if least else ''}) at "
            f"{Path(prepared).resolve()}")


def _log_to_mlflow(tracking_uri: str, card: WeightCard, config: dict, history: list[dict], weights_dir: Path):
    import dataclasses

    import mlflow
    from mlflow.entities import Metric, Param

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = (experiment.experiment_id if experiment
                     else client.create_experiment(EXPERIMENT, artifact_location=artifact_location(tracking_uri)))
    run = client.create_run(experiment_id, run_name=card.name, tags={"cxrtune.kind": "pretrain"})
    run_id = run.info.run_id
    card = dataclasses.replace(card, mlflow_run_id=run_id)
    params = {**config, "source": card.source, "source_dataset": card.source_dataset}
    now_ms = int(datetime.now(timezone.utc).timestamp() * 1000)
    metrics = [Metric(key, float(value), now_ms, int(row["epoch"]))
               for row in history for key, value in row.items() if np.isfinite(value)]
    client.log_batch(run_id, params=[Param(key, str(value)) for key, value in params.items()])
    for start in range(0, len(metrics), 1000):  # MLflow accepts at most 1,000 metrics per batch
        client.log_batch(run_id, metrics=metrics[start:start + 1000])
    write_card(weights_dir, card)
    client.log_artifact(run_id, str(weights_dir / card.weights_file), artifact_path="weights")
    client.log_artifact(run_id, str(weights_dir / f"{card.name}.json"), artifact_path="weights")
    client.set_terminated(run_id)
    return card


def artifact_location(tracking_uri: str) -> str | None:
    """Beside an sqlite store (`<db folder>/mlartifacts`); a server chooses its own (None).

    Without it MLflow puts an sqlite store's artifacts in `./mlruns` of whatever folder the process
    happens to run in."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return None
    return (Path(tracking_uri[len(prefix):]).resolve().parent / "mlartifacts").as_uri()
