"""How long the results layer takes at the study's scale (CPU only; no TensorFlow, no Ray).

    python benchmarks/results_speed.py [--quick]

- fold_table on the `paper` grid's trials: 42 configs x 5 folds, 9 per-class AUCs each;
- pareto_front (3 objectives) on 42, 1,000 and 5,000 configs;
- the study-layout report (Markdown + CSV) of the paper grid;
- the test-set bootstrap (1,000 resamples) on a hospital-sized test part (200 images, 8 categories)
  and an NIH-sized one (25,596 images, 14 findings).
"""
from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search.aggregate import fold_table  # noqa: E402
from search.evaluation.auc import score_test_set  # noqa: E402
from search.pareto import pareto_front  # noqa: E402

CATEGORIES = ["aortic_calcification", "arterial_curvature", "abnormal_lung_field", "increased_lung_pattern",
              "spinal_lesion", "intercostal_pleural_thickening", "cardiac_hypertrophy", "heart_pacemaker", "x"]


def paper_trials(rng: np.random.Generator, n_folds: int = 5) -> pd.DataFrame:
    """Trials shaped like the `paper` preset's: 2 backbones x (A, B x 3, C) x 4 sources + D, per fold."""
    cells = [("A", "all"), ("B", "conv2"), ("B", "conv3"), ("B", "conv4"), ("C", "none")]
    sources = ["imagenet", "chestxray8", "imagenet-F+chestxray8", "imagenet-I+chestxray8"]
    configs = [(b, m, f, s) for b in ("resnet50", "densenet121") for (m, f), s in itertools.product(cells, sources)]
    configs += [("resnet50", "D", "none", "none"), ("densenet121", "D", "none", "none")]
    rows = []
    for number, (backbone, method, freeze, source) in enumerate(configs):
        for fold in range(n_folds):
            row = {"config_id": f"{number:010x}", "backbone": backbone, "method": method, "freeze": freeze,
                   "source_weights": source, "image_size": 512, "epochs": 30, "fold": fold, "status": "TERMINATED",
                   "epochs_done": 30, "val_auc": rng.uniform(0.6, 0.9), "val_binary_accuracy": rng.uniform(0.8, 0.95),
                   "val_loss": rng.uniform(0.1, 0.5), "train_loss": rng.uniform(0.1, 0.5),
                   "trainable_params": float(rng.integers(1e4, 2.5e7)), "steady_epoch_time_s": rng.uniform(5, 60),
                   "gpus": 1.0, "cpus": 8.0}
            row.update({f"val_auc_{c}": rng.uniform(0.5, 1) for c in CATEGORIES})
            rows.append(row)
    return pd.DataFrame(rows)


def timed(label: str, function, repeats: int) -> object:
    started = time.perf_counter()
    for _ in range(repeats):
        result = function()
    print(f"{label:<58} {(time.perf_counter() - started) / repeats * 1000:10.1f} ms")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, one repeat (for CI smoke runs)")
    args = parser.parse_args()
    import scipy.stats  # noqa: F401  (imported once here, not timed inside the first bootstrap)

    rng = np.random.default_rng(0)
    repeats = 1 if args.quick else 3

    trials = paper_trials(rng)
    table = timed("fold_table: paper grid, 42 configs x 5 folds", lambda: fold_table(trials), repeats)
    objectives = {"cv_val_auc_mean": "max", "trainable_params": "min", "steady_epoch_time_s": "min"}
    for n_configs in ((42, 1000) if args.quick else (42, 1000, 5000)):
        random_table = pd.DataFrame({name: rng.uniform(size=n_configs) for name in objectives})
        timed(f"pareto_front: {n_configs:,} configs, 3 objectives", lambda: pareto_front(random_table, objectives),
              repeats)

    from search.report import write_report
    from search.results import SearchResults

    results = SearchResults(Path("paper"), {}, trials, table)
    with tempfile.TemporaryDirectory() as folder:
        timed("report: paper grid, 4 study tables + per-class AUC", lambda: write_report(results, folder), repeats)

    for label, n_images, n_categories in (("hospital-sized test part", 200, 8), ("NIH-sized test part", 25_596, 14)):
        if args.quick and n_images > 1000:
            continue
        y_true = (rng.uniform(size=(n_images, n_categories)) < 0.1).astype(float)
        y_score = np.clip(y_true * 0.3 + rng.uniform(0, 0.7, size=y_true.shape), 0, 1)
        names = [f"c{k}" for k in range(n_categories)]
        timed(f"bootstrap 1,000: {label} ({n_images:,} x {n_categories})",
              lambda: score_test_set(y_true, y_score, names, n_resamples=1000), 1)


if __name__ == "__main__":
    main()
