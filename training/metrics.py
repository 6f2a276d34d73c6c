"""Pixel-level glomerulus F1 (the Dice coefficient) on binary masks.

Convention for empty masks: when neither the prediction nor the ground truth contains a
glomerulus pixel, F1 is 1 (nothing to find, nothing found); when only one of them is
empty, F1 is 0. The score is therefore always defined, never NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Counts:
    """True positive, false positive and false negative pixel counts."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    @property
    def f1(self) -> float:
        denominator = 2 * self.tp + self.fp + self.fn
        return 1.0 if denominator == 0 else 2 * self.tp / denominator


def confusion(prediction: np.ndarray, truth: np.ndarray) -> Counts:
    """Count glomerulus pixels; both masks are binary arrays of the same shape."""
    if prediction.shape != truth.shape:
        raise ValueError(f"Prediction shape {prediction.shape} differs from ground-truth shape {truth.shape}.")
    prediction = prediction.astype(bool)
    truth = truth.astype(bool)
    return Counts(
        tp=int(np.count_nonzero(prediction & truth)),
        fp=int(np.count_nonzero(prediction & ~truth)),
        fn=int(np.count_nonzero(~prediction & truth)),
    )


def f1_score(prediction: np.ndarray, truth: np.ndarray) -> float:
    """F1 of one image under the empty-mask convention above."""
    return confusion(prediction, truth).f1


def pooled_f1(pairs) -> float:
    """F1 over the summed pixel counts of many (prediction, truth) pairs."""
    total = Counts()
    for prediction, truth in pairs:
        total = total + confusion(prediction, truth)
    return total.f1
