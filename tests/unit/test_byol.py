"""BYOL: loss, momentum schedule and moving-average update against values computed by hand."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from training.config import resolve
from training.losses.distillation import byol_loss, normalised_mse
from training.methods import get_method
from training.optimization import cosine_momentum, ema_update

TINY = {
    "model.depth": 2,
    "model.filters": 4,
    "model.padding": "same",
    "data.patch_size": 32,
    "train.optimizer": "sgd",
    "train.learning_rate": 0.1,
    "train.warmup_epochs": 0,
    "train.epochs": 2,
    "train.steps_per_epoch": 5,
    "train.batch_size": 4,
    "method.projection_head.hidden_units": 8,
    "method.projection_head.output_units": 4,
    "method.prediction_head.hidden_units": 8,
    "method.prediction_head.output_units": 4,
}


def tiny_byol():
    config = resolve("byol", None, TINY)
    model = get_method("byol").build_model(config)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1))
    return model, config


# Loss

def test_loss_of_identical_vectors_is_zero():
    z = tf.constant([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]])
    assert float(normalised_mse(z, z)) == pytest.approx(0.0, abs=1e-6)
    assert float(byol_loss(z, z, z, z)) == pytest.approx(0.0, abs=1e-6)


def test_loss_ignores_vector_length():
    z = tf.constant([[1.0, 2.0, 3.0]])
    assert float(normalised_mse(5.0 * z, 0.1 * z)) == pytest.approx(0.0, abs=1e-6)


def test_loss_of_orthogonal_vectors_is_two():
    # cos = 0, so 2 - 2 cos = 2 for each view and 4 for the symmetrised loss.
    p, z = tf.constant([[1.0, 0.0]]), tf.constant([[0.0, 3.0]])
    assert float(normalised_mse(p, z)) == pytest.approx(2.0)
    assert float(byol_loss(p, z, p, z)) == pytest.approx(4.0)


def test_loss_of_opposite_vectors_is_four():
    p = tf.constant([[1.0, 1.0]])
    assert float(normalised_mse(p, -p)) == pytest.approx(4.0)


def test_loss_pairs_each_view_with_other_target():
    # Prediction 1 matches target 2 and prediction 2 matches target 1: loss 0.
    a, b = tf.constant([[1.0, 0.0]]), tf.constant([[0.0, 1.0]])
    assert float(byol_loss(a, b, b, a)) == pytest.approx(0.0, abs=1e-6)
    assert float(byol_loss(a, a, b, b)) == pytest.approx(4.0)


def test_loss_sends_no_gradient_to_targets():
    p, z = tf.Variable([[1.0, 2.0]]), tf.Variable([[2.0, -1.0]])
    with tf.GradientTape() as tape:
        loss = normalised_mse(p, z)
    gradient_p, gradient_z = tape.gradient(loss, [p, z])
    assert gradient_p is not None
    assert gradient_z is None


# Momentum schedule

@pytest.mark.parametrize(
    "step, expected",
    [
        (0, 0.99),
        (50, 0.995),  # half way: cos(pi / 2) = 0
        (100, 1.0),
        (150, 1.0),  # past the end of the run
        (10, 1 - 0.01 * (math.cos(0.1 * math.pi) + 1) / 2),  # 0.9902447
    ],
)
def test_cosine_momentum_values(step, expected):
    assert float(cosine_momentum(step, total_steps=100, base_momentum=0.99)) == pytest.approx(expected, abs=1e-7)


def test_cosine_momentum_does_not_restart_each_epoch():
    # 10 epochs of 10 steps: the momentum keeps rising across epoch boundaries.
    values = [float(cosine_momentum(step, total_steps=100, base_momentum=0.99)) for step in range(101)]
    assert all(later >= earlier for earlier, later in zip(values, values[1:]))
    assert values[10] > values[9] > values[0]
    assert values[20] > values[10]


def test_cosine_momentum_rejects_bad_base():
    with pytest.raises(ValueError, match="base_momentum=1.5"):
        cosine_momentum(0, 10, 1.5)


# Moving-average update

def test_ema_update_moves_target_by_expected_amount():
    # 0.99 x 1 + 0.01 x 3 = 1.02
    target, online = tf.Variable([1.0, -2.0]), tf.Variable([3.0, 2.0])
    ema_update([target], [online], 0.99)
    np.testing.assert_allclose(target.numpy(), [1.02, -1.96], rtol=1e-6)
    np.testing.assert_array_equal(online.numpy(), [3.0, 2.0])


def test_ema_update_rejects_mismatched_networks():
    with pytest.raises(ValueError, match="variables"):
        ema_update([tf.Variable(1.0)], [tf.Variable(1.0), tf.Variable(2.0)], 0.5)


# Model

def test_target_starts_as_copy_of_online():
    model, _ = tiny_byol()
    for target, online in zip(model.target_encoder.weights, model.encoder.weights):
        np.testing.assert_array_equal(target.numpy(), online.numpy())
    for target, online in zip(model.target_projection_head.weights, model.projection_head.weights):
        np.testing.assert_array_equal(target.numpy(), online.numpy())


def test_train_step_updates_target_by_ema():
    model, config = tiny_byol()
    assert model.total_steps == 10
    target_before = [v.numpy() for v in model.target_encoder.trainable_variables]
    online_before = [v.numpy() for v in model.encoder.trainable_variables]

    rng = np.random.default_rng(0)
    views = (rng.uniform(size=(4, 32, 32, 3)).astype("float32"), rng.uniform(size=(4, 32, 32, 3)).astype("float32"))
    logs = model.train_step(views)

    # Step 0 uses the base momentum 0.99 on the online weights after the gradient step.
    assert float(logs["momentum"]) == pytest.approx(0.99)
    online_after = [v.numpy() for v in model.encoder.trainable_variables]
    assert any(not np.allclose(a, b) for a, b in zip(online_after, online_before)), "the online encoder learns"
    for target, before, online in zip(model.target_encoder.trainable_variables, target_before, online_after):
        np.testing.assert_allclose(target.numpy(), 0.99 * before + 0.01 * online, rtol=1e-5, atol=1e-7)


def test_fit_reports_momentum_rising_over_run():
    model, config = tiny_byol()
    rng = np.random.default_rng(1)
    pairs = rng.uniform(size=(2, 4, 32, 32, 3)).astype("float32")
    dataset = tf.data.Dataset.from_tensors((pairs[0], pairs[1])).repeat()
    history = model.fit(dataset, epochs=2, steps_per_epoch=5, verbose=0, shuffle=False)
    # Epoch means of the cosine over steps 0-4 and 5-9 of the 10-step run.
    expected = [np.mean([float(cosine_momentum(k, 10, 0.99)) for k in steps]) for steps in (range(5), range(5, 10))]
    np.testing.assert_allclose(history.history["momentum"], expected, rtol=1e-6)
    assert np.isfinite(history.history["loss"]).all()


def test_encoder_uses_only_builtin_layers(tmp_path):
    # A process that never imports this project loads the registered encoder.
    model, _ = tiny_byol()
    path = tmp_path / "encoder.keras"
    model.encoder.save(path)
    x = np.linspace(0, 1, 32 * 32 * 3, dtype="float32").reshape(1, 32, 32, 3)
    expected = model.encoder(x)[-1].numpy()
    script = (
        "import sys, numpy as np, keras\n"
        "assert not any(name.split('.')[0] == 'training' for name in sys.modules)\n"
        "m = keras.saving.load_model(sys.argv[1])\n"
        "x = np.linspace(0, 1, 32 * 32 * 3, dtype='float32').reshape(1, 32, 32, 3)\n"
        "np.save(sys.argv[2], np.asarray(m(x)[-1]))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-c", script, str(path), str(tmp_path / "out.npy")], cwd=tmp_path, env=env, check=True, timeout=300)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, rtol=1e-5, atol=1e-6)


def test_build_rejects_bad_momentum():
    config = resolve("byol", None, {**TINY, "method.momentum": 1.5})
    with pytest.raises(ValueError, match="momentum=1.5"):
        get_method("byol").build_model(config)
