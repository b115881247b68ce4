"""Frozen-trunk feature cache: the same method A and B (conv4) configs trained on images and from cached
features, and the fixed cost a Tune trial pays with and without actor reuse.

Synthetic radiograph-like images (noise with a bright disc and/or a dark band at random places: two
learnable findings), augmentation off, the same seeds for both modes. Per method, every fold is trained
once on images (`feature_cache: off`) and once from the cache (a fresh cache folder: the one-off feature
pass is counted, once, in the cached total). Validation AUC is the mean over folds of the last epoch's.

Fixed cost per trial: `--overhead-trials` one-epoch Tune trials (method A, cached, 64 px) run one at a
time with `reuse_actors` off (before) and on (after, what `search` now does); the cost is the wall time of
the whole run minus the trials' own epoch time, per trial: worker start, TensorFlow import, model build,
graph tracing, data and cache loading, validation scoring, Tune's bookkeeping.

Source weights: Keras's ImageNet file when it is in the Keras cache, else a seeded random stand-in (no
download); the speedups do not depend on the values. Both wall and CPU seconds are reported (the machine
may be shared: CPU seconds stay comparable, wall seconds do not).

  python benchmarks/frozen_cache.py [--backbone resnet50] [--image-size 128] [--images 400] [--epochs 10]
      [--folds 2] [--batch-size 32] [--overhead-trials 3] [--seed 0]

The last line printed is JSON: speedup_A, speedup_B_conv4 (uncached / cached wall seconds), the same on CPU
seconds, auc_diff_A, auc_diff_B_conv4 (cached minus uncached), overhead_s_before, overhead_s_after, ...
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def synthetic_handle(n_images: int, size: int, n_folds: int, seed: int):
    from data.handle import InMemoryHandle

    rng = np.random.default_rng(seed)
    labels = (rng.random((n_images, 2)) < 0.5).astype(np.uint8)
    images = rng.normal(90, 20, (n_images, size, size))
    rows, cols = np.mgrid[:size, :size]
    radius, band = max(3, size // 10), max(2, size // 12)
    for index in range(n_images):
        if labels[index, 0]:
            centre = rng.integers(radius, size - radius, 2)
            images[index][(rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 < radius ** 2] += 120
        if labels[index, 1]:
            top = rng.integers(0, size - band)
            images[index, top:top + band, :] -= 90
    manifest = pd.DataFrame({
        "image_id": [f"synthetic-{seed}-{index}" for index in range(n_images)],
        "patient_key": [f"{index:016x}" for index in range(n_images)],
        "split": "cv", "fold": np.arange(n_images) % n_folds, "disc": labels[:, 0], "band": labels[:, 1],
    })
    return InMemoryHandle(images.clip(0, 255).astype(np.uint8), manifest, ["disc", "band"], "synthetic")


def source_settings(backbone: str, size: int, workdir: Path, seed: int) -> dict:
    """{"source_weights", "weights_dir"}: ImageNet when cached, else a carded random stand-in."""
    from trainables.weights import imagenet_cached

    if imagenet_cached(backbone):
        return {"source_weights": "imagenet"}
    import keras

    from trainables.backbones import get_backbone
    from trainables.weights import WeightCard, sha256_of, write_card

    weights_dir = workdir / "weights"
    weights_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(seed)
    path = weights_dir / f"{backbone}.chestxray8.weights.h5"
    get_backbone(backbone).build((size, size, 3)).save_weights(path)
    write_card(weights_dir, WeightCard(
        backbone=backbone, source="chestxray8", source_dataset="random stand-in", initial_values="random",
        frozen_depth="none", epochs=0, val_auc=0.5, sha256=sha256_of(path), image_size=size,
        weights_file=path.name))
    return {"source_weights": "chestxray8", "weights_dir": str(weights_dir)}


def run_folds(config: dict, handle, n_folds: int, workdir: Path) -> dict:
    """Train every fold of `config`; wall/CPU seconds in total, mean last val_auc, the pass's seconds."""
    from trainables.train import fit_fold

    wall, cpu, aucs, pass_s, epoch_s = time.perf_counter(), time.process_time(), [], 0.0, 0.0
    for fold in range(n_folds):
        reports = []
        fit_fold({**config, "fold": fold}, handle, report=lambda metrics, folder: reports.append(metrics),
                 checkpoint_root=workdir / f"{config['config_id']}-{fold}")
        aucs.append(reports[-1]["val_auc"])
        pass_s += reports[-1].get("feature_pass_s", 0.0) * reports[-1].get("feature_pass_here", 0.0)
        epoch_s += sum(metrics["epoch_time_s"] for metrics in reports)
    return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
            "val_auc": float(np.mean(aucs)), "feature_pass_s": pass_s, "epoch_s": epoch_s}


def trial_overhead(handle, base: dict, n_trials: int, workdir: Path, *, reuse_actors: bool) -> float:
    """Seconds per trial outside its epochs, for `n_trials` one-epoch trials run one at a time."""
    from ray import tune

    from trainables.train import train_fold

    configs = [{**base, "config_id": f"o{index}", "fold": index % 2, "epochs": 1, "image_size": 64,
                "learning_rate": 1e-3 * (index + 1)} for index in range(n_trials)]
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(train_fold, data=handle), {"cpu": 2}),
        param_space={"trial_config": tune.grid_search(configs)},
        tune_config=tune.TuneConfig(num_samples=1, max_concurrent_trials=1, reuse_actors=reuse_actors),
        run_config=tune.RunConfig(name=f"overhead-{reuse_actors}", storage_path=str(workdir / "tune"), verbose=0))
    started = time.perf_counter()
    results = tuner.fit()
    wall = time.perf_counter() - started
    frame = results.get_dataframe()
    if results.errors or len(frame) != n_trials:
        raise RuntimeError(f"overhead trials failed: {results.errors}")
    return (wall - float(frame["epoch_time_s"].sum())) / n_trials


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="resnet50", choices=("resnet50", "densenet121"))
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--overhead-trials", type=int, default=3, help="0 skips the fixed-cost part")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="cxrtune-frozen-cache-"))
    handle = synthetic_handle(args.images, args.image_size, args.folds, args.seed)
    source = source_settings(args.backbone, args.image_size, workdir, args.seed)
    base = {"backbone": args.backbone, "image_size": args.image_size, "epochs": args.epochs,
            "batch_size": args.batch_size, "learning_rate": 1e-3, "dropout": 0.2, "seed": args.seed,
            "checkpoint_every": args.epochs, "augment_views": 0, "feature_cache_dir": str(workdir / "cache"),
            **source}
    figures = {"backbone": args.backbone, "image_size": args.image_size, "images": args.images,
               "epochs": args.epochs, "folds": args.folds, "source_weights": source["source_weights"]}
    print(f"{'method':<10} {'mode':<9} {'wall_s':>8} {'cpu_s':>8} {'pass_s':>7} {'epochs_s':>8} {'val_auc':>8}")
    for name, method in (("A", {"method": "A", "freeze": "all"}), ("B_conv4", {"method": "B", "freeze": "conv4"})):
        runs = {}
        for mode in ("uncached", "cached"):
            config = {**base, **method, "config_id": f"{name}-{mode}",
                      "feature_cache": "off" if mode == "uncached" else "auto"}
            runs[mode] = run_folds(config, handle, args.folds, workdir)
            row = runs[mode]
            print(f"{name:<10} {mode:<9} {row['wall_s']:8.1f} {row['cpu_s']:8.1f} {row['feature_pass_s']:7.1f} "
                  f"{row['epoch_s']:8.1f} {row['val_auc']:8.4f}", flush=True)
        figures[f"speedup_{name}"] = runs["uncached"]["wall_s"] / runs["cached"]["wall_s"]
        figures[f"speedup_cpu_{name}"] = runs["uncached"]["cpu_s"] / runs["cached"]["cpu_s"]
        figures[f"auc_diff_{name}"] = runs["cached"]["val_auc"] - runs["uncached"]["val_auc"]
        figures[f"val_auc_{name}_uncached"] = runs["uncached"]["val_auc"]
        figures[f"feature_pass_s_{name}"] = runs["cached"]["feature_pass_s"]
    if args.overhead_trials:
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        overhead_base = {**base, "method": "A", "freeze": "all",
                         "feature_cache_dir": str(workdir / "overhead-cache")}
        figures["overhead_s_before"] = trial_overhead(handle, overhead_base, args.overhead_trials, workdir,
                                                      reuse_actors=False)
        figures["overhead_s_after"] = trial_overhead(handle, overhead_base, args.overhead_trials, workdir,
                                                     reuse_actors=True)
        ray.shutdown()
        print(f"fixed cost per trial: {figures['overhead_s_before']:.1f} s without actor reuse, "
              f"{figures['overhead_s_after']:.1f} s with it", flush=True)
    figures["load_average_1min"] = os.getloadavg()[0]
    figures["total_wall_s"] = time.perf_counter() - started
    print(json.dumps({key: round(value, 4) if isinstance(value, float) else value
                      for key, value in figures.items()}))
    return figures


if __name__ == "__main__":
    main()
