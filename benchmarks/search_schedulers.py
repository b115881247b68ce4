"""FIFO vs ASHA vs fold-ASHA vs MO-fold-ASHA on simulated cost-accuracy searches: which front each one finds.

No training, no TensorFlow: each (config, fold) trial follows a known curve, and the same scheduler objects
as a real search (Ray's AsyncHyperBandScheduler, cxrtune's fold-aware ones) decide, fed through their
on_trial_result hooks; `concurrency` trials run at once and report in random order, as on a cluster.

Configs are drawn like the `paper` grid's costs: trainable parameters log-uniform from 13k (method A, the
head) to 23M (C/D, the whole ResNet50), seconds per epoch rising with them (3 s to 15 s). Curves:
val_auc(epoch) = q - (q - 0.5) * exp(-epoch / tau), where a config's plateau q rises with its cost
(0.70 + 0.12 * c + N(0, 0.015), c = its log-cost scaled to 0..1) and so does its time constant tau
(1 + 7 * c epochs): cheap configs rise fast and plateau lower, costly ones rise slowly and end higher. Each
fold adds a fixed offset (N(0, 0.03)) and each epoch noise (N(0, 0.005)), as before.

Per scheduler, averaged over seeds:
- hypervolume_ratio: hypervolume (AUC above 0.5 x decades of parameters below 1.1 x the largest) of the
  front the scheduler found, among its full-budget configs (every fold trained every epoch; front from the
  AUCs it measured, volume from the configs' true values), over that of the true front (every config
  trained fully, noise-free fold means);
- front_recall: share of the true front's configs that are on the scheduler's found front;
- gpu_seconds_fraction: GPU-seconds spent (epochs x seconds per epoch, summed over trials) over FIFO's;
- split: configs that ended with some folds trained to the end and others cut early.
Then the GPU-seconds an oracle would need for full recall (true front trained fully, the rest to the first rung).
The last line printed is a JSON object: scheduler -> {hypervolume_ratio, front_recall, gpu_seconds_fraction}.

  python benchmarks/search_schedulers.py [--configs 30] [--folds 5] [--epochs 30] [--seeds 20]
"""
from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import dataclass

import numpy as np

SCHEDULERS = ("fifo", "asha", "fold-asha", "mo-fold-asha")
OBJECTIVES = {"cv_val_auc_mean": "max", "trainable_params": "min"}
PARAMS_RANGE = (1.3e4, 2.3e7)


@dataclass
class FakeTrial:
    """What a scheduler reads from a Tune Trial: an id, a status, the config (nested like the driver's)."""
    trial_id: str
    config: dict
    status: str = "RUNNING"
    epoch: int = 0
    last_auc: float = math.nan


@dataclass
class Study:
    """One seed's configs: costs, curves, fold offsets."""
    params: np.ndarray
    seconds: np.ndarray
    plateau: np.ndarray
    tau: np.ndarray
    offsets: np.ndarray  # configs x folds

    def auc(self, config: int, fold: int, epoch: int) -> float:
        q = self.plateau[config]
        return q - (q - 0.5) * math.exp(-epoch / self.tau[config]) + self.offsets[config, fold]

    def points(self, aucs) -> np.ndarray:
        """(AUC, -log10 params): higher is better in both."""
        return np.column_stack([aucs, -np.log10(self.params[: len(aucs)])])


def draw_study(n_configs: int, n_folds: int, seed: int) -> Study:
    rng = np.random.default_rng(seed)
    low, high = np.log10(PARAMS_RANGE)
    log_params = rng.uniform(low, high, n_configs)
    cost = (log_params - low) / (high - low)
    params = 10 ** log_params
    return Study(params=params, seconds=3.0 + 12.0 * params / PARAMS_RANGE[1],
                 plateau=0.70 + 0.12 * cost + rng.normal(0, 0.015, n_configs), tau=1.0 + 7.0 * cost,
                 offsets=rng.normal(0, 0.03, (n_configs, n_folds)))


def front_of(points: np.ndarray) -> np.ndarray:
    from search.multiobjective import nondominated_ranks

    return nondominated_ranks(points) == 0 if len(points) else np.zeros(0, bool)


def run_scheduler(name: str, study: Study, *, epochs: int, concurrency: int, seed: int,
                  reduction_factor: float, grace_period: int) -> list[FakeTrial]:
    from search.schedulers import make_scheduler

    rng = random.Random(seed)
    n_configs, n_folds = study.offsets.shape
    scheduler = make_scheduler(name, max_t=epochs, reduction_factor=reduction_factor, grace_period=grace_period,
                               objectives=OBJECTIVES)
    trials = [FakeTrial(f"{c}_{f}", {"trial_config": {"config_id": f"c{c:03d}", "fold": f, "epochs": epochs}})
              for c in range(n_configs) for f in range(n_folds)]
    if name == "asha":
        for trial in trials:
            scheduler.on_trial_add(None, trial)
    waiting, running = list(trials), []
    while waiting or running:
        while waiting and len(running) < concurrency:
            running.append(waiting.pop(0))
        trial = rng.choice(running)
        c, f = (int(x) for x in trial.trial_id.split("_"))
        trial.epoch += 1
        trial.last_auc = study.auc(c, f, trial.epoch) + rng.gauss(0, 0.005)
        result = {"training_iteration": trial.epoch, "val_auc": trial.last_auc,
                  "trainable_params": float(study.params[c]), "epoch_time_s": float(study.seconds[c]),
                  "traced": float(trial.epoch == 1)}
        decision = scheduler.on_trial_result(None, trial, result)
        if decision == "STOP" or trial.epoch >= epochs:
            running.remove(trial)
            if hasattr(scheduler, "decisions"):
                scheduler.on_trial_complete(None, trial, {"training_iteration": trial.epoch})
    return trials


def score(trials: list[FakeTrial], study: Study, epochs: int) -> dict:
    """Hypervolume ratio, front recall, GPU-seconds and split configs of one finished simulated search."""
    from search.multiobjective import hypervolume_2d

    n_configs, n_folds = study.offsets.shape
    reached = np.zeros((n_configs, n_folds), int)
    measured = np.full((n_configs, n_folds), np.nan)
    for trial in trials:
        c, f = (int(x) for x in trial.trial_id.split("_"))
        reached[c, f], measured[c, f] = trial.epoch, trial.last_auc
    true_auc = np.array([np.mean([study.auc(c, f, epochs) for f in range(n_folds)]) for c in range(n_configs)])
    true_points = study.points(true_auc)
    reference = (0.5, -math.log10(1.1 * PARAMS_RANGE[1]))
    true_front = front_of(true_points)
    full = (reached >= epochs).all(axis=1)
    found = np.zeros(n_configs, bool)
    found[full] = front_of(study.points(measured.mean(axis=1))[full])
    return {"hypervolume_ratio": hypervolume_2d(true_points[found], reference)
            / hypervolume_2d(true_points[true_front], reference),
            "front_recall": float((found & true_front).sum() / true_front.sum()),
            "gpu_seconds": float((reached.sum(axis=1) * study.seconds).sum()),
            "split": int(((reached >= epochs).any(axis=1) & ~full).sum())}


def oracle_fraction(study: Study, epochs: int, grace_period: int) -> float:
    """GPU-seconds of a scheduler that knew the true front: its configs trained fully, the others to the first
    rung only; over FIFO's. A floor for any rule that recalls the whole front."""
    n_folds = study.offsets.shape[1]
    true_auc = np.array([np.mean([study.auc(c, f, epochs) for f in range(n_folds)])
                         for c in range(len(study.params))])
    front = front_of(study.points(true_auc))
    return float((np.where(front, epochs, min(grace_period, epochs)) * study.seconds).sum()
                 / (epochs * study.seconds).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=30)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--grace-period", type=int, default=1, help="epochs before the first rung")
    parser.add_argument("--reduction-factor", type=float, default=3)
    args = parser.parse_args()
    print(f"{args.configs} configs x {args.folds} folds, {args.epochs} epochs, {args.concurrency} trials at once, "
          f"{args.seeds} seeds (reduction factor {args.reduction_factor:g}, grace period {args.grace_period})")
    print(f"{'scheduler':13s} {'HV ratio':>9s} {'front recall':>13s} {'GPU-s vs FIFO':>14s} {'split configs':>14s} "
          f"{'seconds':>8s}")
    summary, fifo_seconds = {}, None
    for name in SCHEDULERS:
        started = time.perf_counter()
        runs = []
        for seed in range(args.seeds):
            study = draw_study(args.configs, args.folds, seed)
            trials = run_scheduler(name, study, epochs=args.epochs, concurrency=args.concurrency, seed=seed,
                                   reduction_factor=args.reduction_factor, grace_period=args.grace_period)
            runs.append(score(trials, study, args.epochs))
        gpu_seconds = np.array([r["gpu_seconds"] for r in runs])
        fifo_seconds = gpu_seconds if fifo_seconds is None else fifo_seconds
        summary[name] = {"hypervolume_ratio": round(float(np.mean([r["hypervolume_ratio"] for r in runs])), 4),
                         "front_recall": round(float(np.mean([r["front_recall"] for r in runs])), 4),
                         "gpu_seconds_fraction": round(float(np.mean(gpu_seconds / fifo_seconds)), 4)}
        row = summary[name]
        print(f"{name:13s} {row['hypervolume_ratio']:9.3f} {row['front_recall']:13.1%} "
              f"{row['gpu_seconds_fraction']:14.1%} {np.mean([r['split'] for r in runs]):14.1f} "
              f"{time.perf_counter() - started:8.1f}", flush=True)
    oracle = np.mean([oracle_fraction(draw_study(args.configs, args.folds, seed), args.epochs, args.grace_period)
                      for seed in range(args.seeds)])
    print(f"oracle (true front trained fully, others {args.grace_period} epoch(s)): {oracle:.1%} of FIFO's GPU-s")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
