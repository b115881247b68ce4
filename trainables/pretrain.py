"""Pretraining a backbone on ChestX-ray14 (a prepared NIH dataset): the study's three sources.

    chestxray8              random initial values, nothing frozen            (method D on NIH)
    imagenet-F+chestxray8   ImageNet values, frozen through `freeze` (conv4)  (method B on NIH)
    imagenet-I+chestxray8   ImageNet values as initial values, nothing frozen (method C on NIH)

Only the backbone's weights are kept (the finding head is dropped), in the weights directory
beside a card (weights.WeightCard). Defaults are the study's: 30 epochs, Adam at 1e-4, batch 16 when
everything trains (chestxray8, imagenet-I+chestxray8) and 128 when early stages are frozen
(imagenet-F+chestxray8). `drop_least_class=True` is the study's least-class drop (14 -> 13 outputs:
Hernia on ChestX-ray14) when prepare did not drop it already. Validation uses one fold of the `cv` rows; NIH's official
`test` rows are never used.

Training is the trials' own loop (`trainables.train.fit_fold`) on a handle over the loaded rows, as
`train-final` does. MLflow logging is the caller's (`log_run`; the CLI's is search/pretrain_tracking.py):
this module imports no MLflow.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from trainables.errors import WeightsError
from trainables.weights import (WeightCard, get_source, imagenet_cached, imagenet_path, sha256_of, weights_file,
                                write_card)

PRETRAIN_METHOD = {"random": "D", "imagenet": "C"}  # frozen (imagenet-F) uses B


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
             val_fold: int = 0, seed: int = 0, data_mode: str = "auto", drop_least_class: bool = False,
             progress=print, log_run=None) -> WeightCard:
    """Train `backbone` on the prepared dataset at `prepared` and save `<backbone>.<source>` weights
    and card in `weights_dir`; returns the card. `freeze` applies to imagenet-F+chestxray8 only;
    batch_size None is the study's (see pretrain_config). `log_run(card, config, history, weights_dir) ->
    card` records the finished run (the search room's MLflow logging: search/pretrain_tracking.py)."""
    pretrain_config(backbone=backbone, source=source, image_size=image_size or 512, epochs=epochs,
                    batch_size=batch_size, learning_rate=learning_rate, freeze=freeze, seed=seed)  # fail early
    spec = get_source(source)
    if spec.initial_values == "imagenet" and not imagenet_cached(backbone):
        raise WeightsError(
            f"{source} starts from ImageNet weights, which are not in the Keras cache ({imagenet_path(backbone)}); "
            f"fetch them first on a machine with internet (trainables.weights.fetch_imagenet('{backbone}')) "
            "or pretrain --source chestxray8, which needs no download")

    from data.handle import make_handle

    loaded = make_handle(prepared, mode=data_mode).load()
    loaded, dropped = _drop_least_class(loaded, prepared, progress) if drop_least_class else (loaded, None)
    data = LoadedRows(_with_folds(loaded, seed=seed))
    categories = list(data.categories)
    image_size = int(image_size or _summary_image_size(prepared))
    config = pretrain_config(backbone=backbone, source=source, image_size=image_size, epochs=epochs,
                             batch_size=batch_size, learning_rate=learning_rate, freeze=freeze, seed=seed)
    # The trials' own loop on fold `val_fold`; its one checkpoint (the last epoch's) is scratch.
    config.update(n_classes=len(categories), fold=val_fold, checkpoint_every=epochs)
    model, history = _train(config, data, progress, name=f"{backbone}.{source}")

    import keras

    from trainables.model import backbone_of

    weights_dir = Path(weights_dir).resolve()
    weights_dir.mkdir(parents=True, exist_ok=True)
    path = weights_file(weights_dir, backbone, source)
    partial = path.with_name(f".{path.stem}.partial.weights.h5")  # readers never see a half-written file
    backbone_of(model).save_weights(str(partial))
    os.replace(partial, path)
    n_train, n_val = data.fold_sizes(val_fold)
    card = WeightCard(
        backbone=backbone, source=source, source_dataset=_dataset_name(prepared, len(categories), dropped),
        initial_values=spec.initial_values, frozen_depth=config["freeze"] if config["method"] == "B" else "none",
        epochs=epochs, val_auc=float(history[-1]["val_auc"]), sha256=sha256_of(path), image_size=image_size,
        weights_file=path.name, categories=categories, n_train=n_train, n_val=n_val,
        created_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"), keras_version=keras.__version__,
    )
    if log_run is not None:
        card = log_run(card, config, history, weights_dir)
    write_card(weights_dir, card)
    return card


def _train(config: dict, data, progress, *, name: str):
    """(trained model, per-epoch reports) of `trainables.train.fit_fold` on `data`, one line per epoch."""
    from trainables.train import fit_fold

    history: list[dict] = []

    def record(metrics, _checkpoint):
        history.append(metrics)
        progress(f"pretrain {name} epoch {int(metrics['epoch'])}/{config['epochs']}: "
                 f"train_loss {metrics['train_loss']:.4f} val_auc {metrics['val_auc']:.3f} "
                 f"({metrics['epoch_time_s']:.1f} s)")

    scratch = Path(tempfile.mkdtemp(prefix="cxrtune-pretrain-"))
    try:
        model = fit_fold(config, data, report=record, checkpoint_root=scratch, cpus=os.cpu_count())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return model, history


@dataclass(frozen=True)
class LoadedRows:
    """A dataset handle over rows already loaded (least class dropped, folds assigned): what fit_fold reads."""
    parts: tuple  # (images_or_paths, labels, manifest, categories), as a handle's load() gives them

    def load(self):
        return self.parts

    @property
    def categories(self) -> list[str]:
        return list(self.parts[3])

    def fold_sizes(self, fold: int) -> tuple[int, int]:
        """(training, validation) images when `fold` validates: the `cv` rows of the other folds, of `fold`."""
        manifest = self.parts[2]
        in_cv = (manifest["split"] == "cv").to_numpy()
        n_val = int((in_cv & (manifest["fold"] == fold).to_numpy()).sum())
        return int(in_cv.sum()) - n_val, n_val


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


def _with_folds(loaded, *, seed: int):
    """`loaded` with the prepared folds when assigned; else 5 patient-grouped folds over the `cv` rows (or all
    rows), the rest marked `test` (never used)."""
    from data.folds import assign_folds

    images_or_paths, labels, manifest, categories = loaded
    has_folds = "fold" in manifest and "split" in manifest and (manifest["fold"] >= 0).any()
    if not has_folds:
        cv = manifest[manifest["split"] == "cv"] if "split" in manifest else manifest
        with warnings.catch_warnings(record=True) as caught:  # rare categories: said in one line, not a traceback
            warnings.simplefilter("always")
            folded = assign_folds(cv.drop(columns=["split", "fold"], errors="ignore"), n_folds=5,
                                  test_fraction=0.0, seed=seed, label_cols=list(categories))
        for warning in caught:
            print(f"pretrain: {warning.message}", file=sys.stderr, flush=True)
        manifest = manifest.copy()
        manifest["split"], manifest["fold"] = "test", -1
        manifest.loc[folded.index, "split"] = "cv"
        manifest.loc[folded.index, "fold"] = folded["fold"].to_numpy()
    return images_or_paths, np.asarray(labels), manifest.reset_index(drop=True), categories


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
