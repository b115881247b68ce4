"""Fold-aware ASHA vs plain ASHA vs FIFO on simulated learning curves: epochs spent, split configs, best kept.

No training: each (config, fold) trial follows a known curve, val_auc(epoch) = q - (q - 0.5) * exp(-epoch / 5)
+ a fixed fold offset (N(0, 0.03): folds differ, as small medical datasets' folds do) + epoch noise
(N(0, 0.005)). `concurrency` trials run at once and report in random order, as on a cluster. The same
scheduler objects as a real search decide (Ray's AsyncHyperBandScheduler, cxrtune's fold-aware one), fed
through their on_trial_result hooks.

Reported per scheduler, averaged over seeds:
- epochs: epochs trained in total (the cost);
- split configs: configs that ended with some folds trained to the end and others cut early (their fold
  mean compares unequal things);
- best kept: the truly best config (highest q) finished all its folds;
- regret: true q of the best config that finished all folds, below the true best q.

  python benchmarks/search_schedulers.py [--configs 30] [--folds 5] [--epochs 30] [--seeds 20] [--grace-period 1]
"""
from __future__ import annotations

import argparse
import math
import random
import time
from dataclasses import dataclass, field


@dataclass
class FakeTrial:
    """What a scheduler reads from a Tune Trial: an id, a status, the config (nested like the driver's)."""
    trial_id: str
    config: dict
    status: str = "RUNNING"
    epoch: int = 0
    stopped: bool = False
    offsets: list = field(default_factory=list)


def simulate(name: str, *, n_configs: int, n_folds: int, epochs: int, concurrency: int, seed: int,
             reduction_factor: float = 3, grace_period: int = 1) -> dict:
    from search.schedulers import make_scheduler

    rng = random.Random(seed)
    quality = [rng.uniform(0.60, 0.85) for _ in range(n_configs)]
    fold_offset = [[rng.gauss(0, 0.03) for _ in range(n_folds)] for _ in range(n_configs)]
    scheduler = make_scheduler(name, max_t=epochs, reduction_factor=reduction_factor, grace_period=grace_period)
    trials = [FakeTrial(f"{c}_{f}", {"trial_config": {"config_id": f"c{c:03d}", "fold": f, "epochs": epochs}})
              for c in range(n_configs) for f in range(n_folds)]
    if hasattr(scheduler, "on_trial_add") and name == "asha":
        for trial in trials:
            scheduler.on_trial_add(None, trial)
    waiting, running, total_epochs = list(trials), [], 0
    while waiting or running:
        while waiting and len(running) < concurrency:
            running.append(waiting.pop(0))
        trial = rng.choice(running)
        c, f = (int(x) for x in trial.trial_id.split("_"))
        trial.epoch += 1
        total_epochs += 1
        q = quality[c]
        auc = q - (q - 0.5) * math.exp(-trial.epoch / 5) + fold_offset[c][f] + rng.gauss(0, 0.005)
        decision = scheduler.on_trial_result(None, trial, {"training_iteration": trial.epoch, "val_auc": auc})
        if decision == "STOP" or trial.epoch >= epochs:
            trial.stopped = trial.epoch < epochs
            running.remove(trial)
            if hasattr(scheduler, "decisions"):
                scheduler.on_trial_complete(None, trial, {"training_iteration": trial.epoch})
    by_config: dict[int, list[FakeTrial]] = {}
    for trial in trials:
        by_config.setdefault(int(trial.trial_id.split("_")[0]), []).append(trial)
    complete = [c for c, folds in by_config.items() if not any(t.stopped for t in folds)]
    split = [c for c, folds in by_config.items() if 0 < sum(t.stopped for t in folds) < len(folds)]
    best = max(range(n_configs), key=lambda c: quality[c])
    best_complete = max((quality[c] for c in complete), default=float("nan"))
    return {"epochs": total_epochs, "split": len(split), "best_kept": best in complete,
            "complete": len(complete), "regret": quality[best] - best_complete}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=30)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--grace-period", type=int, default=1, help="epochs before the first rung")
    args = parser.parse_args()
    print(f"{args.configs} configs x {args.folds} folds, {args.epochs} epochs, {args.concurrency} trials at once, "
          f"{args.seeds} seeds (reduction factor 3, grace period {args.grace_period})")
    print(f"{'scheduler':10s} {'epochs':>8s} {'vs fifo':>8s} {'split configs':>14s} {'all folds done':>15s} "
          f"{'best kept':>10s} {'regret':>8s} {'us/report':>10s}")
    fifo_epochs = None
    for name in ("fifo", "asha", "fold-asha"):
        started = time.perf_counter()
        runs = [simulate(name, n_configs=args.configs, n_folds=args.folds, epochs=args.epochs,
                         concurrency=args.concurrency, seed=seed, grace_period=args.grace_period)
                for seed in range(args.seeds)]
        elapsed = time.perf_counter() - started
        epochs = sum(r["epochs"] for r in runs) / len(runs)
        fifo_epochs = fifo_epochs or epochs
        reports = sum(r["epochs"] for r in runs)
        regrets = [r["regret"] for r in runs if not math.isnan(r["regret"])]
        regret = f"{sum(regrets) / len(regrets):8.4f}" if regrets else f"{'-':>8s}"
        print(f"{name:10s} {epochs:8.0f} {epochs / fifo_epochs:8.2f} {sum(r['split'] for r in runs) / len(runs):14.1f} "
              f"{sum(r['complete'] for r in runs) / len(runs):15.1f} {sum(r['best_kept'] for r in runs) / len(runs):10.0%} "
              f"{regret} {1e6 * elapsed / reports:10.1f}")


if __name__ == "__main__":
    main()
