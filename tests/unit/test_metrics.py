"""Glomerulus F1 on masks with known counts, and the empty-mask convention."""

from __future__ import annotations

import numpy as np
import pytest

from training.metrics import confusion, f1_score, pooled_f1


def test_known_overlap():
    truth = np.zeros((4, 4), np.uint8)
    truth[:2, :2] = 1  # 4 pixels
    prediction = np.zeros((4, 4), np.uint8)
    prediction[:2, 1:3] = 1  # 2 overlap, 2 false positives
    counts = confusion(prediction, truth)
    assert (counts.tp, counts.fp, counts.fn) == (2, 2, 2)
    assert f1_score(prediction, truth) == pytest.approx(0.5)


def test_perfect_prediction():
    truth = np.eye(5, dtype=np.uint8)
    assert f1_score(truth, truth) == 1.0


def test_both_empty_scores_one():
    empty = np.zeros((3, 3), np.uint8)
    assert f1_score(empty, empty) == 1.0


@pytest.mark.parametrize("empty_side", ["prediction", "truth"])
def test_one_side_empty_scores_zero(empty_side):
    empty, full = np.zeros((3, 3), np.uint8), np.ones((3, 3), np.uint8)
    pair = (empty, full) if empty_side == "prediction" else (full, empty)
    assert f1_score(*pair) == 0.0


def test_pooled_sums_counts_before_dividing():
    a_truth = np.array([[1, 1, 0, 0]])
    a_pred = np.array([[1, 0, 0, 0]])  # tp 1, fn 1
    b_truth = np.zeros((1, 4))
    b_pred = np.zeros((1, 4))  # nothing
    assert pooled_f1([(a_pred, a_truth), (b_pred, b_truth)]) == pytest.approx(2 / 3)


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="shape"):
        f1_score(np.zeros((2, 2)), np.zeros((2, 3)))
