"""Non-dominated sorting, epsilon-net order and 2-D hypervolume on small tables whose answers are known."""
from __future__ import annotations

import numpy as np
import pytest

from search.multiobjective import best_first, hypervolume_2d, kept_at_rung, nondominated_ranks, spread_order


def test_fronts_are_peeled_one_after_another():
    # Higher is better in both columns.
    points = [(3, 1), (1, 3), (2, 2), (1, 1), (2, 0.5), (0, 0), (np.nan, 5)]
    assert nondominated_ranks(points).tolist() == [0, 0, 0, 1, 1, 2, 0]
    # A NaN is the worst value of its column, but (nan, 5) is still unbeaten on the second one.


def test_spread_order_takes_the_ends_before_duplicates_and_the_middle():
    points = np.array([(0.80, -5.0), (0.80, -5.0), (0.60, -1.0), (0.70, -3.0)])
    assert spread_order(points).tolist() == [0, 2, 3, 1]
    assert best_first(np.vstack([points, [(0.5, -6.0)]])).tolist() == [0, 2, 3, 1, 4]


def test_kept_at_rung_is_the_first_front_or_the_top_ceil_n_over_rf():
    points = [(0.8, -5.0), (0.6, -1.0), (0.7, -3.0), (0.5, -6.0)]  # the first three: one front
    assert kept_at_rung(points, 2, 2) == (True, 2, 3)   # third in order, but on the front: goes on
    assert kept_at_rung(points, 3, 2) == (False, 3, 3)
    chain = [(0.9, -1.0), (0.8, -2.0), (0.7, -3.0), (0.6, -4.0)]  # each dominated by the one before
    assert kept_at_rung(chain, 1, 2) == (True, 1, 2)    # ceil(4 / 2) = 2 go on
    assert kept_at_rung(chain, 2, 2) == (False, 2, 2)
    assert kept_at_rung([(0.1, 0.1)], 0, 3) == (True, 0, 1)


def test_hypervolume_of_a_staircase_by_hand():
    # Reference (0, 0); points (3, 1), (2, 2), (1, 3): 3*1 + 2*(2-1) + 1*(3-2) = 6; a dominated point adds 0.
    assert hypervolume_2d([(3, 1), (2, 2), (1, 3), (1, 1)], (0, 0)) == pytest.approx(6.0)
    assert hypervolume_2d([(3, 1)], (0, 0)) == pytest.approx(3.0)
    assert hypervolume_2d([(-1, 5)], (0, 0)) == 0.0  # not above the reference on every objective
