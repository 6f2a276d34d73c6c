"""NT-Xent against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from training.losses.contrastive import nt_xent


def test_identical_orthogonal_views():
    # N = 4 one-hot projections, each view identical: the positive has similarity 1,
    # the 2N - 2 negatives 0, so loss = log(1 + (2N - 2) exp(-1 / T)).
    z = tf.eye(4)
    loss, accuracy = nt_xent(z, z, temperature=0.1)
    assert float(loss) == pytest.approx(math.log(1 + 6 * math.exp(-10)), abs=1e-7)
    assert float(accuracy) == 1.0


def test_unrelated_views():
    # Every projection orthogonal to every other: all 2N - 1 candidates tie at 0,
    # so loss = log(2N - 1) whatever the temperature.
    z = tf.eye(8)
    loss, _ = nt_xent(z[:4], z[4:], temperature=0.5)
    assert float(loss) == pytest.approx(math.log(7), rel=1e-5)


def test_scale_invariant():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 5)).astype("float32"), rng.normal(size=(6, 5)).astype("float32")
    assert float(nt_xent(a, b, 0.2)[0]) == pytest.approx(float(nt_xent(3 * a, 0.5 * b, 0.2)[0]), rel=1e-5)


def test_symmetric_in_views():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 4)).astype("float32"), rng.normal(size=(5, 4)).astype("float32")
    assert float(nt_xent(a, b, 0.1)[0]) == pytest.approx(float(nt_xent(b, a, 0.1)[0]), rel=1e-5)


def test_non_positive_temperature_is_rejected():
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(tf.eye(2), tf.eye(2), 0.0)
