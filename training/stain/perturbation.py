"""Stain concentration perturbation: the views of HR-CS-CO's contrastive stage.

Each patch and each stain channel draws a factor ``alpha`` and an offset ``beta``; the
perturbed concentration is ``max(alpha * c + beta, 0)``. The study's ranges are
``alpha`` in [0.75, 1.25] and ``beta`` in [-0.05, 0.05], in the concentration units of
:mod:`training.stain.deconvolution` (optical density divided by ln(1e6)).

NOTE: the study does not state the unit of ``beta``. These are the units of
scikit-image's ``separate_stains``, where 0.05 visibly shifts the colour of a patch.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf


@dataclass(frozen=True)
class PerturbationConfig:
    """Ranges of the multiplicative ``alpha`` and additive ``beta`` per stain channel."""

    alpha: tuple[float, float] = (0.75, 1.25)
    beta: tuple[float, float] = (-0.05, 0.05)

    @classmethod
    def from_config(cls, section: dict) -> "PerturbationConfig":
        alpha = tuple(float(v) for v in section.get("alpha", cls.alpha))
        beta = tuple(float(v) for v in section.get("beta", cls.beta))
        if len(alpha) != 2 or not 0 <= alpha[0] <= alpha[1]:
            raise ValueError(f"method.perturbation.alpha={list(alpha)} must be [low, high] with 0 <= low <= high.")
        if len(beta) != 2 or not beta[0] <= beta[1]:
            raise ValueError(f"method.perturbation.beta={list(beta)} must be [low, high] with low <= high.")
        return cls(alpha, beta)


def perturb_concentrations(concentrations: tf.Tensor, config: PerturbationConfig, seed: tf.Tensor | None = None) -> tf.Tensor:
    """Scale and shift each patch's stain channels by random ``alpha`` and ``beta``.

    With ``seed`` (a shape-[2] integer tensor) the draw is stateless and repeats for
    the same seed, so validation losses compare like with like.
    """
    shape = tf.stack([tf.shape(concentrations)[0], 1, 1, tf.shape(concentrations)[-1]])
    if seed is None:
        alpha = tf.random.uniform(shape, config.alpha[0], config.alpha[1])
        beta = tf.random.uniform(shape, config.beta[0], config.beta[1])
    else:
        alpha = tf.random.stateless_uniform(shape, seed, config.alpha[0], config.alpha[1])
        beta = tf.random.stateless_uniform(shape, seed + 1, config.beta[0], config.beta[1])
    return tf.maximum(concentrations * alpha + beta, 0.0)
