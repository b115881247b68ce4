"""Multi-objective ranking for schedulers and benchmarks: non-dominated sorting, crowding, hypervolume.

Every function takes points as an (n x k) array in which HIGHER IS BETTER in every column (callers flip
minimised objectives first). numpy only, so the scheduler in the driver and the benchmark share it without
starting anything. NaN counts as the worst value of its column.
"""
from __future__ import annotations

import math

import numpy as np


def _clean(points) -> np.ndarray:
    points = np.atleast_2d(np.asarray(points, dtype=float))
    return np.where(np.isnan(points), -np.inf, points)


def nondominated_ranks(points) -> np.ndarray:
    """Front number of each point (0: not dominated; 1: dominated only by front 0; ...).

    O(n^2 k) per front, at most a few hundred configs at a rung."""
    points = _clean(points)
    n = len(points)
    no_worse = (points[:, None, :] >= points[None, :, :]).all(axis=2)   # [j, i]: j no worse than i
    better = (points[:, None, :] > points[None, :, :]).any(axis=2)      # [j, i]: j better somewhere
    dominates = no_worse & better
    ranks = np.full(n, -1, dtype=int)
    remaining = np.ones(n, dtype=bool)
    front = 0
    while remaining.any():
        # Points not dominated by any remaining point form the next front.
        current = remaining & ~(dominates & remaining[:, None]).any(axis=0)
        ranks[current] = front
        remaining &= ~current
        front += 1
    return ranks


def spread_order(points) -> np.ndarray:
    """Indices of the points in epsilon-net order: first the best on the first objective, then each time the
    point farthest (Euclidean, each objective scaled by its range) from those already taken.

    Duplicates and near-duplicates come last, the ends of a front early: what Syne Tune's MOASHA does inside a
    front (its default EpsNet), and why it suits rungs where several configs share one architecture's cost."""
    points = _clean(points)
    n = len(points)
    if n <= 1:
        return np.arange(n)
    finite = np.where(np.isfinite(points), points, np.nan)
    low, high = np.nanmin(finite, axis=0), np.nanmax(finite, axis=0)
    span = np.where(np.isfinite(high - low) & (high - low > 0), high - low, 1.0)
    scaled = np.nan_to_num((finite - np.nan_to_num(low)) / span, nan=-1.0)  # a missing value: far below
    taken = [int(np.lexsort((np.arange(n), -points[:, 0]))[0])]
    nearest = np.linalg.norm(scaled - scaled[taken[0]], axis=1)
    while len(taken) < n:
        nearest[taken] = -1.0
        chosen = int(np.argmax(nearest))  # ties: the earliest point
        taken.append(chosen)
        nearest = np.minimum(nearest, np.linalg.norm(scaled - scaled[chosen], axis=1))
    return np.asarray(taken)


def best_first(points) -> np.ndarray:
    """Indices of the points, best first: by non-dominated front, inside a front in epsilon-net order."""
    points = _clean(points)
    ranks = nondominated_ranks(points)
    order = []
    for front in np.unique(ranks):
        members = np.flatnonzero(ranks == front)
        order.extend(members[spread_order(points[members])])
    return np.asarray(order, dtype=int)


def kept_at_rung(points, index: int, reduction_factor: float) -> tuple[bool, int, int]:
    """(kept, place, quota): whether point `index` is among the best max(1, ceil(n / rf), size of the first
    front) of the n points.

    MO-ASHA's promotion rule, as Schmucker et al. (2021) and Syne Tune's MOASHA rank a rung: the top 1/rf
    by non-dominated sorting, ties within a front broken by an epsilon-net (`spread_order`)."""
    order = list(best_first(points))
    quota = max(1, math.ceil(len(order) / float(reduction_factor)))
    # Every config on the rung's non-dominated front goes on, however many: a config that no other beats on
    # every objective at this fidelity is a candidate for the final front (the quota fills the rest).
    quota = max(quota, int((nondominated_ranks(points) == 0).sum()))
    place = order.index(index)
    return place < quota, place, quota


def hypervolume_2d(points, reference) -> float:
    """Area dominated by 2-D points (higher is better in both) above `reference`: the front's hypervolume."""
    points = _clean(points)
    reference = np.asarray(reference, dtype=float)
    inside = points[(points > reference).all(axis=1)]
    if not len(inside):
        return 0.0
    inside = inside[np.argsort(-inside[:, 0], kind="stable")]  # best first objective first
    area, best_second = 0.0, reference[1]
    for first, second in inside:
        if second > best_second:
            area += (first - reference[0]) * (second - best_second)
            best_second = second
    return float(area)
