"""Trial schedulers by name: multi-objective fold-aware ASHA (the default for 2+ objectives), fold-aware
ASHA, plain ASHA, FIFO.

This module is free of Ray: the Tune scheduler class is in search/fold_asha.py (which imports Ray), and
`make_scheduler` imports it and Ray's own schedulers inside the function, so importing this starts nothing.

Fold-aware ASHA treats a config's fold trials as one contestant. Rungs are at grace_period * rf**k epochs
(below max_t). When a fold of a config reaches a rung, its metric is recorded there; the config's value at
the rung is the mean over its folds that reached it. The first time a config reaches a rung, its value is
compared with the cutoff of that rung (the (1 - 1/rf) quantile of the other configs' values there): below
it, the config is stopped. Decisions are sticky: once stopped, every other fold of the config stops at its
next report; once promoted at a rung, later folds pass that rung too. So no config ends with some folds
trained to the end and others cut early.

Multi-objective fold-aware ASHA (`mo-fold-asha`) keeps all of that but judges a config on a vector: the
fold mean of each objective at the rung. It goes on when it is on the rung's non-dominated front or among
the best max(1, ceil(n / rf)) of the n configs recorded there, ranked by non-dominated sorting and, inside
a front, by an epsilon-net that takes the front's ends and spread-out points first (search/multiobjective.py;
MO-ASHA, Schmucker et al. 2021). With a cost known before training among the objectives, the n configs are
only those within COST_WINDOW_DECADES of the config's cost: costly configs learn slower, so at an early rung
a much cheaper config would dominate them on both objectives and cut the high-AUC end of the front. A cost
known before training (trainable parameters, reported with every epoch) counts from the first rung on; a
measured one (seconds per epoch) is the trial's latest epoch without graph tracing, or at the first epoch
the only time there is. Costs are compared in decades (log10),
since parameters span 13k to 23M.
"""
from __future__ import annotations

import math
from typing import Any

from search.errors import SearchError

SCHEDULERS = ("mo-fold-asha", "fold-asha", "asha", "fifo")
# Fold-table objective columns the MO scheduler can follow during training, and the result key behind each.
RESULT_KEYS = {"trainable_params": "trainable_params", "total_params": "total_params",
               "steady_epoch_time_s": "epoch_time_s", "gpu_seconds_per_epoch": "gpu_epoch_time_s",
               "total_gpu_seconds": "gpu_epoch_time_s", "cpu_seconds_per_epoch": "epoch_time_s"}
# Costs known before training (decades): MO ranking compares a config at a rung only with configs whose cost
# lies within COST_WINDOW_DECADES of its own (benchmarks/search_schedulers.py chose 1.25; docs/search.md).
KNOWN_COSTS = ("trainable_params", "total_params")
COST_WINDOW_DECADES = 1.25
TIME_ATTR = "training_iteration"  # one tune.report per epoch, so this is the epoch (1-based)


def rung_milestones(grace_period: int, max_t: int, reduction_factor: float) -> list[int]:
    """Epochs at which configs are compared: grace_period * rf**k, strictly below max_t (ends anyway there)."""
    milestones, k = [], 0
    while True:
        epoch = int(round(grace_period * reduction_factor ** k))
        if epoch >= max_t:
            return milestones
        if not milestones or epoch > milestones[-1]:
            milestones.append(epoch)
        k += 1


def result_objectives(objectives: dict[str, str]) -> list[tuple[str, str]]:
    """Fold-table objectives (`cv_val_auc_mean: max`, `trainable_params: min`) -> per-epoch result keys."""
    mapped = []
    for column, mode in objectives.items():
        if column.startswith("cv_") and column.endswith("_mean"):
            mapped.append((column[len("cv_"):-len("_mean")], mode))
        elif column in RESULT_KEYS:
            mapped.append((RESULT_KEYS[column], mode))
        else:
            raise SearchError(
                f"objective {column!r} cannot guide the scheduler: use cv_<metric>_mean (e.g. cv_val_auc_mean) "
                f"or one of {', '.join(RESULT_KEYS)}")
    return mapped


def rung_cutoff(values: list[float], reduction_factor: float) -> float | None:
    """The value a config must reach at a rung: the (1 - 1/rf) quantile of the others (None: no others)."""
    import numpy as np

    finite = [value for value in values if value is not None and math.isfinite(value)]
    if not finite:
        return None
    return float(np.percentile(finite, (1 - 1 / reduction_factor) * 100))


class FoldAwareDecisions:
    """The fold-aware ASHA bookkeeping, free of Ray so that it can be reasoned about and pickled.

    `values[rung][config_id][fold]` holds the objectives * signs (higher is better; one objective: plain
    fold-aware ASHA, two or more: MO ranking); `active[config_id]` the folds
    that have reported and not ended; `stopped[config_id]` the rung at which the config was stopped;
    `decided` the (config_id, rung) pairs already judged.

    A config is judged at a rung once every active fold of it has reached the rung, so folds that run side
    by side are judged on their mean; a fold that gets there first keeps training meanwhile (it is stopped at
    its next report if the verdict is "stop"). Folds that start after a verdict follow it.
    """

    def __init__(self, milestones: list[int], reduction_factor: float, sign, max_t: int | None = None,
                 cost_columns: tuple[int, ...] = ()):
        self.milestones = list(milestones)
        self.cost_columns = tuple(cost_columns)  # vector columns (log10 costs known before training): the window
        self.max_t = max_t  # a fold reporting this epoch has finished: it settles its config like on_end
        self.reduction_factor = float(reduction_factor)
        self.signs = tuple(float(s) for s in (sign if isinstance(sign, (tuple, list)) else (sign,)))
        self.sign = self.signs[0]
        self.values: dict[int, dict[str, dict[int, tuple]]] = {m: {} for m in self.milestones}
        self.active: dict[str, set[int]] = {}
        self.decided: set[tuple[str, int]] = set()
        self.stopped: dict[str, int] = {}
        self.reasons: dict[str, str] = {}  # "<config_id>/<fold>" -> why it was stopped
        self.records = 0  # values recorded so far: a change tells the scheduler to save its state

    def __setstate__(self, state: dict) -> None:
        state.setdefault("cost_columns", ())  # saved before cost windows: judged against every config, as then
        if "signs" not in state:  # saved before multi-objective support: one float per fold, one sign
            state["signs"] = (state["sign"],)
            state["values"] = {rung: {config: {fold: (value,) for fold, value in folds.items()}
                                      for config, folds in configs.items()} for rung, configs in state["values"].items()}
        self.__dict__.update(state)

    def config_vector(self, rung: int, config_id: str) -> tuple:
        """Mean over the config's folds at the rung of each (signed) objective."""
        folds = list(self.values[rung].get(config_id, {}).values())
        if not folds:
            return tuple(math.nan for _ in self.signs)
        return tuple(sum(values) / len(folds) for values in zip(*folds))

    def config_value(self, rung: int, config_id: str):
        """The config's fold mean at the rung: a float for one objective, a tuple for several."""
        vector = self.config_vector(rung, config_id)
        return vector[0] if len(vector) == 1 else vector

    def on_end(self, config_id: str, fold: int, *, completed: bool = False) -> None:
        """A fold trial ended: its config's verdicts no longer wait for it. A fold that trained all its epochs
        settles every rung of its config as "continue": stopping the others now would split the config."""
        self.active.get(config_id, set()).discard(fold)
        if completed and config_id not in self.stopped:
            self.decided.update((config_id, rung) for rung in self.milestones)

    def on_result(self, config_id: str, fold: int, epoch: int, metric) -> bool:
        """Record one epoch's metric (a float, or one value per objective) of one fold; True: stop this fold."""
        key = f"{config_id}/{fold}"
        if config_id in self.stopped:
            self.reasons.setdefault(
                key, f"config stopped at rung {self.stopped[config_id]} (mean over its folds below cutoff)")
            return True
        self.active.setdefault(config_id, set()).add(fold)
        for rung in self.milestones:
            if rung <= epoch and fold not in self.values[rung].get(config_id, {}):
                values = metric if isinstance(metric, (tuple, list)) else (metric,)
                self.values[rung].setdefault(config_id, {})[fold] = tuple(
                    sign * float(value) for sign, value in zip(self.signs, values))
                self.records += 1
        if self.max_t is not None and epoch >= self.max_t:
            self.on_end(config_id, fold, completed=True)
            return False
        for rung in self.milestones:
            if rung > epoch:
                break
            if (config_id, rung) in self.decided:
                continue
            if not self.active[config_id] <= set(self.values[rung].get(config_id, {})):
                break  # a fold running beside this one has not reached the rung yet: judge them together
            self.decided.add((config_id, rung))
            reason = self._verdict(rung, config_id)
            if reason:
                self.stopped[config_id] = rung
                self.reasons[key] = reason
                return True
        return False

    def _verdict(self, rung: int, config_id: str) -> str | None:
        """Why the config stops at this rung, or None when it goes on."""
        folds = len(self.values[rung][config_id])
        if len(self.signs) == 1:
            others = [self.config_value(rung, other) for other in self.values[rung] if other != config_id]
            cutoff = rung_cutoff(others, self.reduction_factor)
            mean = self.config_value(rung, config_id)
            if cutoff is not None and mean < cutoff:
                return (f"stopped at rung {rung}: config mean {self.sign * mean:.4f} over {folds} "
                        f"fold(s) worse than cutoff {self.sign * cutoff:.4f}")
            return None
        from search.multiobjective import kept_at_rung, nondominated_ranks

        ids = [other for other in self.values[rung] if self.near_in_cost(rung, config_id, other)]
        points = [self.config_vector(rung, other) for other in ids]
        kept, place, quota = kept_at_rung(points, ids.index(config_id), self.reduction_factor)
        if kept:
            return None
        front = int(nondominated_ranks(points)[ids.index(config_id)]) + 1
        among = f" of configs within {COST_WINDOW_DECADES:g} decade(s) of its cost" if self.cost_columns else ""
        return (f"stopped at rung {rung}: config (mean over {folds} fold(s)) in non-dominated front {front}"
                f"{among}, place {place + 1} of {len(ids)}; the best {quota} go on")

    def near_in_cost(self, rung: int, config_id: str, other: str) -> bool:
        """Whether `other` costs within COST_WINDOW_DECADES of the config on every cost known before training."""
        mine, theirs = self.config_vector(rung, config_id), self.config_vector(rung, other)
        return all(abs(mine[c] - theirs[c]) <= COST_WINDOW_DECADES or not math.isfinite(mine[c] - theirs[c])
                   for c in self.cost_columns)


def __getattr__(name: str):
    # Searches started before the scheduler class moved to search/fold_asha.py pickled it under this module
    # (Tune restores it from that pickle on --resume): resolve the old name, importing Ray only then.
    if name == "FoldAwareASHAScheduler":
        from search.fold_asha import FoldAwareASHAScheduler

        return FoldAwareASHAScheduler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_scheduler(name: str, *, metric: str = "val_auc", mode: str = "max", max_t: int,
                   grace_period: int = 1, reduction_factor: float = 3, state_path: str | None = None,
                   objectives: dict[str, str] | None = None) -> Any:
    """A Tune scheduler by name (`mo-fold-asha`, `fold-asha`, `asha`, `fifo`) that owns metric and mode.

    `objectives` (fold-table columns -> max|min, two or more) are what `mo-fold-asha` ranks configs on.
    Give metric/mode here only, not also to TuneConfig (Tune raises when both are set).
    """
    if name not in SCHEDULERS:
        raise SearchError(f"unknown scheduler {name!r}: choose one of {', '.join(SCHEDULERS)}")
    if mode not in ("max", "min"):
        raise SearchError(f"scheduler mode must be 'max' or 'min', got {mode!r}")
    if int(max_t) < 1 or int(grace_period) < 1 or float(reduction_factor) <= 1:
        raise SearchError(
            f"scheduler needs max_t >= 1, grace_period >= 1 and reduction_factor > 1; got max_t={max_t}, "
            f"grace_period={grace_period}, reduction_factor={reduction_factor}")
    followed = None
    if name == "mo-fold-asha":
        if not objectives or len(objectives) < 2:
            raise SearchError(f"scheduler mo-fold-asha needs two or more objectives, got {dict(objectives or {})}; "
                              "use --scheduler fold-asha for one")
        followed = result_objectives(objectives)
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if name == "fifo":
        return FIFOScheduler()
    if name == "asha":
        return ASHAScheduler(time_attr=TIME_ATTR, metric=metric, mode=mode, max_t=int(max_t),
                             grace_period=min(int(grace_period), int(max_t)),
                             reduction_factor=reduction_factor)
    from search.fold_asha import FoldAwareASHAScheduler

    return FoldAwareASHAScheduler(metric=metric, mode=mode, max_t=int(max_t), grace_period=int(grace_period),
                                  reduction_factor=reduction_factor, state_path=state_path, objectives=followed)
