"""`cxrtune pretrain` and `cxrtune weights`: make ChestX-ray14 source weights, list what can be loaded.

TensorFlow is imported only inside the command functions (via trainables.pretrain); the pretraining
run's MLflow logging is search/pretrain_tracking.py's.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from spaces.vocabulary import DEFAULTS, FREEZE_STAGES, SOURCES_MADE_BY_PRETRAIN


def register(subparsers) -> None:
    """Add `pretrain` and `weights` to the `cxrtune` parser."""
    from trainables.backbones import list_backbones

    pretrain = subparsers.add_parser(
        "pretrain", help="pretrain a backbone on a prepared NIH ChestX-ray14 dataset (source weights)",
        description="Train a backbone on a prepared NIH dataset (14 findings) and save its backbone weights "
                    "with a card in the weights directory, as one of the study's ChestX-ray14 sources.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # every flag's help shows its default
    pretrain.add_argument("--data", required=True, type=Path, metavar="PREPARED",
                          help="prepared NIH dataset (cxrtune prepare --format nih)")
    pretrain.add_argument("--backbone", required=True, choices=list_backbones(), help="the network to pretrain")
    pretrain.add_argument("--source", required=True, choices=SOURCES_MADE_BY_PRETRAIN,
                          help="chestxray8: random init; imagenet-F+: ImageNet, early stages frozen; "
                               "imagenet-I+: ImageNet as initial values (both need ImageNet in the Keras cache: "
                               "`cxrtune weights --fetch-imagenet BACKBONE`)")
    pretrain.add_argument("--weights-dir", required=True, type=Path, metavar="DIR",
                          help="where the weights file and its card are written")
    pretrain.add_argument("--image-size", type=int, default=None, metavar="PX",
                          help="input size in px (None: the prepared dataset's size)")
    pretrain.add_argument("--epochs", type=int, default=DEFAULTS["epochs"], metavar="N",
                          help="training epochs (the study's)")
    pretrain.add_argument("--batch-size", type=int, default=None, metavar="N",
                          help="images per training step (None: the study's, 16 when everything trains, "
                               "128 for imagenet-F+chestxray8)")
    pretrain.add_argument("--learning-rate", type=float, default=DEFAULTS["learning_rate"], metavar="LR",
                          help="Adam's learning rate (the study's)")
    pretrain.add_argument("--drop-least-class", action="store_true",
                          help="the study's least-class drop: leave out the finding with the fewest images "
                               "(ChestX-ray14 14 -> 13 outputs: Hernia), unless prepare dropped it already")
    pretrain.add_argument("--freeze", default="conv4", choices=FREEZE_STAGES,
                          help="stage frozen through, for imagenet-F+chestxray8 only")
    pretrain.add_argument("--val-fold", type=int, default=0, metavar="K",
                          help="fold of the cv rows used for validation (the others train)")
    pretrain.add_argument("--seed", type=int, default=0, metavar="N", help="seed of weights, shuffling and folds")
    pretrain.add_argument("--data-mode", default="auto", choices=("auto", "memory", "path"),
                          help="images in memory, read from their files, or chosen by size (auto)")
    pretrain.add_argument("--tracking-uri", default=None, metavar="URI",
                          help="MLflow tracking URI to log the run to, e.g. sqlite:////abs/mlflow.db (None: no run)")
    pretrain.set_defaults(func=run_pretrain)

    weights = subparsers.add_parser(
        "weights", help="list source weights that can be loaded now (Keras cache + a weights directory)")
    weights.add_argument("--weights-dir", type=Path, default=None)
    weights.add_argument("--fetch-imagenet", choices=list_backbones(), default=None,
                         help="download a backbone's ImageNet weights into the Keras cache first (needs internet)")
    weights.set_defaults(func=run_weights)


def check_pretrain_inputs(args) -> None:
    """Bad input in one line before TensorFlow is imported (which takes seconds and prints its own lines)."""
    from data.manifest import load_prepared
    from search.errors import SearchError
    from search.tracking import absolute_tracking_uri
    from trainables.weights import get_source, imagenet_cached, imagenet_path

    if get_source(args.source).initial_values == "imagenet" and not imagenet_cached(args.backbone):
        raise SearchError(
            f"--source {args.source} starts from ImageNet weights, which are not in the Keras cache "
            f"({imagenet_path(args.backbone)}): run `cxrtune weights --fetch-imagenet {args.backbone}` on a "
            "machine with internet (or copy the file there), or use --source chestxray8, which needs none")
    if not args.data.is_dir():
        raise SearchError(f"--data {args.data}: no such folder; give a prepared NIH dataset (cxrtune prepare)")
    load_prepared(args.data)  # DataError naming what is missing (manifest.csv, summary.json, ...)
    if args.weights_dir.exists() and not args.weights_dir.is_dir():
        raise SearchError(f"--weights-dir {args.weights_dir} is a file; give a folder")
    absolute_tracking_uri(args.tracking_uri)  # SearchError on a bare path


def run_pretrain(args) -> int:
    check_pretrain_inputs(args)
    from search.pretrain_tracking import pretraining_logger
    from trainables.pretrain import pretrain

    card = pretrain(args.data.resolve(), backbone=args.backbone, source=args.source,
                    weights_dir=args.weights_dir.resolve(), image_size=args.image_size, epochs=args.epochs,
                    batch_size=args.batch_size, learning_rate=args.learning_rate, freeze=args.freeze,
                    val_fold=args.val_fold, seed=args.seed, data_mode=args.data_mode,
                    drop_least_class=args.drop_least_class,
                    log_run=pretraining_logger(args.tracking_uri))  # MLflow from the search room
    print(f"{card.name}: validation AUC {card.val_auc:.3f} after {card.epochs} epochs "
          f"({card.n_train} training, {card.n_val} validation images)")
    print(f"weights: {args.weights_dir.resolve() / card.weights_file}  sha256 {card.sha256[:12]}")
    if card.mlflow_run_id:
        print(f"MLflow run: {card.mlflow_run_id}")
    return 0


def run_weights(args) -> int:
    if args.weights_dir is not None and not args.weights_dir.is_dir():
        from trainables.errors import WeightsError

        raise WeightsError(f"--weights-dir {args.weights_dir}: no such folder; give the folder `cxrtune pretrain` "
                           "wrote weights to")
    from trainables.weights import available_weights, fetch_imagenet

    if args.fetch_imagenet:
        print(f"ImageNet weights for {args.fetch_imagenet}: {fetch_imagenet(args.fetch_imagenet)}")
    names = available_weights(args.weights_dir.resolve() if args.weights_dir else None)
    print("\n".join(names) if names else "no source weights available (random initial values only: method D)")
    return 0
