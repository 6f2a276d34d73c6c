"""Optimizers, learning-rate and momentum schedules, and the EMA update shared by every method."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

OPTIMIZERS = ("adam", "lars", "sgd")


@keras.saving.register_keras_serializable(package="training")
class LARS(keras.optimizers.Optimizer):
    """Layer-wise adaptive rate scaling (You et al., 2017, arXiv:1708.03888) with momentum.

    Each weight matrix gets its own step size ``eta * ||w|| / (||g|| + weight_decay * ||w||)``.
    Biases and normalisation parameters (rank-1 variables) take plain momentum SGD
    without weight decay, as in SimCLR and BYOL.
    """

    def __init__(self, learning_rate=0.1, momentum=0.9, weight_decay=1e-6, eta=0.001, name="lars", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if not 0 <= momentum < 1:
            raise ValueError(f"LARS momentum={momentum} must lie in [0, 1).")
        self.momentum = momentum
        self.lars_weight_decay = weight_decay
        self.eta = eta

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.velocities = [self.add_variable_from_reference(v, name="velocity") for v in variables]

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        velocity = self.velocities[self._get_variable_index(variable)]
        if len(variable.shape) > 1:
            gradient = gradient + self.lars_weight_decay * variable
            weight_norm = ops.norm(ops.reshape(variable, [-1]))
            gradient_norm = ops.norm(ops.reshape(gradient, [-1]))
            trust_ratio = ops.where(
                ops.logical_and(weight_norm > 0, gradient_norm > 0),
                self.eta * weight_norm / gradient_norm,
                ops.ones_like(weight_norm),
            )
            learning_rate = learning_rate * trust_ratio
        self.assign(velocity, self.momentum * velocity + learning_rate * gradient)
        self.assign_sub(variable, velocity)

    def get_config(self):
        config = super().get_config()
        config.update({"momentum": self.momentum, "weight_decay": self.lars_weight_decay, "eta": self.eta})
        return config


def learning_rate_schedule(learning_rate: float, epochs: int, steps_per_epoch: int, warmup_epochs: int = 0):
    """Linear warm-up over ``warmup_epochs``, then cosine decay to 0 over the rest of the run."""
    total_steps = max(1, epochs * steps_per_epoch)
    warmup_steps = min(warmup_epochs * steps_per_epoch, total_steps - 1)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else learning_rate,
        decay_steps=max(1, total_steps - warmup_steps),
        warmup_target=learning_rate if warmup_steps else None,
        warmup_steps=warmup_steps,
    )


def build_optimizer(train: dict, steps_per_epoch: int, schedule: bool = True) -> keras.optimizers.Optimizer:
    """Build the optimizer named by ``train.optimizer`` with ``train.learning_rate``.

    With ``schedule`` the rate warms up over ``train.warmup_epochs`` and then follows a
    cosine decay; without it the rate stays constant (segmentation drops it by callback).
    """
    name = str(train.get("optimizer", "adam")).lower()
    if name not in OPTIMIZERS:
        raise ValueError(f"train.optimizer={name!r} is not supported; choose one of {', '.join(OPTIMIZERS)}.")
    learning_rate = float(train["learning_rate"])
    if learning_rate <= 0:
        raise ValueError(f"train.learning_rate={learning_rate} must be positive.")
    rate = (
        learning_rate_schedule(learning_rate, int(train["epochs"]), steps_per_epoch, int(train.get("warmup_epochs", 0)))
        if schedule
        else learning_rate
    )
    if name == "lars":
        return LARS(learning_rate=rate, momentum=float(train.get("momentum", 0.9)), weight_decay=float(train.get("weight_decay", 1e-6)))
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=rate, momentum=float(train.get("momentum", 0.9)))
    return keras.optimizers.Adam(learning_rate=rate)


def cosine_momentum(step, total_steps: int, base_momentum: float):
    """Return the target network's momentum at ``step``: ``base_momentum`` at 0, rising to 1.

    BYOL (Grill et al., 2020, arXiv:2006.07733, section 3.2) uses
    ``1 - (1 - base) * (cos(pi * k / K) + 1) / 2`` over the K training steps of the
    whole run. Steps past K keep momentum 1.
    """
    if not 0 <= base_momentum <= 1:
        raise ValueError(f"base_momentum={base_momentum} must lie in [0, 1] (BYOL uses 0.99).")
    if total_steps < 1:
        raise ValueError(f"total_steps={total_steps} must be at least 1 (epochs x steps per epoch).")
    progress = ops.minimum(ops.cast(step, "float32") / float(total_steps), 1.0)
    return 1.0 - (1.0 - base_momentum) * (ops.cos(np.pi * progress) + 1.0) / 2.0


def ema_update(target_variables, online_variables, momentum) -> None:
    """Move each target variable towards its online twin: ``t <- m * t + (1 - m) * o``."""
    target_variables, online_variables = list(target_variables), list(online_variables)
    if len(target_variables) != len(online_variables):
        raise ValueError(
            f"The target network has {len(target_variables)} variables and the online network "
            f"{len(online_variables)}; build the target as a copy of the online network."
        )
    for target, online in zip(target_variables, online_variables):
        if tuple(target.shape) != tuple(online.shape):
            raise ValueError(f"Target variable {target.path} has shape {tuple(target.shape)} but online {online.path} has {tuple(online.shape)}.")
        target.assign(momentum * target + (1.0 - momentum) * online)
