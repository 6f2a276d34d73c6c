"""SimCLR's training step under mixed precision against the same step in float32."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from training.methods.simclr import build_simclr

CONFIG = {
    "model": {"depth": 2, "filters": 4, "padding": "same"},
    "method": {"temperature": 0.1, "projection_head": {"hidden_units": 16, "output_units": 8}},
}


@pytest.fixture
def restore_dtype_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


def weight_change_after_one_step(policy: str, views) -> float:
    """Return the norm of the weight change that one SGD step makes under ``policy``."""
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    model = build_simclr(CONFIG)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1))
    model(views[0])
    before = [np.array(w, dtype="float32") for w in model.get_weights()]
    logs = model.train_step(views)
    assert np.isfinite(float(logs["loss"]))
    after = [np.array(w, dtype="float32") for w in model.get_weights()]
    return float(np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(after, before))))


def test_mixed_precision_step_matches_float32(restore_dtype_policy):
    rng = np.random.default_rng(0)
    views = tuple(rng.uniform(size=(4, 32, 32, 3)).astype("float32") for _ in range(2))
    full = weight_change_after_one_step("float32", views)
    mixed = weight_change_after_one_step("mixed_float16", views)
    assert full > 0
    # Without loss scaling the LossScaleOptimizer would divide the update by its
    # initial scale of 2**15.
    assert mixed == pytest.approx(full, rel=0.2)
