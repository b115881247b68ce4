"""The study's beta_P / beta_N, checked against hand-counted matrices."""
from __future__ import annotations

import numpy as np
import pytest

from data.class_balance import beta_weights
from data.errors import DataError


def test_whole_matrix_weights_match_hand_count():
    labels = np.array([[1, 0, 0], [0, 0, 0], [1, 1, 0], [0, 0, 0]], dtype=np.uint8)  # 3 ones, 9 zeros
    beta_p, beta_n = beta_weights(labels)
    assert beta_p == pytest.approx(12 / 3) and beta_n == pytest.approx(12 / 9)
    assert isinstance(beta_p, float) and isinstance(beta_n, float)


def test_weights_balance_the_loss_mass_of_ones_and_zeros():
    rng = np.random.default_rng(0)
    labels = (rng.random((500, 9)) < 0.07).astype(np.uint8)
    beta_p, beta_n = beta_weights(labels)
    assert beta_p * labels.sum() == pytest.approx(beta_n * (labels.size - labels.sum()))


def test_per_category_weights_have_shape_c_and_default_missing_side_to_one():
    labels = np.array([[1, 0, 1], [0, 0, 1], [0, 0, 1], [0, 0, 1]])
    beta_p, beta_n = beta_weights(labels, per_category=True)
    assert beta_p.shape == beta_n.shape == (3,)
    np.testing.assert_allclose(beta_p, [4.0, 1.0, 1.0])  # column 1 has no ones, column 2 only ones
    np.testing.assert_allclose(beta_n, [4 / 3, 1.0, 1.0])


@pytest.mark.parametrize("labels, message", [
    (np.zeros((0, 3)), "non-empty N x C"),
    (np.array([[0.5, 1.0]]), "only 0/1"),
    (np.array([[np.nan, 1.0]]), "only 0/1"),
    (np.zeros((4, 2)), "0 ones and 8 zeros"),
])
def test_unusable_labels_raise_data_error(labels, message):
    with pytest.raises(DataError, match=message):
        beta_weights(labels)
