"""Self-distillation objectives: BYOL's regression of target projections.

Grill et al., 2020, "Bootstrap Your Own Latent", arXiv:2006.07733, equation 2.
"""

from __future__ import annotations

import tensorflow as tf


def normalised_mse(predictions: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    """Return the batch mean of ``2 - 2 cos(prediction, target)``, in [0, 4].

    This is the squared distance between the L2-normalised vectors. The targets are
    treated as constants: no gradient flows into them.
    """
    predictions = tf.math.l2_normalize(predictions, axis=-1)
    targets = tf.math.l2_normalize(tf.stop_gradient(targets), axis=-1)
    cosine = tf.reduce_sum(predictions * targets, axis=-1)
    return tf.reduce_mean(2.0 - 2.0 * cosine)


def byol_loss(predictions_1: tf.Tensor, targets_1: tf.Tensor, predictions_2: tf.Tensor, targets_2: tf.Tensor) -> tf.Tensor:
    """Return BYOL's symmetrised loss, in [0, 8].

    ``predictions_i`` are the online network's predictions for view i and
    ``targets_i`` the target network's projections of view i. Each view's prediction
    regresses the other view's target, and the two terms are added, as in the paper.
    """
    return normalised_mse(predictions_1, targets_2) + normalised_mse(predictions_2, targets_1)
