"""The end-to-end demo: synthetic data -> prepare -> pretrain a ChestX-ray14-style source -> search -> front.

Every step is the same code a real run uses, only with small settings (images, epochs, folds) so that it
finishes in a few minutes on 2 CPU cores.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DemoSettings:
    """Small enough for 2 CPU cores in a few minutes; the real defaults live in the presets."""

    hospital_images: int = 240
    nih_images: int = 240
    render_size: int = 128  # px of the synthetic files; prepare shrinks them to image_size
    image_size: int = 48  # px seen by the networks
    n_folds: int = 2
    pretrain_epochs: int = 3
    search_epochs: int = 3
    backbone: str = "resnet50"
    seed: int = 0
    max_concurrent: int = 2


# Everything a demo run writes into its output folder; a re-run starts from a clean slate.
DEMO_OUTPUTS = ("synthetic", "prepared", "weights", "demo", "mlflow.db", "mlartifacts",
                "fold_table.csv", "pareto.csv", "pareto.png")


def clear_previous_demo(out_dir: Path) -> None:
    """Remove an earlier demo's outputs, and only those: a folder the demo did not make is refused."""
    if out_dir.exists() and not out_dir.is_dir():
        from search.errors import SearchError

        raise SearchError(f"--out {out_dir} is a file; give a new or empty folder")
    if not out_dir.exists() or not any(out_dir.iterdir()):
        return
    if not (out_dir / "demo" / "search.json").is_file():
        from search.errors import SearchError

        raise SearchError(f"--out {out_dir}: the folder exists and holds no earlier demo; "
                          "choose a new or empty folder")
    print(f"removing the previous demo's outputs in {out_dir}", flush=True)
    for name in DEMO_OUTPUTS:
        path = out_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _step(message: str) -> float:
    print(f"\n== {message}", flush=True)
    return time.monotonic()


def _done(started: float) -> None:
    print(f"   ({time.monotonic() - started:.0f} s)", flush=True)


def run_demo(out_dir: Path, settings: DemoSettings = DemoSettings()) -> Path:
    """Run every layer on synthetic data; returns the search folder. Outputs land under `out_dir`.

    Over 60 lines on purpose: it is the demo's script, its five steps in the order the terminal shows them."""
    from search.quiet import quiet_driver

    quiet_driver()  # before the pretraining step imports TensorFlow
    from data.prepare import prepare_hospital, prepare_nih
    from data.synthetic import write_hospital, write_nih
    from search.pretrain_tracking import pretraining_logger
    from search.settings import SearchSettings
    from search.tracking import absolute_tracking_uri
    from search.tuner import run_search
    from trainables.pretrain import pretrain
    from trainables.weights import imagenet_cached

    out_dir = Path(out_dir).resolve()
    clear_previous_demo(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    synthetic, prepared, weights_dir = out_dir / "synthetic", out_dir / "prepared", out_dir / "weights"

    started = _step("1/5 synthesizing chest radiographs (hospital DICOM + NIH-style PNG)")
    write_hospital(synthetic / "hospital", n_images=settings.hospital_images, seed=settings.seed,
                   image_size=settings.render_size, prevalence="balanced", overwrite=True)
    write_nih(synthetic / "nih", n_images=settings.nih_images, seed=settings.seed + 1,
              image_size=settings.render_size, overwrite=True)
    _done(started)

    started = _step(f"2/5 preparing both datasets at {settings.image_size} px")
    hospital = prepare_hospital(synthetic / "hospital", synthetic / "hospital" / "labels.csv",
                                prepared / "hospital", image_size=settings.image_size, salt="cxrtune-demo")
    print(f"   hospital: {hospital['counts']}")
    nih = prepare_nih(synthetic / "nih", synthetic / "nih" / "Data_Entry_2017.csv", prepared / "nih",
                      image_size=settings.image_size, salt="cxrtune-demo")
    print(f"   nih: {nih['counts']}")
    _done(started)

    started = _step("3/5 pretraining a ChestX-ray14-style source (chestxray8: random init) on the NIH-style set")
    card = pretrain(prepared / "nih", backbone=settings.backbone, source="chestxray8", weights_dir=weights_dir,
                    image_size=settings.image_size, epochs=settings.pretrain_epochs, batch_size=32,
                    seed=settings.seed, log_run=pretraining_logger(absolute_tracking_uri(None, out_dir)))
    print(f"   {card.name}: validation AUC {card.val_auc:.3f} -> {weights_dir}")
    _done(started)

    sources = ["chestxray8"]
    if imagenet_cached(settings.backbone):
        sources.append("imagenet")
    else:
        print(f"   ImageNet weights for {settings.backbone} are not in the Keras cache and cannot be downloaded "
              "here: the demo leaves the imagenet source out.")

    started = _step(f"4/5 searching methods A-D x {', '.join(sources)} with {settings.n_folds} folds on local Ray")
    search_settings = SearchSettings(
        name="demo", n_folds=settings.n_folds, max_concurrent=settings.max_concurrent, available_sources=sources,
        weights_dir=str(weights_dir), overrides={"epochs": settings.search_epochs, "image_size": settings.image_size},
        keep_checkpoints="none",  # nothing reads the demo's fold models again; keeps the folder small
    )
    search_dir = run_search(search_settings, data=prepared / "hospital", space="demo", out_dir=out_dir)
    _done(started)

    _step("5/5 results")
    for name in ("fold_table.csv", "pareto.csv", "pareto.png"):
        shutil.copy2(search_dir / name, out_dir / name)
    print_results(search_dir)
    from search.summary import browse_hint, folder_bytes

    print(f"\nOutputs: {out_dir}  ({folder_bytes(out_dir) / 2**20:.0f} MB: fold_table.csv, pareto.csv, pareto.png, "
          "mlflow.db)")
    print(f"Tables as in the study:  cxrtune report demo --out {out_dir}")
    store = absolute_tracking_uri(None, out_dir)
    print(f"Browse the runs:  {browse_hint(store, search_dir)}")
    return search_dir


def print_results(search_dir: Path) -> None:
    """The fold table (mean +/- std over folds) and the Pareto front, as plain text."""
    import pandas as pd

    table = pd.read_csv(search_dir / "fold_table.csv", dtype={"config_id": str})
    front = pd.read_csv(search_dir / "pareto.csv", dtype={"config_id": str})
    shown = table.assign(
        val_auc=[f"{m:.3f} +/- {s:.3f}" for m, s in zip(table["cv_val_auc_mean"], table["cv_val_auc_std"])],
        binary_accuracy=[f"{m:.3f} +/- {s:.3f}" for m, s in
                         zip(table["cv_val_binary_accuracy_mean"], table["cv_val_binary_accuracy_std"])],
    ).sort_values("cv_val_auc_mean", ascending=False)
    columns = ["config_id", "method", "source_weights", "freeze", "n_folds_done", "epochs_trained_max", "full_budget",
               "val_auc", "binary_accuracy", "trainable_params", "steady_epoch_time_s"]  # NaN s: one epoch only
    print("Fold table (mean +/- std over folds):")
    print(shown[columns].to_string(index=False))
    on_front = front[front["on_front"].astype(bool)].sort_values("trainable_params")
    print("\nPareto front (max cv_val_auc_mean, min trainable_params):")
    print(on_front[["config_id", "method", "source_weights", "freeze", "cv_val_auc_mean",
                    "trainable_params"]].to_string(index=False))
